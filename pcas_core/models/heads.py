"""Small heads: projections into the shared audio-visual space (docs/method.md §3) and the segmentation
head trained on pseudo-masks (docs/method.md §5): its optional audio conditioning (FiLM or concatenation),
the audio gate on its logits (K_t), and its checkpoint (its config, which visual tokens and which
audio it reads)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pcas_core.storage.weights import load_checkpoint, save_checkpoint

__all__ = ["ProjectionHead", "SegmentationHead", "AttentionPool", "init_prior_bias", "FEATURES",
           "AUDIO_CONDITIONS", "AUDIO_INPUTS", "NoAudio", "FiLM", "AudioConcat", "audio_gate",
           "HeadInputs", "check_features", "head_config", "needs_audio", "save_segmentation_head",
           "load_segmentation_head"]

#: what the segmentation head reads (``evaluate.features``): P_t (the tokens of ``token_layer``),
#: the final layer's patch tokens, or both concatenated on the channel axis
FEATURES = ("patch", "final", "patch+final")


def check_features(features: str) -> None:
    """Raise ``ValueError`` unless ``features`` is one of :data:`FEATURES`."""
    if features not in FEATURES:
        raise ValueError(f"features must be one of {FEATURES}, got {features!r}")


def init_prior_bias(layer: nn.Linear, prior: float) -> None:
    """Set a multi-label head's bias so that every class starts at probability ``prior``.

    b = log(prior / (1 - prior)), the prior initialisation of Lin et al. 2017 (focal loss, §4.1).
    With 70 classes and about one positive per video, a zero bias starts every sigmoid at 0.5;
    Adam then moves each bias by about one learning rate per step, so thousands of steps go into
    learning the class frequency before anything else is learnt. Weights are left as they are.

    Raises:
        ValueError: ``prior`` not in (0, 1).
    """
    if not 0.0 < prior < 1.0:
        raise ValueError(f"head bias prior must be in (0, 1), got {prior}")
    nn.init.constant_(layer.bias, math.log(prior / (1.0 - prior)))


class ProjectionHead(nn.Module):
    """Project tokens of width ``in_dim`` into the d-dimensional shared space (g_a, g_v, g_c, g_p).

    Args:
        in_dim: input width D.
        out_dim: shared width d.
        hidden_dim: 0 for a single linear map (then g applied to a mean of tokens equals the mean
            of g applied to each token), else a two-layer MLP with GELU.
    """

    def __init__(self, *, in_dim: int, out_dim: int = 128, hidden_dim: int = 0) -> None:
        super().__init__()
        if hidden_dim > 0:
            self.net = nn.Sequential(nn.Linear(in_dim, hidden_dim), nn.GELU(),
                                     nn.Linear(hidden_dim, out_dim))
        else:
            self.net = nn.Linear(in_dim, out_dim)

    def forward(self, x: Tensor) -> Tensor:
        """(..., in_dim) -> (..., out_dim)."""
        return self.net(x)


class AttentionPool(nn.Module):
    """The class-token stand-in of backbones without one (CNNs, PVT): a learned attention pool.

    ``c = sum_i softmax_i(w . P_i + b) P_i``: one learned query scores every patch token, and
    c_t is the softmax-weighted sum of the tokens (attention-based MIL pooling, Ilse et al. 2018,
    with a linear score). A ViT's class token is likewise an attention-weighted summary of the
    patches, different from their mean v_t; global average pooling would make c_t equal to v_t,
    so that its loss terms (the class-token BCE, CMC's ``g_c``) would repeat those of v_t. ``w``
    starts at zero, so c_t starts as exactly the mean and learns where to look.

    Args:
        dim: token width D.
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.score = nn.Linear(dim, 1)
        nn.init.zeros_(self.score.weight)
        nn.init.zeros_(self.score.bias)

    def forward(self, tokens: Tensor) -> Tensor:
        """(B, N, D) float tokens -> (B, D) pooled token."""
        weights = self.score(tokens).softmax(dim=1)  # (B, N, 1)
        return (weights * tokens).sum(dim=1)


#: how the segmentation head hears the frame's audio (``evaluate.audio_condition``)
AUDIO_CONDITIONS = ("none", "film", "concat")
#: what it hears (``evaluate.audio_input``): a_t (the ``audio`` store's ``audio_token``) or the
#: audio scores sigmoid(s_t)
AUDIO_INPUTS = ("token", "scores")


def _check_audio(audio: Tensor | None, batch: int, width: int) -> Tensor:
    if audio is None or audio.ndim != 2 or audio.shape != (batch, width):
        got = None if audio is None else tuple(audio.shape)
        raise ValueError(f"this head is conditioned on audio: expected a ({batch}, {width}) audio "
                         f"vector per frame, got {got}")
    return audio


class NoAudio(nn.Identity):
    """The absent audio conditioning: the features pass unchanged and the audio is not read."""

    def forward(self, x: Tensor, audio: Tensor | None = None) -> Tensor:  # noqa: ARG002
        return x


class FiLM(nn.Module):
    """Feature-wise linear modulation (Perez et al. 2018, "FiLM: Visual Reasoning with a General
    Conditioning Layer"): ``x_c * gamma_c(a) + beta_c(a)`` per channel c, with
    ``[gamma - 1, beta] = W a + b`` a linear map of the frame's audio vector a.

    W and b start at zero, so gamma = 1 and beta = 0 exactly: the modulated head starts as the
    plain head, and the audio's say grows from there.

    Args:
        audio_dim: width A of the audio vector.
        width: channels C of the modulated features.
    """

    def __init__(self, *, audio_dim: int, width: int) -> None:
        super().__init__()
        self.proj = nn.Linear(audio_dim, 2 * width)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def forward(self, x: Tensor, audio: Tensor | None) -> Tensor:
        """(B, C, h, w) float features, (B, A) float audio -> (B, C, h, w).

        Raises:
            ValueError: no audio, or not (B, A).
        """
        a = _check_audio(audio, x.shape[0], self.proj.in_features)
        d_gamma, beta = self.proj(a.to(x.dtype)).chunk(2, dim=1)
        return x * (1.0 + d_gamma[:, :, None, None]) + beta[:, :, None, None]


class AudioConcat(nn.Module):
    """The frame's audio vector broadcast over the patch grid and concatenated to the tokens'
    channels: (B, D, h, w), (B, A) -> (B, D + A, h, w).

    Args:
        audio_dim: width A of the audio vector.
    """

    def __init__(self, *, audio_dim: int) -> None:
        super().__init__()
        self.audio_dim = audio_dim

    def forward(self, x: Tensor, audio: Tensor | None) -> Tensor:
        """Raises ValueError: no audio, or not (B, A)."""
        a = _check_audio(audio, x.shape[0], self.audio_dim).to(x.dtype)
        return torch.cat([x, a[:, :, None, None].expand(-1, -1, *x.shape[2:])], dim=1)


class SegmentationHead(nn.Module):
    """A light per-patch classifier upsampled to the frame (docs/method.md §5), optionally conditioned on
    the frame's audio (``evaluate.audio_condition``).

    Layout: tokens on their grid -> ``concat`` (audio channels appended, or nothing) -> ``embed``
    (conv3x3-BN, or nothing for the linear head) -> ``film`` (per-channel audio scale and shift
    of those hidden features, after the BatchNorm and before the ReLU as in the FiLM-ed blocks of
    Perez et al. 2018; of the tokens themselves for the linear head; or nothing) -> ``act`` (ReLU,
    or nothing) -> ``classifier`` (1x1 conv to the classes), plus ``cam_skip`` (a 1x1 conv of the
    tokens themselves, or nothing) -> bilinear to the frame. Absent parts are identities, so
    ``audio_condition="none"`` is the plain head: the same parameters, in the same order, drawn
    from the same random stream, computing the same function.

    The CAM skip (``cam_skip=True``) is a linear map of the patch tokens to the class logits that
    :meth:`init_cam_skip` sets to the visual classifier's own (its CAM, docs/method.md §4, with
    background at 0): the head then starts from class-specific evidence, which is what tells a
    heard car from a silent pig beside it, and learns the rest on top.

    Args:
        in_dim: patch token width D.
        num_classes: output classes K (71 with background).
        grid: patch grid (h, w).
        hidden_dim: 0 for one linear 1x1 conv; else conv3x3-BN-ReLU then 1x1 conv.
        audio_condition: ``none`` | ``film`` | ``concat`` (:data:`AUDIO_CONDITIONS`).
        audio_dim: width A of the audio vector (> 0 exactly when conditioned).
        cam_skip: add a 1x1 conv of the tokens to the logits (:meth:`init_cam_skip`).
    """

    def __init__(self, *, in_dim: int, num_classes: int = 71, grid: tuple[int, int] = (14, 14),
                 hidden_dim: int = 0, audio_condition: str = "none", audio_dim: int = 0,
                 cam_skip: bool = False) -> None:
        super().__init__()
        if audio_condition not in AUDIO_CONDITIONS:
            raise ValueError(f"audio_condition must be one of {AUDIO_CONDITIONS}, got "
                             f"{audio_condition!r}")
        if (audio_condition != "none") != (audio_dim > 0):
            raise ValueError(f"audio_dim must be > 0 exactly when the head is conditioned on audio "
                             f"(audio_condition {audio_condition!r}, audio_dim {audio_dim})")
        self.in_dim, self.grid, self.num_classes = in_dim, tuple(grid), num_classes
        self.hidden_dim, self.audio_condition, self.audio_dim = hidden_dim, audio_condition, audio_dim
        concat = audio_condition == "concat"
        width_in = in_dim + (audio_dim if concat else 0)
        width = hidden_dim if hidden_dim > 0 else width_in
        self.concat = AudioConcat(audio_dim=audio_dim) if concat else NoAudio()
        if hidden_dim > 0:
            self.embed = nn.Sequential(nn.Conv2d(width_in, hidden_dim, 3, padding=1),
                                       nn.BatchNorm2d(hidden_dim))
            self.act = nn.ReLU(inplace=True)
        else:
            self.embed, self.act = nn.Identity(), nn.Identity()
        self.classifier = nn.Conv2d(width, num_classes, 1)
        # created last, so that a seed draws the same embed and classifier weights with or
        # without FiLM (whose own weights start at zero anyway)
        self.film = FiLM(audio_dim=audio_dim, width=width) if audio_condition == "film" \
            else NoAudio()
        self.cam_skip = nn.Conv2d(in_dim, num_classes, 1) if cam_skip else None

    def forward(self, patch_tokens: Tensor, out_size: tuple[int, int],
                audio: Tensor | None = None) -> Tensor:
        """(B, N, D) patch tokens (and (B, A) audio vectors for a conditioned head; ignored by
        the plain one) -> (B, num_classes, H, W) logits, bilinear to ``out_size`` pixels.

        Raises:
            ValueError: N is not the grid's size; a conditioned head without (B, A) audio.
        """
        b, n, d = patch_tokens.shape
        h, w = self.grid
        if n != h * w:
            raise ValueError(f"expected {h * w} patch tokens for grid {self.grid}, got {n}")
        tokens = patch_tokens.transpose(1, 2).reshape(b, d, h, w)
        x = self.act(self.film(self.embed(self.concat(tokens, audio)), audio))
        logits = self.classifier(x)
        if self.cam_skip is not None:
            logits = logits + self.cam_skip(tokens)
        return F.interpolate(logits, size=out_size, mode="bilinear", align_corners=False)

    @torch.no_grad()
    def init_cam_skip(self, weight: Tensor, bias: Tensor) -> None:
        """Set the CAM skip to a visual classifier's linear head: foreground class k + 1 gets
        ``weight[k]`` and ``bias[k]``, background 0, so the skip's logits are the classifier's
        per-patch logits (its CAM before normalisation, plus its bias).

        Args:
            weight: (K - 1, D) float, the classifier's ``head.weight`` on the same tokens.
            bias: (K - 1,) float, its ``head.bias``.

        Raises:
            ValueError: a head without the skip, or shapes that are not (K - 1, D) and (K - 1,).
        """
        if self.cam_skip is None:
            raise ValueError("this head has no CAM skip (cam_skip=False)")
        k, d = self.num_classes - 1, self.in_dim
        if tuple(weight.shape) != (k, d) or tuple(bias.shape) != (k,):
            raise ValueError(f"expected the classifier's weight ({k}, {d}) and bias ({k},), got "
                             f"{tuple(weight.shape)} and {tuple(bias.shape)}")
        self.cam_skip.weight.zero_()
        self.cam_skip.bias.zero_()
        self.cam_skip.weight[1:, :, 0, 0] = weight
        self.cam_skip.bias[1:] = bias


def audio_gate(logits: Tensor, allowed: Tensor) -> Tensor:
    """The audio's class rule on a head's logits (docs/method.md §4's K_t, applied to the head): the
    logits of foreground classes outside K_t set to -inf, so the softmax, the cross-entropy and
    the argmax see background and the classes of K_t only. Background is never gated.

    Args:
        logits: (B, K, H, W) float class logits (class 0 background).
        allowed: (B, K - 1) bool, foreground column k (class k + 1) is in the frame's K_t
            (:func:`pcas_core.pipeline.inference.head_audio`); all True leaves the logits as they are.

    Returns:
        (B, K, H, W) logits, the gated classes at -inf.

    Raises:
        ValueError: shapes that disagree.
    """
    b, k = logits.shape[:2]
    if logits.ndim != 4 or tuple(allowed.shape) != (b, k - 1):
        raise ValueError(f"expected logits (B, K, H, W) and allowed (B, K - 1), got "
                         f"{tuple(logits.shape)} and {tuple(allowed.shape)}")
    keep = torch.cat([torch.ones_like(allowed[:, :1]), allowed], dim=1).to(torch.bool)
    return logits.masked_fill(~keep[:, :, None, None], float("-inf"))


@dataclass(frozen=True)
class HeadInputs:
    """What a trained segmentation head reads besides its weights, recorded in its checkpoint.

    Attributes:
        features: which visual tokens (:data:`FEATURES`).
        audio_input: what a conditioned head hears (:data:`AUDIO_INPUTS`): ``token`` a_t (its
            width must be the audio encoder's), ``scores`` sigmoid(s_t) (one per foreground class).
        audio_gate: the head was trained, and predicts, with :func:`audio_gate` on K_t.
        audio_threshold: theta_a of that K_t (``pseudo_masks.audio_threshold`` at training).
    """

    features: str = "patch"
    audio_input: str = "token"
    audio_gate: bool = False
    audio_threshold: float = 0.3

    def __post_init__(self) -> None:
        check_features(self.features)
        if self.audio_input not in AUDIO_INPUTS:
            raise ValueError(f"audio_input must be one of {AUDIO_INPUTS}, got {self.audio_input!r}")


def head_config(head: SegmentationHead) -> dict:
    """Constructor arguments of ``head``: ``in_dim``, ``num_classes``, ``grid``, ``hidden_dim``,
    ``audio_condition``, ``audio_dim``, ``cam_skip``."""
    return {"in_dim": head.in_dim, "num_classes": head.num_classes, "grid": list(head.grid),
            "hidden_dim": head.hidden_dim, "audio_condition": head.audio_condition,
            "audio_dim": head.audio_dim, "cam_skip": head.cam_skip is not None}


def needs_audio(head: SegmentationHead, inputs: HeadInputs) -> bool:
    """True when the head reads the frame's audio: conditioned on it, or gated by K_t."""
    return head.audio_condition != "none" or inputs.audio_gate


def save_segmentation_head(path: Path, head: SegmentationHead, inputs: HeadInputs) -> None:
    """Save a trained head with its constructor config and what it reads (:class:`HeadInputs`),
    so that :func:`load_segmentation_head` rebuilds it alone and a caller knows its audio."""
    save_checkpoint(path, head, {**head_config(head), **asdict(inputs)})


#: state-dict names of heads saved before the audio options (one ``net`` Sequential)
_OLD_NAMES = (("net.0.", "embed.0."), ("net.1.", "embed.1."), ("net.3.", "classifier."),
              ("net.", "classifier."))


def _renamed(key: str) -> str:
    for old, new in _OLD_NAMES:
        if key.startswith(old):
            return new + key[len(old):]
    return key


def load_segmentation_head(path: Path) -> tuple[SegmentationHead, HeadInputs]:
    """Rebuild a head saved by :func:`save_segmentation_head` (or by the version before the
    audio options, whose config lacks them: a plain head, no gate).

    Returns:
        ``(head on the CPU in eval mode, what it reads)``.

    Raises:
        FileNotFoundError / ValueError: as :func:`pcas_core.storage.weights.load_checkpoint`, or the
            config lacks a key (names the file).
    """
    state, config = load_checkpoint(path)
    legacy = "audio_condition" not in config
    try:
        head = SegmentationHead(in_dim=int(config["in_dim"]),
                                num_classes=int(config["num_classes"]),
                                grid=tuple(config["grid"]), hidden_dim=int(config["hidden_dim"]),
                                audio_condition=str(config.get("audio_condition", "none")),
                                audio_dim=int(config.get("audio_dim", 0)),
                                cam_skip=bool(config.get("cam_skip", False)))
        inputs = HeadInputs(str(config["features"]), **{
            k: config[k] for k in ("audio_input", "audio_gate", "audio_threshold") if k in config})
    except KeyError as err:
        raise ValueError(f"{path}: not a segmentation-head checkpoint (no {err} in its config)") \
            from err
    head.load_state_dict({_renamed(k): v for k, v in state.items()} if legacy else state)
    return head.eval(), inputs
