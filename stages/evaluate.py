"""Stage evaluate: a segmentation head trained on the training pseudo-masks, scored on the test split."""

import json
from pathlib import Path
from typing import Annotated

import numpy as np
import pandas as pd
import typer

from pcas_core.atomic import atomic_path
from pcas_core.config import start_stage
from pcas_core.crf import DenseCRF
from pcas_core.data.avsbench import class_names
from pcas_core.data.dataset import open_dataset
from pcas_core.data.palette import IGNORE_INDEX, NUM_CLASSES
from pcas_core.models.heads import SegmentationHead
from pcas_core.models.visual import load_visual
from pcas_core.scoring import (COMPARISON, HEADLINE, METRIC_MODE, background_baseline, pick,
                               score_masks)
from pcas_core.segmentation import patch_tokens_of, predict_masks, train_segmentation_head
from pcas_core.stores import read_store, store_rows
from pcas_core.visualize import comparison_strip

app = typer.Typer(add_completion=False)


@app.callback(invoke_without_command=True)
def evaluate(
    visual_model: Annotated[Path, typer.Option(exists=True, help="Aligned checkpoint.")] = Path("models/visual_aligned.safetensors"),
    pseudo_store: Annotated[Path, typer.Option(exists=True, help="pseudo_masks store.")] = Path("features/pseudo_masks.h5"),
    metrics_out: Annotated[Path, typer.Option(help="Test metrics (.json).")] = Path("metrics/metrics.json"),
    per_class_out: Annotated[Path, typer.Option(help="Per-class IoU (.csv) for dvc plots.")] = Path("plots/per_class_iou.csv"),
    overlays_out: Annotated[Path, typer.Option(help="Folder of prediction/GT overlays.")] = Path("plots/overlays"),
    params: Annotated[Path, typer.Option(exists=True, help="params.yaml")] = Path("params.yaml"),
) -> None:
    """Train the head (params `data`, `evaluate`), predict the test split, score it (AVSS and
    foreground-binary), beside predicting background everywhere and the raw test pseudo-masks."""
    p, log, device = start_stage("evaluate", params, "data", "evaluate")
    cfg, amp, seed = p["evaluate"], bool(p["base"]["amp"]), int(p["base"]["seed"])
    workers = int(p["base"]["num_workers"])
    data = open_dataset(p["data"])
    visual, _ = load_visual(visual_model)
    keys, pseudo = read_store(pseudo_store, "pseudo_masks")
    train, test = data.split("train"), data.split("test")
    bs = int(cfg["batch_videos"])
    feats = cfg["features"]
    train_tokens = patch_tokens_of(visual, train.clips(visual.mean, visual.std,
                                                       num_workers=workers), features=feats,
                                   batch_videos=bs, device=device, amp=amp)
    head = SegmentationHead(in_dim=train_tokens.shape[-1], num_classes=NUM_CLASSES,
                            grid=visual.grid, hidden_dim=int(cfg["hidden_dim"]))
    train_segmentation_head(head, train_tokens,
                            pseudo["mask"][store_rows(keys, train.frames, source=pseudo_store)],
                            epochs=int(cfg["epochs"]), batch_frames=int(cfg["batch_frames"]),
                            lr=float(cfg["lr"]), weight_decay=float(cfg["weight_decay"]),
                            ignore_index=IGNORE_INDEX, train_size=int(cfg["train_size"]),
                            background_weight=float(cfg["background_weight"]),
                            seed=seed, device=device, logger=log)
    images = test.frame_images()  # decoded when the CRF or an overlay needs a frame
    preds, foreground = predict_masks(head, patch_tokens_of(visual, test.clips(visual.mean, visual.std,
                                                                               num_workers=workers),
                                                features=feats, batch_videos=bs, device=device,
                                                amp=amp),
                          (data.img_size, data.img_size), batch_frames=int(cfg["batch_frames"]),
                          device=device, images=images,
                          crf=DenseCRF(**cfg["crf_params"]) if cfg["crf"] else None)
    has = test.has_mask()
    gts = test.masks()
    scores = score_masks(preds[has], gts, foreground[has])
    test_pseudo = pseudo["mask"][store_rows(keys, test.frames, source=pseudo_store)][has]
    result = {"metric_mode": METRIC_MODE, "split": "test", **pick(scores, HEADLINE),
              "baseline_background": pick(background_baseline(gts), COMPARISON),
              "pseudo_masks": pick(score_masks(test_pseudo, gts), COMPARISON)}
    with atomic_path(metrics_out) as tmp:
        tmp.write_text(json.dumps(result, indent=2))
    table = pd.DataFrame({"class": class_names(data.label2idx), "iou": scores["per_class_iou"]})
    with atomic_path(per_class_out) as tmp:
        table.dropna().to_csv(tmp, index=False)
    with atomic_path(overlays_out, directory=True) as tmp:
        ann, ann_images = test.frames[has].reset_index(drop=True), images[has]
        for i in np.linspace(0, len(ann) - 1, min(int(cfg["n_overlays"]), len(ann))).astype(int):
            name = f"{ann.uid[i]}_{ann.frame[i]}.png"
            comparison_strip(tmp / name, ann_images[i], preds[has][i], gts[i], data.palette)
    log.info("test: miou %.4f fscore %.4f (background everywhere: miou %.4f)", scores["miou"],
             scores["fscore"], result["baseline_background"]["miou"])
