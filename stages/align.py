"""Stage align: CMC, CMPC and CMCC contrastive alignment of the visual ViT with frozen audio
tokens (GPU when present); CAMs and sounding maps of every frame into the `maps` store."""

from pathlib import Path
from typing import Annotated

import typer

from pcas_core.pipeline.align import build_align_model, iter_maps, train_alignment
from pcas_core.storage.weights import save_checkpoint
from pcas_core.runtime.stage import start_stage
from pcas_core.runtime.curves import epoch_curves
from pcas_core.data.dataset import open_dataset
from pcas_core.runtime.distributed import on_main
from pcas_core.models.visual import load_visual
from pcas_core.runtime.resume import EpochCheckpoint
from pcas_core.storage.stores import read_store, store_rows, write_store_batches

app = typer.Typer(add_completion=False)


@app.callback(invoke_without_command=True)
def align(
    visual_model: Annotated[Path, typer.Option(exists=True, help="Stage-1 checkpoint.")] = Path("models/visual.safetensors"),
    audio_store: Annotated[Path, typer.Option(exists=True, help="audio store.")] = Path("features/audio.h5"),
    model_out: Annotated[Path, typer.Option(help="Aligned visual checkpoint.")] = Path("models/visual_aligned.safetensors"),
    store_out: Annotated[Path, typer.Option(help="maps store (.h5).")] = Path("features/maps.h5"),
    curves_out: Annotated[Path, typer.Option(help="DVCLive folder of per-epoch curves.")] = Path("dvclive/align"),
    params: Annotated[Path, typer.Option(exists=True, help="params.yaml")] = Path("params.yaml"),
) -> None:
    """Train L = w_cls L_cls + w_cmc L_cmc + w_cmpc L_cmpc + w_cmcc L_cmcc on the train split, each
    term switched by `align.cmc`/`cmpc`/`cmcc` (params `data`, `align`)."""
    p, typed, log, device = start_stage("align", params, "data", "align", ranks=True)
    cfg, base = typed.align, typed.base
    data = open_dataset(typed.data)
    visual, visual_cfg = load_visual(visual_model)
    keys, audio = read_store(audio_store, "audio", ["audio_token"])
    tokens = audio["audio_token"][store_rows(keys, data.frames, source=audio_store)]
    model = build_align_model(visual, tokens.shape[1], cfg)
    train = data.split("train")
    train_tokens = tokens[data.frames_in("train")]
    checkpoint = EpochCheckpoint.for_stage("align", p, [visual_model, audio_store], logger=log)
    with epoch_curves(curves_out) as on_epoch:
        train_alignment(model, train.clips(visual.mean, visual.std, augment=cfg.augment or None,
                                           num_workers=base.num_workers),
                        train.frames, train_tokens, cfg, seed=base.seed, device=device,
                        amp=base.amp, logger=log, on_epoch=on_epoch, checkpoint=checkpoint)
    on_main(save_checkpoint, model_out, model.visual, visual_cfg)
    on_main(write_store_batches, store_out, "maps", data.frames,
            iter_maps(model, data.clips(visual.mean, visual.std, num_workers=base.num_workers),
                      data.frames, tokens, batch_videos=cfg.batch_videos, device=device,
                      amp=base.amp, ranks=True), params=p)
    on_main(checkpoint.remove)
    log.info("wrote %s: maps of %d frames", store_out, len(data.frames))
