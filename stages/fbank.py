"""Stage fbank: AST-recipe Kaldi fbank of every video's audio, into the `fbank` store."""

from pathlib import Path
from typing import Annotated

import torch
import typer
from tqdm import tqdm

from pcas_core.audio.fbank import ast_fbank, load_wave
from pcas_core.runtime.stage import start_stage
from pcas_core.data.dataset import open_dataset
from pcas_core.storage.stores import store_writer

app = typer.Typer(add_completion=False)


@app.callback(invoke_without_command=True)
def fbank(
    out: Annotated[Path, typer.Option(help="fbank store (.h5) to write.")] = Path("features/fbank.h5"),
    params: Annotated[Path, typer.Option(exists=True, help="params.yaml")] = Path("params.yaml"),
) -> None:
    """Compute (target_length x num_mel_bins) fbank per video (params sections `data`, `fbank`)."""
    p, typed, log, _ = start_stage("fbank", params, "data", "fbank")
    cfg = typed.fbank
    data = open_dataset(typed.data)
    audio_paths, n_steps = data.audio_tracks()
    shape = (cfg.target_length, cfg.num_mel_bins)
    with store_writer(out, "fbank", data.metadata, {"fbank": shape, "n_steps": ()},
                      params=p) as store, torch.inference_mode():
        store.write(0, {"n_steps": n_steps})
        for row, path in enumerate(tqdm(audio_paths, desc="fbank", disable=None)):
            wave = load_wave(path, sample_rate=cfg.sample_rate)
            feats = ast_fbank(wave, sample_rate=cfg.sample_rate, num_mel_bins=cfg.num_mel_bins,
                              target_length=cfg.target_length, frame_shift_ms=cfg.frame_shift_ms,
                              norm_mean=cfg.norm_mean, norm_std=cfg.norm_std)
            store.write(row, {"fbank": feats.numpy()[None]})
    log.info("wrote %s: %d videos, fbank %s", out, len(audio_paths), shape)
