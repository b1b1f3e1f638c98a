"""A convolutional stem for ViT patch embedding (Xiao et al. 2021, "Early Convolutions Help
Transformers See Better"): stacked 3x3 stride-2 convolutions replace the single patchify conv.

A ViT trained from scratch on a few hundred frames (the bundled demo: no pretrained weights can
be fetched offline) generalises poorly with the patchify stem; the conv stem gives it the locality
bias it lacks. Patch tokens, class token, grid and CAMs are unchanged. Pretrained ViT weights do
not fit this stem's ``proj``, so it is meant for random initialisation.
"""

from __future__ import annotations

import math

from timm.layers import PatchEmbed
from torch import nn

__all__ = ["ConvStemPatchEmbed"]


class ConvStemPatchEmbed(PatchEmbed):
    """timm ``PatchEmbed`` whose ``proj`` is log2(patch) x (conv3x3 stride 2, BN, ReLU) + conv1x1.

    Takes timm's ``PatchEmbed`` keyword arguments (``img_size``, ``patch_size``, ``in_chans``,
    ``embed_dim``, ...), so it is passed as ``timm.create_model(..., embed_layer=...)``. Channel
    widths double at each stride-2 conv, ending at ``embed_dim // 2`` before the 1x1 projection.

    Raises:
        ValueError: the patch is not square with a power-of-two side >= 2 pixels.
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        side = self.patch_size[0]
        n = int(round(math.log2(side))) if side >= 2 else 0
        if n < 1 or 2 ** n != side or self.patch_size[1] != side:
            raise ValueError(f"conv stem needs a square power-of-two patch, got {self.patch_size}")
        embed_dim, channels = self.proj.out_channels, self.proj.in_channels
        layers: list[nn.Module] = []
        for i in range(n):
            width = max(embed_dim // 2 ** (n - i), 8)
            layers += [nn.Conv2d(channels, width, 3, stride=2, padding=1, bias=False),
                       nn.BatchNorm2d(width), nn.ReLU(inplace=True)]
            channels = width
        layers.append(nn.Conv2d(channels, embed_dim, 1))
        self.proj = nn.Sequential(*layers)
