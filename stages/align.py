"""Stage align: CMC contrastive alignment of the visual ViT with frozen audio tokens (GPU when
present); CAMs and sounding maps of every frame into the `maps` store."""

from pathlib import Path
from typing import Annotated

import typer

from pcas_core.alignment import iter_maps, train_alignment
from pcas_core.checkpoint import save_checkpoint
from pcas_core.config import start_stage
from pcas_core.data.dataset import open_dataset
from pcas_core.models.align import AlignModel
from pcas_core.models.visual import load_visual
from pcas_core.stores import read_store, store_rows, write_store_batches

app = typer.Typer(add_completion=False)


@app.callback(invoke_without_command=True)
def align(
    visual_model: Annotated[Path, typer.Option(exists=True, help="Stage-1 checkpoint.")] = Path("models/visual.safetensors"),
    audio_store: Annotated[Path, typer.Option(exists=True, help="audio store.")] = Path("features/audio.h5"),
    model_out: Annotated[Path, typer.Option(help="Aligned visual checkpoint.")] = Path("models/visual_aligned.safetensors"),
    store_out: Annotated[Path, typer.Option(help="maps store (.h5).")] = Path("features/maps.h5"),
    params: Annotated[Path, typer.Option(exists=True, help="params.yaml")] = Path("params.yaml"),
) -> None:
    """Train L = w_cls L_cls + w_cmc L_cmc on the train split (params `data`, `align`)."""
    p, log, device = start_stage("align", params, "data", "align")
    cfg, amp, seed = p["align"], bool(p["base"]["amp"]), int(p["base"]["seed"])
    workers = int(p["base"]["num_workers"])
    data = open_dataset(p["data"])
    visual, visual_cfg = load_visual(visual_model)
    keys, audio = read_store(audio_store, "audio", ["audio_token"])
    tokens = audio["audio_token"][store_rows(keys, data.frames, source=audio_store)]
    model = AlignModel(visual, audio_dim=tokens.shape[1], embed_dim=int(cfg["embed_dim"]),
                       hidden_dim=int(cfg["hidden_dim"]),
                       shared_patch_head=bool(cfg["shared_patch_head"]))
    train = data.split("train")
    train_tokens = tokens[(data.frames["split"] == "train").to_numpy()]
    train_alignment(model, train.clips(visual.mean, visual.std, augment=cfg["augment"] or None,
                                       num_workers=workers),
                    train.frames, train_tokens,
                    epochs=int(cfg["epochs"]), batch_videos=int(cfg["batch_videos"]),
                    lr_backbone=float(cfg["lr_backbone"]), lr_heads=float(cfg["lr_heads"]),
                    warmup_epochs=float(cfg["warmup_epochs"]),
                    weight_decay=float(cfg["weight_decay"]), frame_pool=cfg["frame_pool"],
                    w_cls=float(cfg["w_cls"]), w_class_token=float(cfg["w_class_token"]),
                    w_cmc=float(cfg["w_cmc"]),
                    temperature=float(cfg["temperature"]), seed=seed, device=device, amp=amp,
                    logger=log)
    save_checkpoint(model_out, model.visual, visual_cfg)
    write_store_batches(store_out, "maps", data.frames,
                        iter_maps(model, data.clips(visual.mean, visual.std, num_workers=workers),
                                  data.frames, tokens, batch_videos=int(cfg["batch_videos"]),
                                  device=device, amp=amp), params=p)
    log.info("wrote %s: maps of %d frames", store_out, len(data.frames))
