"""Every training loop of pcas on small synthetic data, for tests/test_distributed.py.

``python -m torch.distributed.run --standalone --nproc-per-node 2 tests/ddp_check.py OUT.npz``
trains in two Gloo processes; :func:`run` called in one process does the same in one. Each
loop (visual classifier, TVP audio encoder, alignment with CMC + CMPC + CMCC, segmentation head)
trains 2 epochs on 11 videos (or 13 frames) in global batches of 4, so the last batch splits
unevenly (2 + 1), then encodes every item; rank 0 saves per-epoch losses and encodings.
"""

from __future__ import annotations

import dataclasses
import logging
import sys

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset

import pcas_core  # noqa: F401  (import shim before timm)
from pcas_core.runtime import distributed
from pcas_core.pipeline.align import build_align_model, iter_maps, train_alignment
from pcas_core.pipeline.train_audio import encode_audio, train_tvp
from pcas_core.pipeline.train_visual import iter_encoded, train_visual_classifier
from pcas_core.models.heads import SegmentationHead
from pcas_core.models.tvp import TVPAudioEncoder
from pcas_core.models.visual import build_visual
from pcas_core.params import AlignConfig
from pcas_core.pipeline.evaluate import patch_tokens_of, train_segmentation_head

CPU = torch.device("cpu")
LOG = logging.getLogger("pcas.ddp_check")
VIDEOS, CLASSES, BATCH = 11, 4, 4


class Clips(Dataset):
    """Synthetic videos of 1-3 frames (32 x 32) with multi-hot labels, as VideoClips items."""

    def __init__(self) -> None:
        g = torch.Generator().manual_seed(1)
        counts = torch.randint(1, 4, (VIDEOS,), generator=g).tolist()
        self.frames = [torch.randn(c, 3, 32, 32, generator=g) for c in counts]
        self.labels = (torch.rand(VIDEOS, CLASSES, generator=g) > 0.6).float()
        self.table = pd.DataFrame({"video": np.repeat(np.arange(VIDEOS), counts)})

    def __len__(self) -> int:
        return VIDEOS

    def __getitem__(self, i: int) -> dict:
        return {"frames": self.frames[i], "labels": self.labels[i], "video": i}


def _visual() -> torch.nn.Module:
    torch.manual_seed(0)
    return build_visual({"backbone": "vit_tiny_patch16_224", "num_classes": CLASSES,
                         "img_size": 32, "backbone_kwargs": {"patch_size": 8, "depth": 1,
                                                             "embed_dim": 16, "num_heads": 2}})


def _stack(parts: list[dict], key: str) -> np.ndarray:
    return np.concatenate([p[key] for p in parts])


def run() -> dict[str, np.ndarray]:
    """Train and encode with every loop; returns losses and encodings by name."""
    out: dict[str, np.ndarray] = {}
    clips = Clips()
    common = dict(device=CPU, amp=False, logger=LOG)

    model = _visual()
    hist = train_visual_classifier(model, clips, epochs=2, batch_videos=BATCH, lr=1e-3,
                                   warmup_epochs=0, weight_decay=0.0, frame_pool="max",
                                   w_class_token=1.0, seed=0, **common)
    out["visual_loss"] = np.array([h["loss"] for h in hist])
    out["visual_logits"] = _stack(list(iter_encoded(model, clips, batch_videos=BATCH, device=CPU,
                                                    ranks=True)), "logits")

    torch.manual_seed(0)
    audio = TVPAudioEncoder(num_classes=CLASSES, n_mels=32, target_length=300, patch_size=16,
                            fstride=16, tstride=16, embed_dim=32, depth=1, num_heads=2,
                            prompt_dim=8, max_steps=3, frames_per_step=100)
    g = torch.Generator().manual_seed(2)
    fbank, prompts = torch.randn(VIDEOS, 300, 32, generator=g), torch.randn(VIDEOS, 3, 8, generator=g)
    n_steps = torch.randint(1, 4, (VIDEOS,), generator=g)
    hist = train_tvp(model=audio, fbank=fbank, prompts=prompts, n_steps=n_steps,
                     labels=clips.labels, epochs=2, batch_videos=BATCH, lr=1e-3, warmup_epochs=0,
                     weight_decay=0.0, seed=0, **common)
    out["audio_loss"] = np.array([h["loss"] for h in hist])
    out["audio_tokens"] = encode_audio(audio, fbank, prompts, n_steps, batch_videos=BATCH,
                                       device=CPU, ranks=True)[0]

    cfg = dataclasses.replace(AlignConfig(), embed_dim=8, n_crops=3, crop_size=16, epochs=2,
                              batch_videos=BATCH, lr_backbone=1e-3, lr_heads=1e-3,
                              warmup_epochs=0.0)
    tokens = torch.randn(len(clips.table), 6, generator=g).numpy()
    align = build_align_model(_visual(), 6, cfg)
    hist = train_alignment(align, clips, clips.table, tokens, cfg, seed=0, **common)
    for term in ("loss", "cls", "cmc", "cmpc", "cmcc", "crop_positive", "patch_ignored"):
        out[f"align_{term}"] = np.array([h[term] for h in hist])
    maps = list(iter_maps(align, clips, clips.table, tokens, batch_videos=BATCH, device=CPU,
                          ranks=True))
    out["align_sounding"] = _stack(maps, "sounding")

    head_tokens = patch_tokens_of(align.visual, clips, features="patch", batch_videos=BATCH,
                                  device=CPU, ranks=True)
    masks = torch.randint(0, 3, (len(head_tokens), 16, 16), generator=g).to(torch.uint8)
    masks[:, :4] = 255  # ignored pixels: the loss is a mean over a variable number of pixels
    torch.manual_seed(0)
    head = SegmentationHead(in_dim=head_tokens.shape[-1], num_classes=3, grid=(4, 4),
                            hidden_dim=0)
    hist = train_segmentation_head(head, head_tokens, masks.numpy(), epochs=2, batch_frames=BATCH,
                                   lr=1e-2, weight_decay=0.0, ignore_index=255, train_size=16,
                                   background_weight=0.5, seed=0, device=CPU, logger=LOG)
    out["head_loss"] = np.array([h["loss"] for h in hist])
    out["head_tokens"] = head_tokens.numpy()
    return out


def main(path: str) -> None:
    """Join the torchrun group (Gloo), :func:`run`, and save on rank 0; also records the error
    of a global batch too small for the processes (``too_small``)."""
    distributed.init(CPU)
    out = run()
    try:
        distributed.rank_batches(3, 2, shuffle=True)  # last global batch: 1 item
        out["too_small"] = np.array("")
    except ValueError as err:
        out["too_small"] = np.array(str(err))
    out["world"] = np.array(distributed.world_size())
    if distributed.is_main():
        np.savez(path, **out)


if __name__ == "__main__":
    main(sys.argv[1])
