"""Stage evaluate: a segmentation head trained on the training pseudo-masks, scored on the test split."""

import json
from pathlib import Path
from typing import Annotated

import numpy as np
import pandas as pd
import typer

from pcas_core.atomic import atomic_path
from pcas_core.checkpoint import load_checkpoint
from pcas_core.config import start_stage
from pcas_core.crf import DenseCRF
from pcas_core.data.avsbench import class_names
from pcas_core.data.dataset import open_dataset
from pcas_core.data.palette import IGNORE_INDEX, NUM_CLASSES
from pcas_core.models.heads import SegmentationHead
from pcas_core.models.visual import build_visual
from pcas_core.scoring import METRIC_MODE, background_baseline, score_masks
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
    data = open_dataset(p["data"])
    state, visual_cfg = load_checkpoint(visual_model)
    visual = build_visual(visual_cfg)
    visual.load_state_dict(state)
    keys, pseudo = read_store(pseudo_store, "pseudo_masks")
    train, test = data.split("train"), data.split("test")
    bs = int(cfg["batch_videos"])
    head = SegmentationHead(in_dim=visual.embed_dim, num_classes=NUM_CLASSES, grid=visual.grid,
                            hidden_dim=int(cfg["hidden_dim"]))
    train_segmentation_head(head, patch_tokens_of(visual, train.clips(visual.mean, visual.std),
                                                  batch_videos=bs, device=device, amp=amp),
                            pseudo["mask"][store_rows(keys, train.frames, source=pseudo_store)],
                            epochs=int(cfg["epochs"]), batch_frames=int(cfg["batch_frames"]),
                            lr=float(cfg["lr"]), weight_decay=float(cfg["weight_decay"]),
                            ignore_index=IGNORE_INDEX, train_size=int(cfg["train_size"]),
                            seed=seed, device=device, logger=log)
    images = test.images()
    preds, foreground = predict_masks(head, patch_tokens_of(visual, test.clips(visual.mean, visual.std),
                                                batch_videos=bs, device=device, amp=amp),
                          (data.img_size, data.img_size), batch_frames=int(cfg["batch_frames"]),
                          device=device, images=images,
                          crf=DenseCRF(**cfg["crf_params"]) if cfg["crf"] else None)
    has = test.has_mask()
    gts = test.masks()
    scores = score_masks(preds[has], gts, foreground[has])
    test_pseudo = pseudo["mask"][store_rows(keys, test.frames, source=pseudo_store)][has]
    result = {k: v for k, v in scores.items() if k != "per_class_iou"}
    result["baseline_background"] = {k: v for k, v in background_baseline(gts).items()
                                     if k != "per_class_iou"}
    result["pseudo_masks_test"] = {k: v for k, v in score_masks(test_pseudo, gts).items()
                                   if k != "per_class_iou"}
    with atomic_path(metrics_out) as tmp:
        tmp.write_text(json.dumps({"metric_mode": METRIC_MODE, "split": "test", **result}, indent=2))
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
