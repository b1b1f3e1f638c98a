"""Shared machinery of the speed benchmarks: one training step (or an inference forward) of a
pcas model on random inputs, timed on the CPU or a GPU.

- :func:`timed`: seconds per call after a warm-up, and the peak GPU memory of the calls.
- :func:`align_steps`: the alignment step of ``pipeline.align`` (``method.alignment
  .alignment_terms``: L_cls + CMC + CMPC + CMCC, B global frames and B*K crops) beside a bare timm
  forward+backward of the same backbone module on the same images, and a no-grad forward of the
  frames (the feature passes' cost).
- :func:`classifier_steps`: a training step and a forward of the visual classifier
  (``train_visual``: frame logits and class-token logits, BCE on random labels).
- :func:`tvp_steps`: a training step and a forward of the TVP audio encoder (``train_audio``).
- :func:`measure`: steps/s, items/s, peak memory and (CUDA) host syncs of one step.

Training steps run under the stages' autocast (``runtime.fit.autocast``: bfloat16 on CUDA,
float32 on the CPU); ``optimizer=True`` adds the stages' Adam step (``runtime.fit.make_optimizer``)
so a step costs what one optimiser step of the stage costs, data loading aside. Used by
``align_step.py``, ``audio_encoders.py`` and ``gpu_check.py``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import NamedTuple

import pcas_core  # noqa: F401  (before timm, see pcas_core.compat)
import torch

from pcas_core.method.alignment import alignment_terms
from pcas_core.models.tvp import TVPAudioEncoder
from pcas_core.models.visual import build_visual
from pcas_core.params import AlignConfig
from pcas_core.pipeline.align import build_align_model
from pcas_core.runtime.fit import autocast, host_syncs, make_optimizer

Step = Callable[[], None]


def timed(fn: Step, steps: int, warmup: int, device: torch.device) -> tuple[float, float]:
    """Seconds per call of ``fn`` (mean over ``steps`` after ``warmup``) and peak GPU memory in
    GiB over the timed calls (NaN on the CPU)."""
    for _ in range(warmup):
        fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    start = time.perf_counter()
    for _ in range(steps):
        fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    seconds = (time.perf_counter() - start) / steps
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else float("nan")
    return seconds, peak


def _trainer(model: torch.nn.Module, loss_fn: Callable[[], torch.Tensor], device: torch.device,
             optimizer: bool) -> Step:
    """One step: zero the gradients, the loss under autocast, backward, and (``optimizer``) an
    Adam step over the trainable parameters, as ``runtime.fit.fit`` does."""
    opt = make_optimizer([([p for p in model.parameters() if p.requires_grad], 1e-4)]) \
        if optimizer else None

    def step() -> None:
        model.zero_grad(set_to_none=True)
        with autocast(device, True):
            loss = loss_fn()
        loss.backward()
        if opt is not None:
            opt.step()

    return step


def _forward(model: torch.nn.Module, fn: Callable[[], object], device: torch.device) -> Step:
    """An inference forward under autocast and ``no_grad`` (the feature passes)."""

    def step() -> None:
        with torch.no_grad(), autocast(device, True):
            fn()

    return step


class AlignSteps(NamedTuple):
    """``align``: the alignment step; ``plain``: timm forward+backward of the backbone on the same
    frames and crops; ``forward``: no-grad forward of the frames; ``images``: B + B*K per step."""

    align: Step
    plain: Step
    forward: Step
    images: int


def align_steps(visual_cfg: dict, cfg: AlignConfig, batch: int, audio_dim: int,
                device: torch.device, *, optimizer: bool = False) -> AlignSteps:
    """The alignment step of ``cfg`` on ``batch`` random frames (videos of 5 frames, AVSBench v1)
    of the classifier ``visual_cfg`` (``models.visual.build_visual`` keys), random a_t of width
    ``audio_dim`` and random 70-class video labels; random weights."""
    torch.manual_seed(0)
    model = build_align_model(build_visual(visual_cfg), audio_dim, cfg).to(device).train()
    size = int(visual_cfg["img_size"])
    frames = torch.randn(batch, 3, size, size, device=device)
    crops = torch.randn(batch * cfg.n_crops, 3, cfg.crop_size, cfg.crop_size, device=device)
    audio = torch.randn(batch, audio_dim, device=device)
    frame_video = torch.arange(batch, device=device) // 5  # videos of 5 frames (AVSBench v1)
    labels = (torch.rand(int(frame_video[-1]) + 1, 70, device=device) < 0.05).float()
    labels[:, 0] = 1.0
    generator = torch.Generator().manual_seed(0)
    backbone = model.visual.backbone
    align = _trainer(model, lambda: alignment_terms(model, cfg, frames, audio, frame_video, labels,
                                                    generator)["loss"], device, optimizer)
    plain = _trainer(model, lambda: backbone.forward_features(frames).float().mean()
                     + backbone.forward_features(crops).float().mean(), device, False)
    return AlignSteps(align, plain, _forward(model, lambda: model.visual(frames), device),
                      batch * (1 + cfg.n_crops))


class ModelSteps(NamedTuple):
    """``train``: one training step; ``forward``: one inference forward; ``items``: frames or
    clips per call."""

    train: Step
    forward: Step
    items: int


def classifier_steps(visual_cfg: dict, batch: int, device: torch.device, *,
                     optimizer: bool = True) -> ModelSteps:
    """The visual classifier of ``visual_cfg`` on ``batch`` random frames: BCE of its frame
    logits and class-token logits against random labels (``train_visual``'s two terms)."""
    torch.manual_seed(0)
    model = build_visual(visual_cfg).to(device).train()
    size = int(visual_cfg["img_size"])
    frames = torch.randn(batch, 3, size, size, device=device)
    labels = (torch.rand(batch, int(visual_cfg["num_classes"]), device=device) < 0.05).float()
    bce = torch.nn.functional.binary_cross_entropy_with_logits

    def loss() -> torch.Tensor:
        out = model(frames)
        return bce(out.logits.float(), labels) + bce(out.class_logits.float(), labels)

    return ModelSteps(_trainer(model, loss, device, optimizer),
                      _forward(model, lambda: model(frames), device), batch)


def tvp_steps(model: TVPAudioEncoder, batch: int, frames: int, bins: int, prompt_dim: int,
              device: torch.device, *, optimizer: bool = True) -> ModelSteps:
    """The TVP encoder ``model`` on ``batch`` random (frames x bins) features with random
    prompts of width ``prompt_dim`` at every one of its ``max_steps`` steps; the loss is the mean
    sigmoid of the video logits (cost as ``train_audio``'s BCE)."""
    model = model.to(device)
    x = torch.rand(batch, frames, bins, device=device)
    prompts = torch.randn(batch, model.max_steps, prompt_dim, device=device)
    n_steps = torch.full((batch,), model.max_steps, device=device)

    def loss() -> torch.Tensor:
        model.train()
        return model(x, prompts, n_steps).video_logits.float().sigmoid().mean()

    def forward() -> None:
        model.eval()
        model(x, prompts, n_steps)

    return ModelSteps(_trainer(model, loss, device, optimizer), _forward(model, forward, device),
                      batch)


def measure(step: Step, items: int, device: torch.device, *, steps: int,
            warmup: int) -> dict[str, float | int | None]:
    """``s_per_step``, ``steps_per_s``, ``items_per_s``, ``peak_gib`` (CUDA; None on the CPU) and
    ``host_syncs`` (CUDA: times one step makes the host wait for the GPU,
    ``runtime.fit.host_syncs``; None on the CPU) of ``step``."""
    seconds, peak = timed(step, steps, warmup, device)
    cuda = device.type == "cuda"
    return {"s_per_step": seconds, "steps_per_s": 1.0 / seconds, "items_per_s": items / seconds,
            "peak_gib": peak if cuda else None, "host_syncs": host_syncs(step) if cuda else None}
