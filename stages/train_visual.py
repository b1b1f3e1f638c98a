"""Stage train_visual: the frame classifier (timm backbone) on video-level labels; v_t, c_t of every frame."""

from pathlib import Path
from typing import Annotated

import typer

from pcas_core.data.dataset import open_dataset
from pcas_core.evaluation.frame_scores import VISUAL_THRESHOLD, trained_classifier_scores
from pcas_core.pipeline.train_visual import (build_classifier, train_classifier, training_clips,
                                             visual_pass)
from pcas_core.runtime.curves import epoch_curves
from pcas_core.runtime.distributed import is_main, on_main
from pcas_core.runtime.resume import EpochCheckpoint
from pcas_core.runtime.stage import start_stage
from pcas_core.storage.atomic import write_json
from pcas_core.storage.stores import read_rows, write_store_batches
from pcas_core.storage.weights import save_checkpoint

def train_visual(
    model_out: Annotated[Path, typer.Option(help="Checkpoint (.safetensors).")] = Path("models/visual.safetensors"),
    store_out: Annotated[Path, typer.Option(help="visual store (.h5).")] = Path("features/visual.h5"),
    metrics_out: Annotated[Path, typer.Option(help="Frame classification metrics (.json).")] = Path("metrics/visual.json"),
    curves_out: Annotated[Path, typer.Option(help="DVCLive folder of per-epoch curves.")] = Path("dvclive/train_visual"),
    params: Annotated[Path, typer.Option(exists=True, help="params.yaml")] = Path("params.yaml"),
) -> None:
    """Train the visual classifier (`train_visual.backbone`: EfficientNet-Lite0 on the demo, a
    ViT in the paper) on the train split's video labels, then encode every frame (v_t, c_t,
    logits) and score frame-level classification.

    Reads params `base`, `data`, `train_visual`."""
    run = start_stage("train_visual", params, "data", "train_visual", ranks=True)
    cfg, env = run.config.train_visual, run.env
    data = open_dataset(run.config.data)
    model, model_cfg = build_classifier(data, cfg)
    checkpoint = EpochCheckpoint.for_stage("train_visual", run.params, logger=run.log)
    with epoch_curves(curves_out) as on_epoch:
        train_classifier(model, training_clips(model, data, cfg, env), cfg, env,
                         on_epoch=on_epoch, checkpoint=checkpoint)
    on_main(save_checkpoint, model_out, model, model_cfg)
    clips = data.clips(model.mean, model.std, num_workers=env.num_workers)
    on_main(write_store_batches, store_out, "visual", data.frames,
            visual_pass(model, clips, batch_videos=cfg.batch_videos, env=env, ranks=True),
            params=run.params)
    if not is_main():
        return
    logits = read_rows(store_out, "visual", data.frames, ["logits"])["logits"]
    scores = trained_classifier_scores(logits, data, stage="train_visual",
                                       threshold=VISUAL_THRESHOLD, logger=run.log)
    write_json(metrics_out, scores)
    checkpoint.remove()
    run.log.info("frame classification: test %s, train %s", scores["frame_cls_test"],
                 scores["frame_cls_train"])
