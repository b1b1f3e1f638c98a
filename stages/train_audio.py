"""Stage train_audio: the TVP audio encoder (a transformer over aisfx or AST patches of the fbank, with
each frame's v_t as a prompt); a_t, s_t per frame."""

from pathlib import Path
from typing import Annotated

import typer

from pcas_core.data.dataset import open_dataset
from pcas_core.evaluation.frame_scores import trained_classifier_scores
from pcas_core.pipeline.train_audio import (audio_inputs, audio_pass, build_audio_encoder,
                                            train_audio_encoder, with_trunk_cells)
from pcas_core.runtime.curves import epoch_curves
from pcas_core.runtime.distributed import is_main, on_main
from pcas_core.runtime.resume import EpochCheckpoint
from pcas_core.runtime.stage import start_stage
from pcas_core.storage.atomic import write_json
from pcas_core.storage.stores import open_store, read_rows, write_store_batches
from pcas_core.storage.weights import save_checkpoint

def train_audio(
    fbank_store: Annotated[Path, typer.Option(exists=True, help="fbank store.")] = Path("features/fbank.h5"),
    visual_store: Annotated[Path, typer.Option(exists=True, help="visual store.")] = Path("features/visual.h5"),
    model_out: Annotated[Path, typer.Option(help="Checkpoint (.safetensors).")] = Path("models/audio.safetensors"),
    store_out: Annotated[Path, typer.Option(help="audio store (.h5).")] = Path("features/audio.h5"),
    metrics_out: Annotated[Path, typer.Option(help="Frame-level audio classification (.json).")] = Path("metrics/audio.json"),
    curves_out: Annotated[Path, typer.Option(help="DVCLive folder of per-epoch curves.")] = Path("dvclive/train_audio"),
    params: Annotated[Path, typer.Option(exists=True, help="params.yaml")] = Path("params.yaml"),
) -> None:
    """Train the TVP audio encoder (`train_audio.encoder`: aisfx, the demo's, or ast) on the
    train split, prompted by the visual store's v_t; encode every frame (a_t, s_t); score
    frame-level audio classification on the test and train splits against the classes in each
    frame's mask (docs/method.md §2), per clip kind where the dataset has kinds; warn when no training frame is
    predicted any class.

    Reads params `base`, `data`, `train_audio`."""
    run = start_stage("train_audio", params, "data", "train_audio", ranks=True)
    cfg, env = run.config.train_audio, run.env
    data = open_dataset(run.config.data)
    with open_store(fbank_store, "fbank") as fbank:  # fbank rows are read batch by batch
        inputs = audio_inputs(data, fbank, visual_store, cfg)
        model, model_cfg = build_audio_encoder(inputs, cfg)
        checkpoint = EpochCheckpoint.for_stage("train_audio", run.params,
                                               [fbank_store, visual_store], logger=run.log)
        with with_trunk_cells(model, inputs, data.metadata,
                              scratch=checkpoint.scratch("trunk_cells.h5"),
                              batch_videos=cfg.batch_videos, env=env) as inputs:
            with epoch_curves(curves_out) as on_epoch:
                train_audio_encoder(model, inputs.videos(data.videos_in("train")),
                                    cfg, env, on_epoch=on_epoch, checkpoint=checkpoint)
            on_main(save_checkpoint, model_out, model, model_cfg)
            on_main(write_store_batches, store_out, "audio", data.frames,
                    audio_pass(model, inputs, data.frames, batch_videos=cfg.batch_videos,
                               env=env, ranks=True), params=run.params)
    if not is_main():
        return
    logits = read_rows(store_out, "audio", data.frames, ["logits"])["logits"]
    scores = trained_classifier_scores(logits, data, stage="train_audio",
                                       threshold=cfg.eval_threshold, logger=run.log,
                                       threshold_key="train_audio.eval_threshold")
    write_json(metrics_out, {**scores, "tvp": cfg.tvp})
    checkpoint.remove()
    run.log.info("frame-level audio classification: test %s, train %s", scores["frame_cls_test"],
                 scores["frame_cls_train"])
