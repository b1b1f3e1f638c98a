"""Stage align: CMC, CMPC and CMCC contrastive alignment of the visual model with frozen audio
tokens (GPU when present); CAMs and sounding maps of every frame into the `maps` store."""

from pathlib import Path
from typing import Annotated

import typer

from pcas_core.data.dataset import open_dataset
from pcas_core.models.visual import load_visual
from pcas_core.pipeline.align import (build_align_model, gradient_metrics, maps_pass,
                                      measure_gradient_shares, train_alignment, training_inputs)
from pcas_core.runtime.curves import epoch_curves
from pcas_core.runtime.distributed import on_main
from pcas_core.runtime.resume import EpochCheckpoint
from pcas_core.runtime.stage import start_stage
from pcas_core.storage.atomic import write_json
from pcas_core.storage.stores import read_rows, write_store_batches
from pcas_core.storage.weights import save_checkpoint

def align(
    visual_model: Annotated[Path, typer.Option(exists=True, help="Stage-1 checkpoint.")] = Path("models/visual.safetensors"),
    audio_store: Annotated[Path, typer.Option(exists=True, help="audio store.")] = Path("features/audio.h5"),
    model_out: Annotated[Path, typer.Option(help="Aligned visual checkpoint.")] = Path("models/visual_aligned.safetensors"),
    store_out: Annotated[Path, typer.Option(help="maps store (.h5).")] = Path("features/maps.h5"),
    curves_out: Annotated[Path, typer.Option(help="DVCLive folder of per-epoch curves.")] = Path("dvclive/align"),
    metrics_out: Annotated[Path, typer.Option(help="Each term's gradient share (.json).")] = Path("metrics/align.json"),
    params: Annotated[Path, typer.Option(exists=True, help="params.yaml")] = Path("params.yaml"),
) -> None:
    """Align the stage-1 visual model with the frozen audio tokens: L = w_cls L_cls + w_cmc L_cmc
    + w_cmpc L_cmpc + w_cmcc L_cmcc on the train split, each term switched by
    `align.cmc`/`cmpc`/`cmcc` (on the GPU when there is one); then the CAMs and sounding maps of
    every frame, and each term's gradient share on the backbone at the start and the end.

    Reads params `base`, `data`, `align`."""
    run = start_stage("align", params, "data", "align", ranks=True)
    cfg, env = run.config.align, run.env
    data = open_dataset(run.config.data)
    visual, visual_cfg = load_visual(visual_model)
    tokens = read_rows(audio_store, "audio", data.frames, ["audio_token"])["audio_token"]
    model = build_align_model(visual, tokens.shape[1], cfg)
    checkpoint = EpochCheckpoint.for_stage("align", run.params, [visual_model, audio_store],
                                           logger=run.log)
    inputs = training_inputs(model, data, tokens, cfg, env)
    start = measure_gradient_shares(model, inputs, cfg, env)
    with epoch_curves(curves_out) as on_epoch:
        train_alignment(model, inputs, cfg, env, on_epoch=on_epoch, checkpoint=checkpoint)
    on_main(write_json, metrics_out,
            gradient_metrics(start, measure_gradient_shares(model, inputs, cfg, env)))
    on_main(save_checkpoint, model_out, model.visual, visual_cfg)
    clips = data.clips(visual.mean, visual.std, num_workers=env.num_workers)
    on_main(write_store_batches, store_out, "maps", data.frames,
            maps_pass(model, clips, data.frames, tokens, batch_videos=cfg.batch_videos, env=env,
                      ranks=True), params=run.params)
    on_main(checkpoint.remove)
    run.log.info("wrote %s: maps of %d frames", store_out, len(data.frames))
