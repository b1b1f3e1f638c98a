"""Stage train_visual: the frame classifier (timm backbone) on video-level labels; v_t, c_t of every frame."""

import json
from pathlib import Path
from typing import Annotated

import typer

from pcas_core.storage.atomic import atomic_path
from pcas_core.storage.weights import save_checkpoint
from pcas_core.runtime.stage import start_stage
from pcas_core.runtime.curves import epoch_curves
from pcas_core.data.dataset import open_dataset
from pcas_core.runtime.distributed import is_main, on_main
from pcas_core.pipeline.train_visual import iter_encoded, train_visual_classifier
from pcas_core.evaluation.metrics import frame_classification_from_logits
from pcas_core.models.visual import build_visual, visual_model_config
from pcas_core.runtime.resume import EpochCheckpoint
from pcas_core.storage.stores import read_rows, write_store_batches

app = typer.Typer(add_completion=False)


@app.callback(invoke_without_command=True)
def train_visual(
    model_out: Annotated[Path, typer.Option(help="Checkpoint (.safetensors).")] = Path("models/visual.safetensors"),
    store_out: Annotated[Path, typer.Option(help="visual store (.h5).")] = Path("features/visual.h5"),
    metrics_out: Annotated[Path, typer.Option(help="Video classification metrics (.json).")] = Path("metrics/visual.json"),
    curves_out: Annotated[Path, typer.Option(help="DVCLive folder of per-epoch curves.")] = Path("dvclive/train_visual"),
    params: Annotated[Path, typer.Option(exists=True, help="params.yaml")] = Path("params.yaml"),
) -> None:
    """Train on the train split (params `data`, `train_visual`), then encode every frame."""
    p, typed, log, device = start_stage("train_visual", params, "data", "train_visual", ranks=True)
    cfg, base = typed.train_visual, typed.base
    data = open_dataset(typed.data)
    model_cfg = visual_model_config(cfg, num_classes=data.labels.shape[1], img_size=data.img_size)
    model = build_visual(model_cfg)
    train = data.split("train").clips(model.mean, model.std, augment=cfg.augment or None,
                                      max_frames=cfg.max_frames, num_workers=base.num_workers)
    checkpoint = EpochCheckpoint.for_stage("train_visual", p, logger=log)
    with epoch_curves(curves_out) as on_epoch:
        train_visual_classifier(model, train, epochs=cfg.epochs, batch_videos=cfg.batch_videos,
                                lr=cfg.lr, warmup_epochs=cfg.warmup_epochs,
                                weight_decay=cfg.weight_decay, frame_pool=cfg.frame_pool,
                                w_class_token=cfg.w_class_token, seed=base.seed, device=device,
                                amp=base.amp, logger=log, on_epoch=on_epoch,
                                checkpoint=checkpoint)
    on_main(save_checkpoint, model_out, model, model_cfg)
    on_main(write_store_batches, store_out, "visual", data.frames,
            iter_encoded(model, data.clips(model.mean, model.std, num_workers=base.num_workers),
                         batch_videos=cfg.batch_videos, device=device, amp=base.amp, ranks=True),
            params=p)
    if not is_main():
        return
    test = data.split("test")
    logits = read_rows(store_out, "visual", test.frames, ["logits"])["logits"]
    scores = frame_classification_from_logits(logits, test.frame_classes())
    with atomic_path(metrics_out) as tmp:
        tmp.write_text(json.dumps({"frame_cls_test": scores}, indent=2))
    checkpoint.remove()
    log.info("test frame classification: %s", scores)
