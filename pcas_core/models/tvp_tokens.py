"""Token embeddings of the TVP audio encoder: AST spectrogram patches, the time step of every
audio token (by its centre time, for any frame clock), and the visual prompt tokens with their
time identity (docs/method.md §2). The pretrained aisfx patch embedding is :mod:`pcas_core.models.aisfx`.

Sources: AST (Gong, Chung and Glass 2021, ``src/models/ast_models.py``) for the patch embedding;
the PCAS paper's Temporal Visual Prompting for the prompts ("at each corresponding time step ...
inserted ... providing complementary visual guidance for that segment audio").

Self-attention is blind to token order, so a prompt token is tied to its time step only by what
it carries: ``prompt_position`` gives it its step's time identity. ``none`` leaves the prompts an
unordered bag (swapping v_1 and v_2 leaves every a_t unchanged), kept for the ablation.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor, nn

import pcas_core  # noqa: F401  (import shim before timm)
from timm.layers import trunc_normal_  # noqa: E402

#: How v_t is normalised before W_p (``train_audio.prompt_norm``).
PROMPT_NORMS = ("layernorm", "none")

__all__ = ["SequenceLayout", "sequence_layout", "PROMPT_NORMS", "PROMPT_POSITIONS", "STEP_SECONDS", "token_centre_seconds", "assign_token_steps",
           "assign_patch_steps", "SpectrogramPatchEmbed", "PromptEmbed", "NoPrompts"]

#: How a prompt token knows its time step (``train_audio.prompt_position``).
PROMPT_POSITIONS = ("step_mean", "learned", "none")

#: Length of one TVP time step: one second, one video frame (AVSBench samples 1 fps).
STEP_SECONDS = 1.0


def token_centre_seconds(centre_frames: Tensor, *, frames_per_second: float,
                         frame_offset: float = 0.0) -> Tensor:
    """Centre times of tokens from their centres in input frames.

    Frame i of the input spans ``[(i + frame_offset) / fps, (i + 1 + frame_offset) / fps)`` s, so
    a token over frames ``[a, b)`` (centre ``c = (a + b) / 2`` frames) is centred at
    ``(c + frame_offset) / fps`` s.

    Args:
        centre_frames: ``(N,)`` float64 token centres in frames.
        frames_per_second: fps of the input (AST at 10 ms: 100; aisfx: 44100 / 1024).
        frame_offset: offset of frame 0 in frames (AST 0; aisfx's centred frames -0.5).

    Returns:
        ``(N,)`` float64 seconds.

    Raises:
        ValueError: ``frames_per_second`` is not positive.
    """
    if frames_per_second <= 0:
        raise ValueError(f"frames_per_second must be positive, got {frames_per_second}")
    return (centre_frames.to(torch.float64) + frame_offset) / frames_per_second


def assign_token_steps(centre_s: Tensor, *, max_steps: int,
                       step_seconds: float = STEP_SECONDS) -> Tensor:
    """Time step of each token: the step that holds its centre time (docs/method.md §2).

    Step t holds ``[t * step_seconds, (t + 1) * step_seconds)``; centres past the last step
    (padding) are clamped to ``max_steps - 1``, centres before 0 to 0.

    Args:
        centre_s: ``(N,)`` float64 centre times in seconds (:func:`token_centre_seconds`).
        max_steps: number of time steps.
        step_seconds: length of a step (one second).

    Returns:
        ``(N,)`` int64 step per token in ``[0, max_steps)``, non-decreasing where ``centre_s`` is.

    Raises:
        ValueError: a non-positive ``max_steps`` or ``step_seconds``.
    """
    if max_steps <= 0 or step_seconds <= 0:
        raise ValueError(f"max_steps and step_seconds must be positive, got {max_steps}, {step_seconds}")
    step = torch.div(centre_s.to(torch.float64), step_seconds, rounding_mode="floor")
    return step.long().clamp_(min=0, max=max_steps - 1)


def assign_patch_steps(
    t_dim: int, *, patch_size: int, tstride: int, frames_per_step: int, max_steps: int
) -> Tensor:
    """Time step of each AST patch column: the step (second) that holds the column's centre.

    Column j spans fbank frames ``[j * tstride, j * tstride + patch_size)`` (10 ms frames); its centre
    is ``j * tstride + patch_size / 2`` and its step ``floor(centre / frames_per_step)``, clamped to
    ``max_steps - 1`` (docs/method.md §2): :func:`assign_token_steps` of
    :func:`token_centre_seconds` with ``frames_per_second = frames_per_step`` and offset 0.

    Args:
        t_dim: number of patch columns T' = ``(L - patch_size) // tstride + 1``.
        patch_size: patch side in fbank frames / mel bins.
        tstride: column stride in fbank frames.
        frames_per_step: fbank frames per time step (100 for one second at 10 ms).
        max_steps: number of time steps.

    Returns:
        ``(t_dim,)`` int64 step index per column, non-decreasing, in ``[0, max_steps)``.

    Raises:
        ValueError: a non-positive argument.
    """
    if min(t_dim, patch_size, tstride, frames_per_step, max_steps) <= 0:
        raise ValueError("t_dim, patch_size, tstride, frames_per_step and max_steps must be positive")
    centre = _column_centres(t_dim, patch_size=patch_size, tstride=tstride)
    return assign_token_steps(token_centre_seconds(centre, frames_per_second=frames_per_step),
                              max_steps=max_steps)


def _column_centres(t_dim: int, *, patch_size: int, tstride: int) -> Tensor:
    return torch.arange(t_dim, dtype=torch.float64) * tstride + patch_size / 2


class SpectrogramPatchEmbed(nn.Module):
    """AST patch embedding: ``(B, L, n_mels)`` fbank -> ``(B, F'*T', D)`` tokens, frequency-major.

    Args:
        n_mels: mel bins of the input.
        target_length: fbank frames L of the input.
        patch_size: square patch side.
        fstride: stride over mel bins.
        tstride: stride over frames.
        embed_dim: token width D.
    """

    def __init__(
        self, *, n_mels: int, target_length: int, patch_size: int, fstride: int, tstride: int, embed_dim: int
    ) -> None:
        super().__init__()
        if n_mels < patch_size or target_length < patch_size:
            raise ValueError(f"fbank ({target_length} x {n_mels}) is smaller than one {patch_size}-patch")
        self.grid_size = ((n_mels - patch_size) // fstride + 1, (target_length - patch_size) // tstride + 1)
        self.num_patches = self.grid_size[0] * self.grid_size[1]
        self.proj = nn.Conv2d(1, embed_dim, kernel_size=patch_size, stride=(fstride, tstride))
        self.patch_size, self.tstride = patch_size, tstride

    def column_centres(self) -> Tensor:
        """``(T',)`` float64 centre of each patch column in fbank frames:
        ``j * tstride + patch_size / 2``."""
        return _column_centres(self.grid_size[1], patch_size=self.patch_size, tstride=self.tstride)

    #: AST's patch embedding is trained with the rest: no fixed trunk to compute once.
    frozen_trunk = False

    def forward(self, fbank: Tensor, *, trunk: bool = False) -> Tensor:
        """``(B, L, n_mels)`` float -> ``(B, F'*T', D)``; token index ``f * T' + j``.

        Raises:
            ValueError: ``trunk=True`` (AST has no frozen trunk).
        """
        if trunk:
            raise ValueError("the AST patch embedding has no frozen trunk to take cells of")
        x = self.proj(fbank.transpose(1, 2).unsqueeze(1))  # (B, D, F', T')
        return x.flatten(2).transpose(1, 2)


class PromptEmbed(nn.Module):
    """TVP prompt tokens p_t = W_p n(v_t) + e_prompt + e_t: ``(B, S, prompt_dim)`` -> ``(B, S, D)``.

    ``n`` (``norm``) is a parameter-free LayerNorm over v_t's channels (``layernorm``) or the
    identity (``none``). A visual feature's scale is the backbone's (the demo's stride-16
    EfficientNet features have norm ~60), so without it W_p v_t outweighs the time identity e_t
    (norm ~0.2 at init) by orders of magnitude; normalised, every v_t enters at the same scale.

    The time identity e_t of step t (``position``):
    - ``step_mean``: the mean of the position embeddings of step t's audio patches, i.e. the
      time position the patches of that second carry (shared with them, no new parameters);
    - ``learned``: a learned embedding per step (``step_embed``, (1, S, D), init std 0.02);
    - ``none``: e_t = 0, the prompts are an unordered bag.

    Args:
        prompt_dim: width of the visual features v_t.
        embed_dim: token width D.
        max_steps: S, number of steps (prompts).
        position: one of :data:`PROMPT_POSITIONS`.
        norm: one of :data:`PROMPT_NORMS`.

    Raises:
        ValueError: unknown ``position`` or ``norm``.
    """

    def __init__(self, *, prompt_dim: int, embed_dim: int, max_steps: int,
                 position: str = "step_mean", norm: str = "none") -> None:
        super().__init__()
        if position not in PROMPT_POSITIONS:
            raise ValueError(f"train_audio.prompt_position must be one of {PROMPT_POSITIONS}, "
                             f"got {position!r}")
        if norm not in PROMPT_NORMS:
            raise ValueError(f"train_audio.prompt_norm must be one of {PROMPT_NORMS}, got {norm!r}")
        self.position = position
        self.norm = (nn.LayerNorm(prompt_dim, elementwise_affine=False) if norm == "layernorm"
                     else nn.Identity())
        self.proj = nn.Linear(prompt_dim, embed_dim)
        self.type_embed = nn.Parameter(torch.zeros(1, 1, embed_dim))  # e_prompt
        trunc_normal_(self.type_embed, std=0.02)
        if position == "learned":
            self.step_embed = nn.Parameter(torch.zeros(1, max_steps, embed_dim))
            trunc_normal_(self.step_embed, std=0.02)

    def forward(self, prompts: Tensor, step_pos: Tensor) -> Tensor:
        """``prompts (B, S, prompt_dim)`` float, ``step_pos (1, S, D)`` mean position embedding of
        each step's patches -> ``(B, S, D)``."""
        tokens = self.proj(self.norm(prompts)) + self.type_embed
        if self.position == "step_mean":
            return tokens + step_pos
        if self.position == "learned":
            return tokens + self.step_embed
        return tokens


class NoPrompts(nn.Module):
    """Stand-in for :class:`PromptEmbed` when prompts are off: ``(B, T, *)`` -> empty ``(B, 0, D)``."""

    def __init__(self, *, embed_dim: int) -> None:
        super().__init__()
        self.embed_dim = embed_dim

    def forward(self, prompts: Tensor, step_pos: Tensor | None = None) -> Tensor:
        """Returns a ``(B, 0, D)`` tensor of ``prompts``' dtype and device."""
        return prompts.new_zeros(prompts.shape[0], 0, self.embed_dim)


class SequenceLayout(NamedTuple):
    """Where each token of the TVP sequence ``[CLS] [p_1] [audio tokens of step 1] [p_2] ...``
    sits, for N audio tokens and S prompts (S = 0 without prompts), N_seq = 1 + S + N.

    Attributes:
        seq_index: (N_seq,) int64: the sequence gathers ``[CLS, prompts, audio tokens]``
            (concatenated in that order, audio tokens frequency-major) at these positions.
        token_step: (N_seq,) int64 step of each sequence token (-1 for CLS), for the key mask of
            invalid steps.
        patch_seq_pos: (N,) int64 sequence position of each audio token's output.
        step_prompt_mask: (N_seq, N_seq) bool, True = the query may attend the key: False only
            where an audio token of step t would read the prompt of another step (used with
            ``prompt_mask: step``).
    """

    seq_index: Tensor
    token_step: Tensor
    patch_seq_pos: Tensor
    step_prompt_mask: Tensor


def sequence_layout(patch_step: Tensor, *, max_steps: int, use_prompts: bool) -> SequenceLayout:
    """The :class:`SequenceLayout` of audio tokens with steps ``patch_step`` ((N,) int64, e.g.
    :func:`assign_token_steps` repeated over frequency), one prompt per step when ``use_prompts``
    (PCAS's Temporal Visual Prompting, docs/method.md §2)."""
    n_prompts = max_steps if use_prompts else 0
    num_patches = len(patch_step)
    order: list[int] = [0]
    for t in range(max_steps):
        if n_prompts:
            order.append(1 + t)
        order.extend((1 + n_prompts + torch.nonzero(patch_step == t).flatten()).tolist())
    seq_index = torch.tensor(order, dtype=torch.long)
    concat_step = torch.cat([torch.tensor([-1]), torch.arange(n_prompts), patch_step])
    is_prompt = torch.cat([torch.zeros(1, dtype=torch.bool), torch.ones(n_prompts, dtype=torch.bool),
                           torch.zeros(num_patches, dtype=torch.bool)])[seq_index]
    step = concat_step[seq_index]
    audio_query = (~is_prompt & (step >= 0))[:, None]
    other_prompt = is_prompt[None, :] & (step[None, :] != step[:, None])
    patch_seq_pos = torch.empty(num_patches, dtype=torch.long)
    audio = seq_index > n_prompts
    patch_seq_pos[seq_index[audio] - 1 - n_prompts] = torch.nonzero(audio).flatten()
    return SequenceLayout(seq_index, step, patch_seq_pos, ~(audio_query & other_prompt))
