"""Stage evaluate: a segmentation head trained on the training pseudo-masks, scored on the test split
in both metric modes beside the test pseudo-masks and three sanity baselines."""

import json
from pathlib import Path
from typing import Annotated

import pandas as pd
import typer

from pcas_core.storage.atomic import atomic_path
from pcas_core.evaluation.baselines import sanity_baselines
from pcas_core.runtime.stage import start_stage
from pcas_core.method.crf import DenseCRF
from pcas_core.runtime.curves import epoch_curves
from pcas_core.data.avsbench import class_names
from pcas_core.data.dataset import open_dataset
from pcas_core.data.palette import IGNORE_INDEX
from pcas_core.runtime.distributed import is_main
from pcas_core.models.heads import SegmentationHead
from pcas_core.models.visual import load_visual
from pcas_core.runtime.resume import EpochCheckpoint
from pcas_core.evaluation.scoring import (Prediction, metrics_file, score, score_by_subset, scored_class_names,
                               scored_frames, scored_labels)
from pcas_core.pipeline.inference import test_prediction
from pcas_core.pipeline.evaluate import (patch_tokens_of, save_segmentation_head,
                                    train_segmentation_head)
from pcas_core.storage.stores import read_rows
from pcas_core.evaluation.visualize import comparison_strip, confusion_rows, pick_overlay_frames

app = typer.Typer(add_completion=False)


@app.callback(invoke_without_command=True)
def evaluate(
    visual_model: Annotated[Path, typer.Option(exists=True, help="Aligned checkpoint.")] = Path("models/visual_aligned.safetensors"),
    pseudo_store: Annotated[Path, typer.Option(exists=True, help="pseudo_masks store.")] = Path("features/pseudo_masks.h5"),
    audio_store: Annotated[Path, typer.Option(exists=True, help="audio store (listening baseline).")] = Path("features/audio.h5"),
    visual_store: Annotated[Path, typer.Option(exists=True, help="visual store (looking baseline).")] = Path("features/visual.h5"),
    maps_store: Annotated[Path, typer.Option(exists=True, help="maps store (looking baseline).")] = Path("features/maps.h5"),
    head_out: Annotated[Path, typer.Option(help="Segmentation head (.safetensors), for pcas predict.")] = Path("models/seg_head.safetensors"),
    metrics_out: Annotated[Path, typer.Option(help="Test metrics (.json).")] = Path("metrics/metrics.json"),
    per_class_out: Annotated[Path, typer.Option(help="Per-class IoU (.csv) for dvc plots.")] = Path("plots/per_class_iou.csv"),
    confusion_out: Annotated[Path, typer.Option(help="Confusion rows (.csv) for dvc plots.")] = Path("plots/confusion.csv"),
    overlays_out: Annotated[Path, typer.Option(help="Folder of frame/GT/prediction PNGs.")] = Path("plots/overlays"),
    curves_out: Annotated[Path, typer.Option(help="DVCLive folder of per-epoch curves.")] = Path("dvclive/evaluate"),
    params: Annotated[Path, typer.Option(exists=True, help="params.yaml")] = Path("params.yaml"),
) -> None:
    """Train the head (params `data`, `evaluate`), predict the test split and score it in the
    clean and official modes, beside the raw test pseudo-masks and the sanity baselines."""
    p, typed, log, device = start_stage("evaluate", params, "data", "evaluate", ranks=True)
    cfg, base, kind = typed.evaluate, typed.base, typed.data.dataset
    data = open_dataset(typed.data)
    train, test = data.split("train"), data.split("test")
    scored = scored_frames(test.frames, require_all=True)
    visual, _ = load_visual(visual_model)
    checkpoint = EpochCheckpoint.for_stage("evaluate", p, [visual_model, pseudo_store],
                                           logger=log)
    train_tokens = patch_tokens_of(visual, train.clips(visual.mean, visual.std,
                                                       num_workers=base.num_workers),
                                   features=cfg.features, batch_videos=cfg.batch_videos,
                                   device=device, amp=base.amp, ranks=True)
    head = SegmentationHead(in_dim=train_tokens.shape[-1], num_classes=data.labels.shape[1] + 1,
                            grid=visual.grid, hidden_dim=cfg.hidden_dim)
    with epoch_curves(curves_out) as on_epoch:
        train_segmentation_head(head, train_tokens,
                                read_rows(pseudo_store, "pseudo_masks", train.frames, ["mask"])["mask"],
                                epochs=cfg.epochs, batch_frames=cfg.batch_frames, lr=cfg.lr,
                                weight_decay=cfg.weight_decay, ignore_index=IGNORE_INDEX,
                                train_size=cfg.train_size,
                                background_weight=cfg.background_weight, seed=base.seed,
                                device=device, logger=log, on_epoch=on_epoch,
                                checkpoint=checkpoint)
    if not is_main():  # the rest (test prediction, scores, plots) runs in rank 0 alone
        return
    save_segmentation_head(head_out, head, features=cfg.features)
    method, images, pad = test_prediction(
        visual, head, test, features=cfg.features, num_workers=base.num_workers,
        batch_videos=cfg.batch_videos, batch_frames=cfg.batch_frames, device=device, amp=base.amp,
        crf=DenseCRF(cfg.crf_params) if cfg.crf else None)
    preds = method.masks
    baselines = sanity_baselines(images, read_rows(audio_store, "audio", scored, ["logits"])["logits"],
                                 read_rows(maps_store, "maps", scored, ["cam"])["cam"],
                                 read_rows(visual_store, "visual", scored, ["logits"])["logits"],
                                 padded_image=pad.image, padded_cam=pad.cam,
                                 padded_logits=pad.logits, cfg=cfg.baselines, crf=cfg.crf_params)
    pseudo = Prediction(read_rows(pseudo_store, "pseudo_masks", scored, ["mask"])["mask"])
    gts, official_bs = test.masks(), cfg.official_batch_videos
    scores = score_by_subset(kind, method, gts, scored, batch_videos=official_bs)
    refs = {"pseudo_masks": pseudo, **{f"baseline.{k}": v for k, v in baselines.items()}}
    result = metrics_file(kind, "test", scores, {
        name: score(kind, pred, gts, scored, batch_videos=official_bs) for name, pred in refs.items()})
    with atomic_path(metrics_out) as tmp:
        tmp.write_text(json.dumps(result, indent=2))
    names = scored_class_names(kind, class_names(data.label2idx))
    shown = scored_labels(kind, preds)  # binary kinds: foreground, as scored
    with atomic_path(per_class_out) as tmp:
        pd.DataFrame({"class": names, "iou": scores["clean"]["per_class_iou"]}).dropna().to_csv(
            tmp, index=False)
    with atomic_path(confusion_out) as tmp:
        pd.DataFrame(confusion_rows(shown, gts, names, cfg.confusion_stride),
                     columns=["actual", "predicted"]).to_csv(tmp, index=False)
    with atomic_path(overlays_out, directory=True) as tmp:
        for i in pick_overlay_frames(scored, cfg.n_overlays, cfg.overlay_uid_contains):
            name = f"{scored.uid[i]}_{scored.frame[i]}"
            comparison_strip(tmp / f"{name}.png", images[i], gts[i], shown[i], data.palette, names,
                             title=name)
    checkpoint.remove()
    log.info("test: clean miou %.4f, official miou %.4f; baselines (clean miou): %s",
             result["clean"]["miou"], result["official"]["miou"],
             {k: v["clean"]["miou"] for k, v in result["baseline"].items()})
