"""Stage fbank: the features of every video's audio (`fbank.front_end`: AST Kaldi fbank or aisfx
log-mel), into the `fbank` store."""

from pathlib import Path
from typing import Annotated

import torch
import typer
from tqdm import tqdm

from pcas_core.audio.fbank import load_wave
from pcas_core.audio.front_end import front_end_features, front_end_shape
from pcas_core.config import start_stage
from pcas_core.data.dataset import open_dataset
from pcas_core.stores import store_writer

app = typer.Typer(add_completion=False)


@app.callback(invoke_without_command=True)
def fbank(
    out: Annotated[Path, typer.Option(help="fbank store (.h5) to write.")] = Path("features/fbank.h5"),
    params: Annotated[Path, typer.Option(exists=True, help="params.yaml")] = Path("params.yaml"),
) -> None:
    """Compute the (frames x bins) features of `fbank.front_end` per video (params sections
    `data`, `fbank`)."""
    p, typed, log, _ = start_stage("fbank", params, "data", "fbank")
    cfg = typed.fbank
    data = open_dataset(typed.data)
    audio_paths, n_steps = data.audio_tracks()
    shape = front_end_shape(cfg)
    with store_writer(out, "fbank", data.metadata, {"fbank": shape, "n_steps": ()},
                      params=p) as store, torch.inference_mode():
        store.write(0, {"n_steps": n_steps})
        for row, path in enumerate(tqdm(audio_paths, desc="fbank", disable=None)):
            wave = load_wave(path, sample_rate=cfg.sample_rate)
            feats = front_end_features(wave, cfg)
            store.write(row, {"fbank": feats.numpy()[None]})
    log.info("wrote %s: %d videos, %s features %s", out, len(audio_paths), cfg.front_end, shape)
