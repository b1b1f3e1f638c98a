"""Temporal Visual Prompting (TVP) audio encoder: an AST with one visual prompt token per time step.

Sources:
- AST (Gong, Chung and Glass, "AST: Audio Spectrogram Transformer", Interspeech 2021,
  github.com/YuanGongND/ast, ``src/models/ast_models.py``): the fbank ``(B, L, n_mels)`` is transposed
  to ``(B, 1, n_mels, L)``, cut into ``patch_size`` squares at strides ``(fstride, tstride)`` by one
  ``nn.Conv2d``, given learned position embeddings and a ``[CLS]`` token, and run through ViT blocks.
  ImageNet initialisation: :func:`pcas_core.models.ast_init.load_imagenet_vit_patch_embed`.
- aisfx (Ma and Lerch, ISMIR 2022; CC BY 4.0): ``encoder: aisfx`` replaces AST's linear patches
  by the conv blocks of its pretrained CNN (:mod:`pcas_core.models.aisfx`); tokens are the cells
  of the last block. Not the paper's setting.
- TVP (the PCAS paper; docs/method.md §2): time step t owns the fbank frames of its second;
  every audio token belongs to the step holding its centre time (its centre column of frames, on
  the front end's frame clock). The token sequence is
  ``[CLS] [p_1] [patches of step 1] [p_2] [patches of step 2] ...`` with ``p_t = W_p v_t + e_prompt
  + e_t`` (``v_t`` a frozen visual feature of frame t; e_t its step's time identity, see
  :class:`pcas_core.models.tvp_tokens.PromptEmbed`). Position embeddings cover audio patches.
  ``a_t`` is the mean of the final-norm output tokens of step t's patches, ``s_t = W_a a_t``, and the
  video logits pool ``s_t`` over valid steps (max or mean). ``use_prompts=False`` drops the prompt
  tokens: plain AST, the Table 3 baseline.

Masking choice: timm's ``vision_transformer.Block`` (timm >= 1.0) forwards an ``attn_mask`` to
``F.scaled_dot_product_attention`` (or to an equivalent additive bias when fused attention is off), so
the encoder uses timm's Block unchanged with a boolean key mask of shape ``(B, 1, 1, N)``, True = may
be attended to. Prompts and patches of steps ``t >= n_steps`` are masked as keys, so no valid token
ever reads them: outputs of valid steps do not depend on the content of invalid steps. Invalid tokens
still attend to valid ones (every query keeps at least ``[CLS]``), which keeps the softmax finite;
their outputs are computed but reported as invalid in ``step_valid``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

import pcas_core  # noqa: F401  (import shim before timm)
from timm.layers import trunc_normal_  # noqa: E402
from timm.models.vision_transformer import Block  # noqa: E402

from pcas_core.models.aisfx import AisfxPatchEmbed  # noqa: E402
from pcas_core.models.heads import init_prior_bias  # noqa: E402
from pcas_core.storage.weights import load_checkpoint  # noqa: E402
from pcas_core.models.tvp_tokens import (sequence_layout, NoPrompts, PromptEmbed,  # noqa: E402
                                         SpectrogramPatchEmbed, assign_patch_steps,
                                         assign_token_steps, token_centre_seconds)

__all__ = [
    "ENCODERS",
    "PROMPT_MASKS",
    "TVPAudioEncoder",
    "TVPOutput",
    "load_audio_encoder",
    "assign_patch_steps",  # re-exported from pcas_core.models.tvp_tokens
]

#: ``train_audio.encoder`` choices: the patch embedding.
ENCODERS = ("ast", "aisfx")

#: ``train_audio.prompt_mask`` choices: which prompts an audio token may attend to.
PROMPT_MASKS = ("step", "none")


class TVPOutput(NamedTuple):
    """Outputs of :class:`TVPAudioEncoder` (T steps, C classes, D = embed_dim).

    Attributes:
        step_tokens: ``(B, T, D)`` float, a_t = mean of the final-norm output tokens of step t's
            audio patches.
        step_logits: ``(B, T, C)`` float, s_t = head(a_t) (pre-sigmoid).
        video_logits: ``(B, C)`` float, s_t pooled (max or mean) over the valid steps only.
        step_valid: ``(B, T)`` bool, ``t < n_steps`` of the item.
    """

    step_tokens: Tensor
    step_logits: Tensor
    video_logits: Tensor
    step_valid: Tensor


class TVPAudioEncoder(nn.Module):
    """AST audio encoder with Temporal Visual Prompting and per-step classification.

    The patch embedding (``encoder``) is AST's linear patches (``ast``) or the pretrained aisfx
    conv blocks with a linear projection (``aisfx``, :class:`pcas_core.models.aisfx.AisfxPatchEmbed`,
    weights loaded by :func:`pcas_core.models.ast_init.init_audio_encoder`); the rest (position
    embeddings over the audio tokens, one prompt before each step's tokens, masking, a_t, s_t) is
    the same for both. Every audio token belongs to the step that holds its centre time.

    Args:
        num_classes: number of classes C of the step and video logits.
        n_mels: mel bins of the input fbank.
        target_length: fbank frames L of the input (AST: 10 ms each, 1024 for 10 s).
        patch_size: square patch side (AST: 16). ``encoder: ast`` only, as the two strides.
        fstride: patch stride over mel bins (AST: 10).
        tstride: patch stride over frames (AST: 10).
        embed_dim: token width D.
        depth: number of transformer blocks.
        num_heads: attention heads per block.
        mlp_ratio: MLP hidden width / D.
        drop_rate: dropout after the embeddings and before the head.
        prompt_dim: width of the visual prompt features v_t.
        max_steps: number of time steps (video frames, one per second) the fbank covers.
        frames_per_step: input frames per one-second step, i.e. frames per second (may be
            fractional: 100 for AST at 10 ms, 44100 / 1024 for aisfx).
        frame_offset: offset of frame 0 in frames (AST 0; aisfx's centred frames -0.5), see
            :func:`pcas_core.models.tvp_tokens.token_centre_seconds`.
        front_end: the fbank front end of the inputs (``ast`` | ``aisfx``), recorded so that a
            rebuilt encoder is fed the same features (``pcas predict`` checks it).
        encoder: the patch embedding, one of :data:`ENCODERS`.
        aisfx_frozen_blocks: ``encoder: aisfx``: the first k conv blocks frozen, BatchNorm
            statistics too (see :class:`pcas_core.models.aisfx.AisfxCNN`).
        aisfx_tokens: ``encoder: aisfx``: ``columns`` (frequency-pooled time cells) | ``cells``.
        use_prompts: insert one prompt token before each step's patches; False gives plain AST.
        prompt_position: time identity of the prompts: ``step_mean`` | ``learned`` | ``none``
            (see :class:`pcas_core.models.tvp_tokens.PromptEmbed`).
        prompt_norm: ``layernorm`` | ``none``: v_t normalised before W_p (see
            :class:`pcas_core.models.tvp_tokens.PromptEmbed`).
        prompt_mask: ``step``: an audio token of step t attends to prompt p_t and to no other
            prompt, so every step hears its own frame's v_t whatever the prompts' time
            identity (CLS, prompts and audio tokens are attended as usual); ``none``: every
            token attends to every prompt.
        step_pool: ``"max"`` or ``"mean"`` pooling of step logits over valid steps.
        head_bias_prior: initial probability of every class (see
            :func:`pcas_core.models.heads.init_prior_bias`).
    """

    def __init__(
        self,
        *,
        num_classes: int = 70,
        n_mels: int = 128,
        target_length: int = 1024,
        patch_size: int = 16,
        fstride: int = 10,
        tstride: int = 10,
        embed_dim: int = 768,
        depth: int = 12,
        num_heads: int = 12,
        mlp_ratio: float = 4.0,
        drop_rate: float = 0.0,
        prompt_dim: int = 768,
        max_steps: int = 10,
        frames_per_step: float = 100,
        frame_offset: float = 0.0,
        front_end: str = "ast",
        use_prompts: bool = True,
        prompt_position: str = "step_mean",
        prompt_norm: str = "none",
        prompt_mask: str = "none",
        step_pool: str = "max",
        head_bias_prior: float = 0.01,
        encoder: str = "ast",
        aisfx_frozen_blocks: int = 0,
        aisfx_tokens: str = "columns",
    ) -> None:
        super().__init__()
        if step_pool not in ("max", "mean"):
            raise ValueError(f"step_pool must be 'max' or 'mean', got {step_pool!r}")
        if prompt_mask not in PROMPT_MASKS:
            raise ValueError(f"train_audio.prompt_mask must be one of {PROMPT_MASKS}, "
                             f"got {prompt_mask!r}")
        if encoder not in ENCODERS:
            raise ValueError(f"train_audio.encoder must be one of {ENCODERS}, got {encoder!r}")
        self.num_classes, self.n_mels, self.target_length = num_classes, n_mels, target_length
        self.patch_size, self.embed_dim, self.prompt_dim = patch_size, embed_dim, prompt_dim
        self.max_steps, self.use_prompts, self.step_pool = max_steps, use_prompts, step_pool
        self.head_bias_prior, self.encoder, self.front_end = head_bias_prior, encoder, front_end
        self.prompt_mask = prompt_mask

        if encoder == "ast":
            self.patch_embed = SpectrogramPatchEmbed(
                n_mels=n_mels, target_length=target_length, patch_size=patch_size,
                fstride=fstride, tstride=tstride, embed_dim=embed_dim,
            )
        else:
            self.patch_embed = AisfxPatchEmbed(
                n_mels=n_mels, target_length=target_length, embed_dim=embed_dim,
                tokens=aisfx_tokens, frozen_blocks=aisfx_frozen_blocks,
            )
        f_dim, t_dim = self.patch_embed.grid_size
        num_patches = self.patch_embed.num_patches
        centre_s = token_centre_seconds(self.patch_embed.column_centres(),
                                        frames_per_second=frames_per_step, frame_offset=frame_offset)
        col_step = assign_token_steps(centre_s, max_steps=max_steps)
        patch_step = col_step.repeat(f_dim)  # (N,), patch index f * T' + j
        counts = torch.bincount(patch_step, minlength=max_steps)
        if (counts == 0).any():
            empty = torch.nonzero(counts == 0).flatten().tolist()
            raise ValueError(
                f"steps {empty} own no audio patch: {max_steps} steps of {frames_per_step:g} frames do not fit "
                f"target_length={target_length}"
            )
        self.register_buffer("patch_step", patch_step, persistent=False)
        # (S, N) averaging matrix: a_t = sum_n assign[t, n] * token_n
        assign = F.one_hot(patch_step, max_steps).T.float() / counts[:, None].float()
        self.register_buffer("step_assign", assign, persistent=False)
        layout = sequence_layout(patch_step, max_steps=max_steps, use_prompts=use_prompts)
        for name, buffer in layout._asdict().items():
            self.register_buffer(name, buffer, persistent=False)

        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, num_patches, embed_dim))  # audio patches only
        self.prompt_embed = (
            PromptEmbed(prompt_dim=prompt_dim, embed_dim=embed_dim, max_steps=max_steps,
                        position=prompt_position, norm=prompt_norm)
            if use_prompts else NoPrompts(embed_dim=embed_dim)
        )
        self.pos_drop = nn.Dropout(drop_rate)
        self.blocks = nn.ModuleList(
            [Block(dim=embed_dim, num_heads=num_heads, mlp_ratio=mlp_ratio, qkv_bias=True, proj_drop=drop_rate)
             for _ in range(depth)]
        )
        self.norm = nn.LayerNorm(embed_dim, eps=1e-6)
        self.head_drop = nn.Dropout(drop_rate)
        self.head = nn.Linear(embed_dim, num_classes)
        self._init_weights()

    def _init_weights(self) -> None:
        """timm ViT init: truncated-normal (std 0.02) embeddings and Linear weights, zero biases."""
        trunc_normal_(self.pos_embed, std=0.02)
        nn.init.normal_(self.cls_token, std=1e-6)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
        init_prior_bias(self.head, self.head_bias_prior)

    @property
    def frozen_trunk(self) -> bool:
        """True when the patch embedding starts with a frozen trunk (aisfx with all four conv
        blocks frozen) whose output :meth:`trunk_cells` a loop may compute once per video."""
        return bool(self.patch_embed.frozen_trunk)

    @torch.no_grad()
    def trunk_cells(self, fbank: Tensor) -> Tensor:
        """The frozen trunk's output ``(B, N, W)`` float of features ``(B, L, n_mels)``, the input
        of ``forward(..., trunk=True)`` (the same encoder output as from the features).

        Raises:
            ValueError: the encoder has no frozen trunk (:attr:`frozen_trunk`), or features of
                another shape.
        """
        if not self.frozen_trunk:
            raise ValueError("this audio encoder has no frozen trunk (encoder aisfx with "
                             "train_audio.aisfx.frozen_blocks 4 has one)")
        if fbank.ndim != 3 or fbank.shape[1:] != (self.target_length, self.n_mels):
            raise ValueError(f"fbank must be (B, L={self.target_length}, n_mels={self.n_mels}), "
                             f"got {tuple(fbank.shape)}")
        return self.patch_embed.trunk_cells(fbank)

    def _check_inputs(self, fbank: Tensor, prompts: Tensor | None, n_steps: Tensor,
                      trunk: bool = False) -> int:
        """Validates shapes and returns T, the number of steps reported."""
        if trunk:
            if not self.frozen_trunk:
                raise ValueError("trunk=True, but this audio encoder has no frozen trunk")
            if fbank.ndim != 3 or fbank.shape[1] != self.patch_embed.num_patches:
                raise ValueError(f"trunk cells must be (B, N={self.patch_embed.num_patches}, W), "
                                 f"got {tuple(fbank.shape)}")
        elif fbank.ndim != 3 or fbank.shape[1:] != (self.target_length, self.n_mels):
            raise ValueError(
                f"fbank must be (B, L={self.target_length}, n_mels={self.n_mels}), got {tuple(fbank.shape)}"
            )
        batch = fbank.shape[0]
        if prompts is None:
            if self.use_prompts:
                raise ValueError("use_prompts=True needs prompts of shape (B, T, prompt_dim), got None")
            num_steps = self.max_steps
        else:
            if prompts.ndim != 3 or prompts.shape[0] != batch or (
                self.use_prompts and prompts.shape[2] != self.prompt_dim
            ):
                raise ValueError(
                    f"prompts must be (B={batch}, T, prompt_dim={self.prompt_dim}), got {tuple(prompts.shape)}"
                )
            num_steps = prompts.shape[1]
        if not 1 <= num_steps <= self.max_steps:
            raise ValueError(f"T must be in [1, max_steps={self.max_steps}], got {num_steps}")
        if n_steps.shape != (batch,) or n_steps.dtype.is_floating_point:
            raise ValueError(f"n_steps must be an integer tensor of shape (B={batch},), got {tuple(n_steps.shape)}")
        if bool(((n_steps < 1) | (n_steps > num_steps)).any()):
            raise ValueError(f"n_steps must lie in [1, T={num_steps}], got {n_steps.tolist()}")
        return num_steps

    def forward_features(self, fbank: Tensor, prompts: Tensor | None, n_steps: Tensor, *,
                         trunk: bool = False) -> Tensor:
        """Embed, run the masked blocks and the final norm (``trunk``: as :meth:`forward`).

        Args:
            fbank: ``(B, L, n_mels)`` float32 features of the encoder's front end
                (:func:`pcas_core.audio.front_end.front_end_features`).
            prompts: ``(B, T, prompt_dim)`` float32 visual features v_t, or None when prompts are off.
            n_steps: ``(B,)`` int64 valid steps per item (its number of frames), ``1 <= n_steps <= T``.

        Returns:
            ``(B, N_seq, D)`` normed tokens in sequence order (``seq_index``); N_seq = 1 + S + N with
            S = max_steps prompts (0 without prompts) and N = F'*T' patches.

        Raises:
            ValueError: see :meth:`forward`.
        """
        num_steps = self._check_inputs(fbank, prompts, n_steps, trunk)
        batch = fbank.shape[0]
        if prompts is None:
            prompts = fbank.new_zeros(batch, self.max_steps, self.prompt_dim)
        prompts = F.pad(prompts, (0, 0, 0, self.max_steps - num_steps))  # steps >= T are masked below
        patches = self.patch_embed(fbank, trunk=trunk) + self.pos_embed
        step_pos = torch.einsum("sn,bnd->bsd", self.step_assign, self.pos_embed)  # (1, S, D)
        prompt_tokens = self.prompt_embed(prompts, step_pos)
        tokens = torch.cat([self.cls_token.expand(batch, -1, -1), prompt_tokens, patches], dim=1)
        x = self.pos_drop(tokens[:, self.seq_index])
        key_valid = self.token_step[None, :] < n_steps.to(self.token_step.device)[:, None]  # CLS: -1
        attn_mask = key_valid[:, None, None, :]  # (B, 1, 1, N_seq), True = attend
        if self.prompt_mask == "step" and self.use_prompts:
            attn_mask = attn_mask & self.step_prompt_mask  # (B, 1, N_seq, N_seq)
        for block in self.blocks:
            x = block(x, attn_mask=attn_mask)
        return self.norm(x)

    def forward_head(self, x: Tensor, n_steps: Tensor, num_steps: int) -> TVPOutput:
        """Pool patch tokens per step, classify steps and pool valid steps per video.

        Args:
            x: ``(B, N_seq, D)`` output of :meth:`forward_features`.
            n_steps: ``(B,)`` int64 valid steps per item.
            num_steps: T, number of steps to report.

        Returns:
            :class:`TVPOutput` with T steps.
        """
        patch_tokens = x[:, self.patch_seq_pos]  # (B, N, D), frequency-major patch order
        step_tokens = torch.einsum("sn,bnd->bsd", self.step_assign, patch_tokens)[:, :num_steps]
        step_logits = self.head(self.head_drop(step_tokens))  # (B, T, C)
        step_valid = torch.arange(num_steps, device=x.device)[None, :] < n_steps.to(x.device)[:, None]
        valid = step_valid[..., None]
        if self.step_pool == "max":
            video_logits = step_logits.masked_fill(~valid, float("-inf")).amax(dim=1)
        else:
            video_logits = (step_logits * valid).sum(1) / valid.sum(1).clamp_min(1)
        return TVPOutput(step_tokens, step_logits, video_logits, step_valid)

    def forward(self, fbank: Tensor, prompts: Tensor | None, n_steps: Tensor, *,
                trunk: bool = False) -> TVPOutput:
        """Encode a batch of fbanks with one visual prompt per step.

        ``trunk=True``: ``fbank`` holds :meth:`trunk_cells` of the features instead, ``(B, N, W)``
        (a loop computes a frozen trunk once per video); the output is the same.

        Args:
            fbank: ``(B, L, n_mels)`` float32 features, L = target_length frames of the front end.
            prompts: ``(B, T, prompt_dim)`` float32 visual features v_t of frames 0..T-1 (T <=
                max_steps), or None when ``use_prompts=False`` (then T = max_steps; given prompts are
                ignored except for T).
            n_steps: ``(B,)`` int64 number of valid steps (frames) per item; steps ``t >= n_steps`` are
                masked out of attention and of the video pooling.

        Returns:
            :class:`TVPOutput` (always).

        Raises:
            ValueError: fbank is not ``(B, target_length, n_mels)``; prompts is None while
                ``use_prompts=True``; prompts is not ``(B, T, prompt_dim)`` with 1 <= T <= max_steps;
                n_steps is not an integer ``(B,)`` tensor in ``[1, T]``.
        """
        num_steps = self._check_inputs(fbank, prompts, n_steps, trunk)
        return self.forward_head(self.forward_features(fbank, prompts, n_steps, trunk=trunk),
                                 n_steps, num_steps)


def load_audio_encoder(path: Path) -> tuple[TVPAudioEncoder, dict[str, Any]]:
    """Rebuild a TVP encoder from its checkpoint, whose config holds its constructor arguments.

    Returns:
        ``(model on the CPU in eval mode, config)``.

    Raises:
        FileNotFoundError / ValueError: as :func:`pcas_core.storage.weights.load_checkpoint`, or the
            config does not fit the encoder (names the file).
    """
    state, config = load_checkpoint(path)
    try:
        model = TVPAudioEncoder(**config)
    except TypeError as err:
        raise ValueError(f"{path}: config does not fit TVPAudioEncoder ({err})") from err
    model.load_state_dict(state)
    return model.eval(), config
