"""What each stage would need on AVSBench-semantic in the paper's setting, on one machine: a
projection from ``benchmarks/scale.py``'s measurements (imported by it; ``--project`` there).

The dataset (AVSS, ``data.dataset: avss``, all three subsets): the ``v1s`` subset is the
single-source set S4 (3,452 / 740 / 740 train / val / test videos), ``v1m`` the multi-source set
MS3 (296 / 64 / 64), both 5-second clips of 5 frames; ``v2`` holds the rest of the about 12,000
videos, 10-second clips of 10 frames. The released split of ``v2`` is not recorded here, so it is
taken in S4's proportions (70 / 15 / 15 %); ``--v2`` changes it. That makes 65,240 training and
about 14,000 test frames of some 93,000.

The paper's setting (``params-paper.yaml``, docs/experiments.md §4): ViT-B/16 at 224 px (196
patch tokens of 768 channels), the TVP encoder as AST-Base (768 channels, 12 blocks, 12 x 101
patches of a 1024 x 128 fbank), the dense CRF on 224 px pseudo-masks, the segmentation head on
patch tokens (768 channels a token).

How each figure is made (all per stage, printed with the table):

- **peak RSS** = the stage's measured memory at the benchmark's largest N, plus its measured
  growth per frame (the slope between the two N; about zero once memory is flat) times the
  frames it passes over at AVSS scale, plus what the paper's models add: weights (4 bytes a
  parameter; training: weights, gradients and Adam's two moments, 16 bytes) and the activations
  of one training batch of the params' batch size (``--probe``: measured here on one small
  batch and scaled), plus the per-frame buffers of a chunk at the paper's sizes;
- **disk**: the stores it writes at AVSS scale, uncompressed (row bytes x rows; gzip shrinks the
  pseudo-masks much); for ``evaluate`` its scratch rows while the head trains (float16 tokens);
- **time** = the measured per-frame slope (data: decoding, stores, the tiny models) times the
  frames at AVSS scale and the params' epochs, plus the paper's models' compute: frames x epochs
  x the measured cost per frame of a forward (+ backward when training) of ViT-B/16 and AST-B,
  the CRF, the head (``--probe``: measured here, on this machine's device; on another machine,
  the compute part scales with its speed).

Every figure is an estimate for planning (which stage needs what), not a promise: the epochs are
the params' (the demo's unless changed), and the probe runs on whatever this machine is.
"""

from __future__ import annotations

import multiprocessing
import resource
import time
from dataclasses import dataclass

import numpy as np

MB = 2 ** 20

#: AVSS videos per subset: (train, val, test), frames per video
SUBSETS = {"v1s": ((3452, 740, 740), 5), "v1m": ((296, 64, 64), 5)}
V2_VIDEOS = 12000 - sum(sum(n) for n, _ in SUBSETS.values())  # the rest of about 12,000
V2_SPLIT = (0.70, 0.15, 0.15)  # S4's proportions (3452 / 4932 = 0.70)

IMG, TOKENS, WIDTH, CLASSES = 224, 196, 768, 70  # ViT-B/16 at 224 px; AVSS foreground classes
FBANK = (1024, 128)  # AST fbank frames x mel bins


@dataclass(frozen=True)
class Counts:
    """AVSS at full scale: videos and frames per split."""

    videos: dict[str, int]
    frames: dict[str, int]

    @property
    def all_frames(self) -> int:
        return sum(self.frames.values())

    @property
    def all_videos(self) -> int:
        return sum(self.videos.values())


def avss_counts(v2: tuple[int, int, int] | None = None) -> Counts:
    """Videos and frames per split of AVSS (``v2``: its train / val / test videos, default the
    rest of 12,000 in S4's proportions)."""
    if v2 is None:
        train, val = (round(V2_VIDEOS * f) for f in V2_SPLIT[:2])
        v2 = (train, val, V2_VIDEOS - train - val)
    subsets = {**SUBSETS, "v2": (tuple(v2), 10)}
    videos = {s: sum(n[i] for n, _ in subsets.values()) for i, s in enumerate(("train", "val",
                                                                                 "test"))}
    frames = {s: sum(n[i] * f for n, f in subsets.values()) for i, s in enumerate(("train", "val",
                                                                                    "test"))}
    return Counts(videos, frames)


# ------------------------------------------------------------------ the probe (paper models)
def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _probe_child(what: str, batch: int, steps: int, out) -> None:
    """In a fresh process: ms per item and activation MB per item of one primitive."""
    import pcas_core  # noqa: F401  (before timm)
    import torch

    torch.manual_seed(0)
    if what in ("vit_train", "vit_fwd"):
        from pcas_core.models.visual import build_visual
        model = build_visual({"backbone": "vit_base_patch16_224", "num_classes": CLASSES,
                              "img_size": IMG, "pretrained": False, "token_layer": -1})
        x = torch.randn(batch, 3, IMG, IMG)
        train = what == "vit_train"

        def step():
            if train:
                out = model.train()(x)
                (out.logits.sum() + out.patch_tokens.mean()).backward()
            else:
                with torch.no_grad():
                    model.eval().forward_features(x)
    elif what in ("ast_train", "ast_fwd"):
        from pcas_core.models.tvp import TVPAudioEncoder
        model = TVPAudioEncoder(num_classes=CLASSES, n_mels=FBANK[1], target_length=FBANK[0],
                                patch_size=16, fstride=10, tstride=10, embed_dim=WIDTH, depth=12,
                                num_heads=12, prompt_dim=WIDTH, max_steps=10, frames_per_step=100)
        fb, prompts = torch.randn(batch, *FBANK), torch.randn(batch, 10, WIDTH)
        steps_t = torch.full((batch,), 10, dtype=torch.int64)
        train = what == "ast_train"

        def step():
            if train:
                model.train()(fb, prompts, steps_t).video_logits.sum().backward()
            else:
                with torch.no_grad():
                    model.eval()(fb, prompts, steps_t)
    elif what == "head_train":
        from pcas_core.models.heads import SegmentationHead
        model = SegmentationHead(in_dim=WIDTH, num_classes=CLASSES + 1, grid=(14, 14),
                                 hidden_dim=64)
        x = torch.randn(batch, TOKENS, WIDTH)

        def step():
            model.train()(x, (56, 56), torch.zeros(batch, 0)).logsumexp(1).mean().backward()
    elif what == "crf":
        from pcas_core.method.crf import DenseCRF
        crf = DenseCRF()
        rng = np.random.default_rng(0)
        image = rng.integers(0, 256, (IMG, IMG, 3), dtype=np.uint8)
        probs = rng.dirichlet(np.ones(3), (IMG, IMG)).transpose(2, 0, 1).astype(np.float32)

        def step():
            for _ in range(batch):
                crf(image, probs)
    else:
        raise ValueError(what)
    before = _peak_mb()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    ms = 1000 * (time.perf_counter() - start) / (steps * batch)
    grads = 0.0  # counted with the weights (16 bytes a parameter), not as activations
    if what.endswith("_train") and what != "head_train":
        grads = sum(p.numel() for p in model.parameters()) * 4 / MB
    out.put((ms, max(_peak_mb() - before - grads, 0.0) / batch))


PROBES = {  # primitive: (items per call, what an item is)
    "vit_train": (2, "frame"), "vit_fwd": (4, "frame"), "ast_train": (1, "10-s clip"),
    "ast_fwd": (1, "10-s clip"), "head_train": (32, "frame"), "crf": (2, "frame (3 labels)"),
}


def probe(steps: int = 1) -> dict[str, tuple[float, float]]:
    """ms and activation MB per item of each primitive of :data:`PROBES` (``steps`` calls, the
    first included: on a GPU pass ``steps`` > 1), each in a fresh process (``ru_maxrss`` is a
    process's lifetime peak)."""
    ctx = multiprocessing.get_context("spawn")
    out = {}
    for what, (batch, _) in PROBES.items():
        queue = ctx.Queue()
        proc = ctx.Process(target=_probe_child, args=(what, batch, steps, queue))
        proc.start()
        out[what] = queue.get()
        proc.join()
        print(f"  probe {what:10s} {out[what][0]:9.1f} ms, {out[what][1]:7.1f} MB of "
              f"activations per {PROBES[what][1]}", flush=True)
    return out


# ------------------------------------------------------------------ the projection
VIT_PARAMS, AST_PARAMS = 86.6e6, 87.0e6  # ViT-B/16 (timm), AST-Base with its 12 x 101 patches


def _fit(results: dict[int, dict[str, tuple]], name: str, frames_per_video: int):
    """(s per frame, MB per frame) slopes between the two N, and the largest N's figures."""
    (n1, r1), (n2, r2) = sorted((n, r[name]) for n, r in results.items())
    df = (n2 - n1) * frames_per_video
    return ((r2[0] - r1[0]) / df, (r2[1] - r1[1]) / df, (r2[2] - r1[2]) / df, n2, r2)


def project(results: dict[int, dict[str, tuple]], params: dict, frames_per_video: int,
            costs: dict[str, tuple[float, float]] | None, counts: Counts) -> list[dict]:
    """Per stage: peak RSS (GB), disk written (GB) and wall time (h) on AVSS in the paper's
    setting, with the parts they are made of (see the module docstring).

    Args:
        results: ``{N: {stage: (wall s, tree MB, main MB)}}`` of two runs.
        params: the benchmark's params.yaml (epochs, batch sizes, chunk sizes).
        frames_per_video: of the benchmark's dataset.
        costs: :func:`probe` output; None leaves the models' compute and activations out.
    """
    tr, fa, te = counts.frames["train"], counts.all_frames, counts.frames["test"]
    vt, va = counts.videos["train"], counts.all_videos
    ep = {s: int(params[s]["epochs"]) for s in ("train_visual", "train_audio", "align",
                                                "evaluate")}
    c = costs or {k: (0.0, 0.0) for k in PROBES}
    bv = {s: int(params[s]["batch_videos"]) for s in ("train_visual", "train_audio", "align")}
    train_frames_per_video = tr / vt
    crops = params["align"]["n_crops"] * (96 / IMG) ** 2  # the paper's 96 px crops, in frames
    max_frames = int(params["train_visual"]["max_frames"]) or train_frames_per_video
    fp16, fp32 = 2, 4
    stages = {  # frames passed over (data slope), model compute (ms), model MB, disk bytes
        "fbank": (fa, 0.0, 0.0, va * FBANK[0] * FBANK[1] * fp32),
        "train_visual": (
            fa * ep["train_visual"],
            ep["train_visual"] * vt * max_frames * c["vit_train"][0] + fa * c["vit_fwd"][0],
            VIT_PARAMS * 16 / MB + bv["train_visual"] * max_frames * c["vit_train"][1],
            fa * (2 * WIDTH + CLASSES) * fp32),
        "train_audio": (
            fa * ep["train_audio"],
            ep["train_audio"] * vt * c["ast_train"][0] + va * c["ast_fwd"][0],
            AST_PARAMS * 16 / MB + bv["train_audio"] * c["ast_train"][1],
            fa * (WIDTH + CLASSES) * fp32),
        "align": (
            fa * ep["align"],
            ep["align"] * tr * (1 + crops) * c["vit_train"][0] + fa * c["vit_fwd"][0],
            VIT_PARAMS * 16 / MB
            + bv["align"] * train_frames_per_video * (1 + crops) * c["vit_train"][1],
            fa * (CLASSES * TOKENS * fp16 + TOKENS * fp32)),
        "pseudo_masks": (
            fa, fa * c["crf"][0] / max(int(params["pseudo_masks"]["workers"]), 1),
            256 * (IMG * IMG * 3 + CLASSES * TOKENS * fp32 + IMG * IMG) / MB,  # one chunk
            fa * IMG * IMG),  # uncompressed (gzip shrinks masks a lot)
        "evaluate": (
            tr * ep["evaluate"] + te,
            (tr + te) * c["vit_fwd"][0] + tr * ep["evaluate"] * c["head_train"][0]
            + te * c["crf"][0] / max(int(params["pseudo_masks"]["workers"]), 1),
            VIT_PARAMS * fp32 / MB + int(params["evaluate"]["batch_frames"]) * 3
            * (c["head_train"][1] + TOKENS * WIDTH * fp16 / MB),  # a batch, 2 read ahead
            tr * (TOKENS * WIDTH * fp16 + 56 * 56 + CLASSES)),
    }
    rows = []
    for name, (frames, compute_ms, model_mb, disk) in stages.items():
        s_per_f, tree_per_f, main_per_f, n, (wall, tree, main) = _fit(results, name,
                                                                      frames_per_video)
        growth = max(tree_per_f, main_per_f, 0.0) * fa
        data_h = max(s_per_f, 0.0) * frames / 3600
        rows.append({"stage": name, "rss_gb": (max(tree, main) + growth + model_mb) / 1024,
                     "measured_gb": max(tree, main) / 1024, "growth_gb": growth / 1024,
                     "model_gb": model_mb / 1024, "disk_gb": disk / 2 ** 30,
                     "data_h": data_h, "compute_h": compute_ms / 3.6e6,
                     "hours": data_h + compute_ms / 3.6e6})
    return rows


def print_projection(rows: list[dict], counts: Counts, probed: bool, device: str) -> None:
    """The projection table and what it says."""
    print(f"\nProjection: AVSBench-semantic, paper setting (ViT-B/16 224 px: {TOKENS} tokens x "
          f"{WIDTH}; AST-Base), one machine")
    print(f"  videos {counts.videos} ({counts.all_videos} in all); frames {counts.frames} "
          f"({counts.all_frames} in all)")
    print("  model compute measured on " + (device if probed else "nothing (--no-probe): data "
                                              "part only"))
    print(f"\n{'stage':14s} | {'peak RSS GB':>11s} = {'measured':>8s} + {'growth':>6s} + "
          f"{'models':>6s} | {'disk GB':>7s} | {'hours':>7s} = {'data':>6s} + {'compute':>8s}")
    for r in rows:
        print(f"{r['stage']:14s} | {r['rss_gb']:11.1f}   {r['measured_gb']:8.2f}   "
              f"{r['growth_gb']:6.2f}   {r['model_gb']:6.2f} | {r['disk_gb']:7.1f} | "
              f"{r['hours']:7.1f}   {r['data_h']:6.1f}   {r['compute_h']:8.1f}")
    top = max(rows, key=lambda r: r["rss_gb"])
    print(f"\n  most memory: {top['stage']} ({top['rss_gb']:.1f} GB); disk in all "
          f"{sum(r['disk_gb'] for r in rows):.0f} GB (of it evaluate's scratch rows, deleted at "
          f"its end: {rows[-1]['disk_gb']:.0f} GB); time in all "
          f"{sum(r['hours'] for r in rows):.0f} h")
