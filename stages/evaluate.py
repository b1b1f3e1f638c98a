"""Stage evaluate: a segmentation head trained on the training pseudo-masks, scored on the test split
in both metric modes beside the test pseudo-masks and three sanity baselines."""

from pathlib import Path
from typing import Annotated

import typer

from pcas_core.data.dataset import open_dataset
from pcas_core.evaluation.clip_strip import write_strips
from pcas_core.evaluation.headline import headline, headline_file, headline_log
from pcas_core.evaluation.visualize import write_overlays
from pcas_core.models.heads import save_segmentation_head
from pcas_core.models.visual import load_visual
from pcas_core.pipeline.evaluate import (build_head, evaluate_test_split, head_reads, train_head,
                                         training_rows)
from pcas_core.runtime.curves import epoch_curves
from pcas_core.runtime.distributed import is_main
from pcas_core.runtime.resume import EpochCheckpoint
from pcas_core.runtime.stage import start_stage
from pcas_core.storage.atomic import atomic_path, write_json

#: keys of pseudo_masks that evaluate reads: the baselines' (and the head's audio gate's) theta_a,
#: background score, CRF and workers, and the head's CRF kernels (dvc.yaml lists the same keys)
SHARED = ("pseudo_masks.audio_threshold", "pseudo_masks.bg_score", "pseudo_masks.use_crf",
          "pseudo_masks.score_floor", "pseudo_masks.crf", "pseudo_masks.workers", "scoring")


def evaluate(
    visual_model: Annotated[Path, typer.Option(exists=True, help="Aligned checkpoint.")] = Path("models/visual_aligned.safetensors"),
    pseudo_store: Annotated[Path, typer.Option(exists=True, help="pseudo_masks store.")] = Path("features/pseudo_masks.h5"),
    audio_store: Annotated[Path, typer.Option(exists=True, help="audio store (listening baseline; what the head hears).")] = Path("features/audio.h5"),
    visual_store: Annotated[Path, typer.Option(exists=True, help="visual store (looking baseline).")] = Path("features/visual.h5"),
    maps_store: Annotated[Path, typer.Option(exists=True, help="maps store (looking baseline).")] = Path("features/maps.h5"),
    head_out: Annotated[Path, typer.Option(help="Segmentation head (.safetensors), for pcas predict.")] = Path("models/seg_head.safetensors"),
    metrics_out: Annotated[Path, typer.Option(help="Test metrics (.json).")] = Path("metrics/metrics.json"),
    headline_out: Annotated[Path, typer.Option(help="The headline of the test metrics (.json).")] = Path("metrics/headline.json"),
    per_class_out: Annotated[Path, typer.Option(help="Per-class IoU (.csv) for dvc plots.")] = Path("plots/per_class_iou.csv"),
    confusion_out: Annotated[Path, typer.Option(help="Confusion rows (.csv) for dvc plots.")] = Path("plots/confusion.csv"),
    overlays_out: Annotated[Path, typer.Option(help="Folder of frame/GT/prediction PNGs and clip strips.")] = Path("plots/overlays"),
    curves_out: Annotated[Path, typer.Option(help="DVCLive folder of per-epoch curves.")] = Path("dvclive/evaluate"),
    params: Annotated[Path, typer.Option(exists=True, help="params.yaml")] = Path("params.yaml"),
) -> None:
    """Train the segmentation head on the training pseudo-masks, predict the test split and
    score it in the clean and official modes, beside the raw test pseudo-masks and the sanity
    baselines; overlays and per-class IoU for `dvc plots`.

    Reads params `base`, `data`, `evaluate`, `scoring`; of `pseudo_masks` (the baselines, the audio gate): audio_threshold, bg_score, use_crf, score_floor, crf, workers."""
    run = start_stage("evaluate", params, "data", "evaluate", *SHARED, ranks=True)
    cfg, env = run.config.evaluate, run.env
    data = open_dataset(run.config.data)
    visual, _ = load_visual(visual_model)
    checkpoint = EpochCheckpoint.for_stage("evaluate", run.params,
                                           [visual_model, pseudo_store, audio_store],
                                           logger=run.log)
    rows = training_rows(visual, data, cfg, run.config.pseudo_masks, env,
                         pseudo_store=pseudo_store, audio_store=audio_store, checkpoint=checkpoint)
    head = build_head(rows, data, visual, cfg)
    with epoch_curves(curves_out) as on_epoch:
        train_head(head, rows, cfg, env, on_epoch=on_epoch, checkpoint=checkpoint)
    rows.close()
    if not is_main():  # the rest (test prediction, scores, plots) runs in rank 0 alone
        return
    save_segmentation_head(head_out, head, head_reads(cfg, run.config.pseudo_masks))
    result = evaluate_test_split(visual, head, data, cfg, run.config.pseudo_masks,
                                 run.config.scoring, env, pseudo_store=pseudo_store,
                                 audio_store=audio_store, visual_store=visual_store,
                                 maps_store=maps_store)
    write_json(metrics_out, result.metrics)
    head = headline(result.metrics)
    write_json(headline_out, headline_file(head))
    with atomic_path(per_class_out) as tmp:
        result.per_class.to_csv(tmp, index=False)
    with atomic_path(confusion_out) as tmp:
        result.confusion.to_csv(tmp, index=False)
    with atomic_path(overlays_out, directory=True) as tmp:
        write_overlays(tmp, result.overlays, result.palette, result.class_names)
        write_strips(tmp, result.strips, result.palette, result.class_names, data.class_names,
                     theta=run.config.pseudo_masks.audio_threshold)
    checkpoint.remove()
    run.log.info("%s", headline_log(head))
