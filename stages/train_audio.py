"""Stage train_audio: the TVP audio encoder (AST with each frame's v_t as a prompt); a_t, s_t per frame."""

import json
from pathlib import Path
from typing import Annotated

import numpy as np
import torch
import typer

from pcas_core.storage.atomic import atomic_path
from pcas_core.storage.weights import save_checkpoint
from pcas_core.runtime.stage import start_stage
from pcas_core.runtime.curves import epoch_curves
from pcas_core.data.dataset import open_dataset
from pcas_core.runtime.distributed import is_main, on_main
from pcas_core.pipeline.train_audio import encode_audio, step_prompts, steps_to_frames, train_tvp
from pcas_core.evaluation.metrics import frame_classification_from_logits
from pcas_core.models.ast_init import init_audio_encoder
from pcas_core.models.tvp import TVPAudioEncoder, tvp_model_config
from pcas_core.runtime.resume import EpochCheckpoint
from pcas_core.storage.views import StoreRowsView
from pcas_core.storage.stores import open_store, read_store, store_rows, write_store

app = typer.Typer(add_completion=False)


@app.callback(invoke_without_command=True)
def train_audio(
    fbank_store: Annotated[Path, typer.Option(exists=True, help="fbank store.")] = Path("features/fbank.h5"),
    visual_store: Annotated[Path, typer.Option(exists=True, help="visual store.")] = Path("features/visual.h5"),
    model_out: Annotated[Path, typer.Option(help="Checkpoint (.safetensors).")] = Path("models/audio.safetensors"),
    store_out: Annotated[Path, typer.Option(help="audio store (.h5).")] = Path("features/audio.h5"),
    metrics_out: Annotated[Path, typer.Option(help="Frame-level audio classification (.json).")] = Path("metrics/audio.json"),
    curves_out: Annotated[Path, typer.Option(help="DVCLive folder of per-epoch curves.")] = Path("dvclive/train_audio"),
    params: Annotated[Path, typer.Option(exists=True, help="params.yaml")] = Path("params.yaml"),
) -> None:
    """Train on the train split (params `data`, `train_audio`); score frame-level audio
    classification on the test split against the classes in each frame's mask (METHOD §2)."""
    p, typed, log, device = start_stage("train_audio", params, "data", "train_audio", ranks=True)
    cfg, base = typed.train_audio, typed.base
    data = open_dataset(typed.data)
    vis_keys, vis = read_store(visual_store, "visual", ["pooled_patch"])
    pooled = vis["pooled_patch"][store_rows(vis_keys, data.frames, source=visual_store)]
    with open_store(fbank_store, "fbank") as fb:  # fbank rows are read batch by batch
        rows = store_rows(fb.keys, data.metadata, source=fbank_store)
        fbank = StoreRowsView(fb, "fbank", rows)
        model_cfg = tvp_model_config(cfg, num_classes=data.labels.shape[1],
                                     target_length=fbank.shape[1], n_mels=fbank.shape[2],
                                     prompt_dim=pooled.shape[1])
        model = TVPAudioEncoder(**model_cfg)
        init_audio_encoder(model, cfg.init)
        n_steps = torch.from_numpy(fb.rows("n_steps", rows).astype(np.int64))
        prompts = torch.from_numpy(step_prompts(data.frames, pooled, len(data.metadata),
                                                cfg.model.max_steps)) if cfg.tvp else None
        train = torch.from_numpy(data.videos_in("train"))
        checkpoint = EpochCheckpoint.for_stage("train_audio", p, [fbank_store, visual_store],
                                                logger=log)
        with epoch_curves(curves_out) as on_epoch:
            train_tvp(model, fbank[train], prompts[train] if prompts is not None else None,
                      n_steps[train], torch.from_numpy(data.labels)[train],
                      epochs=cfg.epochs, batch_videos=cfg.batch_videos, lr=cfg.lr,
                      warmup_epochs=cfg.warmup_epochs, weight_decay=cfg.weight_decay,
                      seed=base.seed, device=device, amp=base.amp, logger=log,
                      on_epoch=on_epoch, checkpoint=checkpoint)
        on_main(save_checkpoint, model_out, model, model_cfg)
        tokens, logits = encode_audio(model, fbank, prompts, n_steps,
                                      batch_videos=cfg.batch_videos, device=device, amp=base.amp,
                                      ranks=True)
    if not is_main():
        return
    frame_logits = steps_to_frames(logits, data.frames)
    write_store(store_out, "audio", data.frames, {"audio_token": steps_to_frames(tokens, data.frames),
                                                  "logits": frame_logits}, params=p)
    test = data.frames_in("test")
    scores = frame_classification_from_logits(frame_logits[test],
                                              data.split("test").frame_classes(),
                                              threshold=cfg.eval_threshold)
    with atomic_path(metrics_out) as tmp:
        tmp.write_text(json.dumps({"frame_cls_test": scores, "tvp": cfg.tvp}, indent=2))
    checkpoint.remove()
    log.info("test frame-level audio classification: %s", scores)
