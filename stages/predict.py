"""`pcas predict`: the trained models on your own video, or scored on another dataset folder.

Not a DVC stage: a command of `stages/cli.py` like the stages. It reads the models of the last
`dvc repro` (params `predict.models`, each overridable here) and writes only under --out.
"""

import contextlib
from dataclasses import replace
from pathlib import Path
from typing import Annotated, Optional

import typer

from pcas_core.data.avsbench import class_names, read_label2idx
from pcas_core.data.dataset import open_dataset
from pcas_core.data.palette import voc_palette
from pcas_core.data.video import open_video
from pcas_core.method.crf import CRFPool
from pcas_core.pipeline.predict import load_models, predict_video
from pcas_core.pipeline.predict_dataset import score_dataset
from pcas_core.runtime.stage import start_stage
from pcas_core.storage.atomic import write_json


def predict(
    video: Annotated[Optional[Path], typer.Argument(help="Video with sound (mp4, mov, mkv, webm, ...).")] = None,
    out: Annotated[Path, typer.Option(help="Output folder.")] = Path("predictions"),
    root: Annotated[Optional[Path], typer.Option(help="Instead of a video: a dataset folder (AVSBench-semantic layout) whose test split is scored.")] = None,
    fps: Annotated[Optional[int], typer.Option(help="Frames sampled per second (default: predict.fps).")] = None,
    visual_model: Annotated[Optional[Path], typer.Option(help="Stage-1 visual checkpoint (default: predict.models.visual).")] = None,
    audio_model: Annotated[Optional[Path], typer.Option(help="TVP audio checkpoint (default: predict.models.audio).")] = None,
    aligned_model: Annotated[Optional[Path], typer.Option(help="Aligned visual checkpoint (default: predict.models.aligned).")] = None,
    head_model: Annotated[Optional[Path], typer.Option(help="Segmentation head (default: predict.models.head).")] = None,
    params: Annotated[Path, typer.Option(exists=True, help="params.yaml")] = Path("params.yaml"),
) -> None:
    """Masks, overlay video and predictions.json of VIDEO; or, with --root, the test-split
    metrics of another dataset (as `evaluate` writes them) in OUT/metrics.json.

    Reads params `base`, `data`, `fbank`, `predict`, `scoring`, `pseudo_masks.audio_threshold`,
    `evaluate.crf`, `pseudo_masks.crf` (the dense CRF on the head's scores, as in evaluate) and
    `pseudo_masks.workers` (its processes)."""
    if (video is None) == (root is None):
        raise typer.BadParameter("give either a VIDEO or --root DATASET, not both or neither")
    run = start_stage("predict", params, "data", "fbank", "predict",
                      "pseudo_masks.audio_threshold", "pseudo_masks.crf", "pseudo_masks.workers",
                      "evaluate.crf", "scoring")
    typed, log, env = run.config, run.log, run.env
    cfg = typed.predict
    source = open_video(video) if video is not None else None  # checked before any model loads
    given = {"visual": visual_model, "audio": audio_model, "aligned": aligned_model,
             "head": head_model}
    paths = {k: given[k] or getattr(cfg.models, k) for k in given}
    models = load_models(**{k: Path(v) for k, v in paths.items()})
    with (CRFPool(typed.pseudo_masks.crf, typed.pseudo_masks.workers) if typed.evaluate.crf
          else contextlib.nullcontext()) as crf:  # the head's CRF, in workers
        if root is not None:
            data = open_dataset(replace(typed.data, root=str(root), img_size=models.img_size),
                                needed_splits=("test",))
            result = score_dataset(models, data, cfg, fbank=typed.fbank,
                                   official_batch_videos=typed.scoring.official_batch_videos,
                                   env=env, crf=crf)
            write_json(out / "metrics.json", result)
            log.info("%s test split: clean miou %.4f, official miou %.4f (background everywhere: "
                     "clean miou %.4f) -> %s", root, result["clean"]["miou"],
                     result["official"]["miou"], result["baseline"]["background"]["clean"]["miou"],
                     out / "metrics.json")
            return
        summary = predict_video(models, source, out, cfg, fbank=typed.fbank, fps=fps,
                                audio_threshold=typed.pseudo_masks.audio_threshold,
                                class_names=class_names(read_label2idx(Path(typed.data.root))),
                                palette=voc_palette(), env=env, crf=crf)
        log.info("%s: %d frames of %.2f s video in %.2f s wall time, %.3f s per second of "
                 "video -> %s", video, summary["n_frames"], summary["duration_s"], summary["wall_s"],
                 summary["wall_s_per_video_s"], out)
        typer.echo(f"wall time per second of video: {summary['wall_s_per_video_s']:.3f} s "
                   f"({summary['n_frames']} frames, {summary['duration_s']:.2f} s of video, "
                   f"{summary['wall_s']:.2f} s)")
