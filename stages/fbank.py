"""Stage fbank: the features of every video's audio (`fbank.front_end`: AST Kaldi fbank or aisfx
log-mel), into the `fbank` store."""

from pathlib import Path
from typing import Annotated

import typer

from pcas_core.audio.front_end import front_end_shape
from pcas_core.data.dataset import open_dataset
from pcas_core.pipeline.fbank import fbank_pass
from pcas_core.runtime.stage import start_stage
from pcas_core.storage.stores import write_store_batches

def fbank(
    out: Annotated[Path, typer.Option(help="fbank store (.h5) to write.")] = Path("features/fbank.h5"),
    params: Annotated[Path, typer.Option(exists=True, help="params.yaml")] = Path("params.yaml"),
) -> None:
    """Compute the (frames x bins) audio features of every video: `fbank.front_end` aisfx (the
    log-mel of the pretrained aisfx CNN, the demo's) or ast (AST's Kaldi fbank, the paper's).

    Reads params `base`, `data`, `fbank`."""
    run = start_stage("fbank", params, "data", "fbank")
    cfg = run.config.fbank
    data = open_dataset(run.config.data)
    write_store_batches(out, "fbank", data.metadata, fbank_pass(data, cfg, run.log),
                        params=run.params)
    run.log.info("wrote %s: %d videos, %s features %s", out, len(data.metadata), cfg.front_end,
                 front_end_shape(cfg))
