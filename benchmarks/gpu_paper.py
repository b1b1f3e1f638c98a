"""The paper setting's heavy steps for ``gpu_check.py``, with random weights, and the projection of
the paper's AVSS schedule on one GPU from their rates.

Rows (each run in its own process by ``gpu_check.py``, ``python benchmarks/gpu_paper.py ROW``,
so that one that fails or runs out of memory leaves the others standing; it prints one JSON
line):

- ``align``: the alignment step (``step_timing.align_steps``: L_cls + CMC + CMPC + CMCC with its
  Adam step) of ViT-B/16 at 224 px with K = 8 crops of 96 px, B frames; a_t of width 768 (AST-base).
- ``tvp``: a training step of the TVP audio encoder, AST-base (12 layers, width 768, 16 x 16
  patches at fstride = tstride = 10 on 1024 x 128 fbank frames: 12 x 101 patches) with 10 visual
  prompts of width 768, B clips.
- ``classifier``: a training step of the ViT-B/16 classifier (``train_visual``), B frames.
Each row also times a no-grad forward (the feature passes' cost). ``--tiny``: ViT-tiny with 2
blocks and an AST of width 192 with 2 blocks (same token counts), for the CPU proof.

Projection figures (:data:`AVSS`, :data:`SCHEDULE`): see their comments for where each comes from.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
from typing import Any

#: AVSBench-semantic (AVSS) by subset: videos, training videos, frames per video. v1s and v1m are
#: AVSBench-object's S4 and MS3 clips with their splits (S4 3452/740/740, MS3 296/64/64: the
#: split sizes in the project's AVSBench notes). v2 is the semantic release's own 10-second clips:
#: 6,000 videos, its training share taken as what is left of the release's published training
#: split of 8,498 videos (of 11,356; README rounds it to about 12,000) after v1s and v1m. The v2
#: figures are the dataset authors' published counts, not read from data here.
AVSS = {"v1s": {"videos": 4932, "train": 3452, "frames": 5},
        "v1m": {"videos": 424, "train": 296, "frames": 5},
        "v2": {"videos": 6000, "train": 8498 - 3452 - 296, "frames": 10}}
#: The paper's schedule: Adam for 9 epochs with 2 warm-up epochs (its experimental settings; the
#: one schedule it gives, applied here to each training stage: train_visual, train_audio, align).
#: The paper gives no batch size: pcas's ``batch_videos`` (8) is used, and train_visual's
#: ``max_frames`` (1 frame per clip and step). evaluate's head trains on cached tokens; only its
#: token pass (a forward of every frame) is counted.
SCHEDULE = {"epochs": 9, "batch_videos": 8, "visual_frames_per_clip": 1}
#: GPU sizes asked about (GB as sold = GiB of device memory) and what is kept back for the CUDA
#: context and the allocator's fragmentation when judging whether a peak fits.
CARDS_GIB = (24, 40, 80)
RESERVE_GIB = 1.5


def _configs(tiny: bool) -> tuple[dict, Any, Any, int]:
    """(visual classifier config, AlignConfig, TrainAudioConfig, a_t / prompt width) of the paper
    setting (``tiny``: the shrunken models)."""
    from pathlib import Path

    from pcas_core.params import load_config

    params = load_config(Path(__file__).resolve().parents[1] / "params.yaml")
    width = 192 if tiny else 768
    visual = {"backbone": "vit_tiny_patch16_224" if tiny else "vit_base_patch16_224",
              "img_size": 224, "num_classes": 70, "token_layer": -1, "pretrained": False,
              "backbone_kwargs": {"depth": 2} if tiny else {}}
    align = dataclasses.replace(params.align, cmc=True, cmpc=True, cmcc=True, crop_size=96,
                                n_crops=8)
    model = dataclasses.replace(params.train_audio.model, patch_size=16, fstride=10, tstride=10,
                                embed_dim=width, depth=2 if tiny else 12,
                                num_heads=3 if tiny else 12, max_steps=10)
    audio = dataclasses.replace(params.train_audio, encoder="ast", tvp=True, model=model)
    return visual, align, audio, width


def run_row(row: str, batch: int, device_name: str, tiny: bool, steps: int,
            warmup: int) -> dict[str, Any]:
    """Time one row (see the module docstring); the measures of ``step_timing.measure`` for the
    training step and for the forward, plus what one item is."""
    import torch

    from pcas_core.audio.front_end import front_end_timing
    from pcas_core.models.tvp import TVPAudioEncoder
    from pcas_core.params import FbankConfig
    from pcas_core.pipeline.train_audio import tvp_model_config
    from step_timing import align_steps, classifier_steps, measure, tvp_steps

    device = torch.device(device_name)
    visual, align_cfg, audio_cfg, width = _configs(tiny)
    if row == "align":
        train, _, forward, images = align_steps(visual, align_cfg, batch, width, device,
                                                optimizer=True)
        out = {"item": "image (frames + crops)", "items_per_step": images}
    elif row == "classifier":
        train, forward, _ = classifier_steps(visual, batch, device)
        out = {"item": "frame", "items_per_step": batch}
    elif row == "tvp":
        clock = front_end_timing(FbankConfig(front_end="ast"))
        config = tvp_model_config(audio_cfg, num_classes=70, target_length=1024, n_mels=128,
                                  prompt_dim=width, frames_per_second=clock.frames_per_second,
                                  frame_offset=clock.frame_offset, front_end="ast")
        torch.manual_seed(0)
        model = TVPAudioEncoder(**config)
        train, forward, _ = tvp_steps(model, batch, 1024, 128, width, device)
        out = {"item": "clip", "items_per_step": batch,
               "tokens": int(model.patch_embed.num_patches)}
    else:
        raise ValueError(f"unknown row {row!r}")
    out["train"] = measure(train, out["items_per_step"], device, steps=steps, warmup=warmup)
    out["forward"] = measure(forward, batch, device, steps=steps, warmup=warmup)
    out["frames_per_s" if row != "tvp" else "clips_per_s"] = batch / out["train"]["s_per_step"]
    return out


def _fit(points: list[tuple[float, float]]) -> tuple[float, float]:
    """Least-squares line ``y = a + b x`` through ``points`` (one point: through the origin)."""
    if len(points) == 1:
        return 0.0, points[0][1] / points[0][0]
    n = len(points)
    mx, my = sum(x for x, _ in points) / n, sum(y for _, y in points) / n
    b = sum((x - mx) * (y - my) for x, y in points) / sum((x - mx) ** 2 for x, _ in points)
    return my - b * mx, b


def projection(rows: dict[str, dict[int, dict]], demo_stage_s: dict[str, float] | None,
               demo_frames: int | None, demo_img_size: int = 160) -> dict[str, Any]:
    """The paper's AVSS schedule on one GPU from measured rows (``rows[row][batch]``): per
    component its count, rate, seconds and source; the total; and per row whether the batch
    the schedule uses fits each card of :data:`CARDS_GIB`. ``demo_stage_s`` (stage -> seconds of
    the demo run on this machine), ``demo_frames`` and ``demo_img_size`` (its frame side) give
    the CPU-side estimate (the CRF). A rate at a batch not measured is read off the least-squares
    line through the measured batches (if that line falls with the batch, as two noisy points on
    a loaded CPU can make it, the largest batch's figure scaled in proportion)."""
    train_videos = sum(s["train"] for s in AVSS.values())
    train_frames = sum(s["train"] * s["frames"] for s in AVSS.values())
    all_frames = sum(s["videos"] * s["frames"] for s in AVSS.values())
    all_videos = sum(s["videos"] for s in AVSS.values())
    epochs, bv = SCHEDULE["epochs"], SCHEDULE["batch_videos"]
    steps = epochs * math.ceil(train_videos / bv)
    align_batch = bv * train_frames / train_videos  # mean frames in an align step
    worst_align = bv * max(s["frames"] for s in AVSS.values())
    visual_batch = bv * SCHEDULE["visual_frames_per_clip"]

    def at(row: str, key: str, batch: float) -> float | None:
        """``key`` of ``row`` at ``batch`` on the line through the measured batches."""
        pts = [(b, r[key]) for b, r in flat.get(row, {}).items() if r.get(key) is not None]
        if not pts:
            return None
        a, b = _fit(pts)
        if b > 0 and a + b * batch > 0:
            return a + b * batch
        top, value = max(pts)  # noisy points (a loaded CPU): the largest batch's, scaled
        return value * batch / top

    flat = {row: {b: {"train_s": r["train"]["s_per_step"], "fwd_s": r["forward"]["s_per_step"],
                      "train_gib": r["train"]["peak_gib"]} for b, r in by.items()
                  if "train" in r} for row, by in rows.items()}
    parts = []

    def add(name: str, count: float, unit: str, seconds_each: float | None, source: str) -> None:
        parts.append({"part": name, "count": count, "unit": unit, "seconds_each": seconds_each,
                      "seconds": None if seconds_each is None else count * seconds_each,
                      "source": source})

    add("train_visual steps", steps, f"steps of {visual_batch} frames",
        at("classifier", "train_s", visual_batch) if "classifier" in flat else None,
        f"classifier row, line through the measured batches at B={visual_batch}")
    add("train_audio steps", steps, f"steps of {bv} clips", at("tvp", "train_s", bv)
        if "tvp" in flat else None, f"tvp row at B={bv}")
    add("align steps", steps, f"steps of {align_batch:.1f} frames (mean)",
        at("align", "train_s", align_batch) if "align" in flat else None,
        "align row, line through the measured batches")
    fwd = at("classifier", "fwd_s", 32) if "classifier" in flat else None
    if fwd is None and "align" in flat:
        fwd = at("align", "fwd_s", 32)
    add("ViT passes (visual, maps, head tokens)", 3 * all_frames / 32, "batches of 32 frames",
        fwd, "no-grad forward of the classifier (else align) row at B=32; 3 passes over all frames")
    add("audio pass", all_videos / bv, f"batches of {bv} clips",
        at("tvp", "fwd_s", bv) if "tvp" in flat else None, "no-grad forward of the tvp row")
    if demo_stage_s and demo_frames and demo_stage_s.get("pseudo_masks"):
        per_frame = demo_stage_s["pseudo_masks"] / demo_frames * (224 / demo_img_size) ** 2
        add("pseudo-masks (CRF, CPU)", all_frames, "frames", per_frame,
            f"the demo's pseudo_masks stage on this machine per frame, x (224/{demo_img_size})^2 "
            "pixels "
            "(upper bound: includes its start-up; more pseudo_masks.workers divide it)")
    known = [p["seconds"] for p in parts if p["seconds"] is not None]
    fits = {}
    for row, batch in (("align", worst_align), ("align", align_batch), ("tvp", bv),
                       ("classifier", visual_batch)):
        peak = at(row, "train_gib", batch) if row in flat else None
        fits[f"{row} B={batch:.0f}"] = {"peak_gib": peak, **{
            f"{gb} GB": None if peak is None else peak <= gb - RESERVE_GIB for gb in CARDS_GIB}}
    return {"figures": {"avss": AVSS, "schedule": SCHEDULE, "train_videos": train_videos,
                        "train_frames": train_frames, "all_frames": all_frames,
                        "all_videos": all_videos, "steps_per_stage": steps,
                        "reserve_gib": RESERVE_GIB},
            "parts": parts, "total_s": sum(known), "complete": len(known) == len(parts),
            "fits": fits}


def main() -> None:
    ap = argparse.ArgumentParser(description="One paper-setting row as JSON (gpu_check.py).")
    ap.add_argument("row", choices=["align", "tvp", "classifier"])
    ap.add_argument("--batch", type=int, required=True)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--tiny", action="store_true")
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=3)
    args = ap.parse_args()
    try:
        result = run_row(args.row, args.batch, args.device, args.tiny, args.steps, args.warmup)
    except Exception as err:  # reported, not raised: the check goes on with the other rows
        result = {"error": f"{type(err).__name__}: {err}"[:2000]}
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
