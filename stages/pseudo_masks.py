"""Stage pseudo_masks: audio-selected CAMs times the sounding map, refined by a dense CRF."""

from pathlib import Path
from typing import Annotated

import typer

from pcas_core.data.dataset import open_dataset
from pcas_core.pipeline.pseudo_masks import PseudoMaskPool, pseudo_mask_pass, train_split_scores
from pcas_core.runtime.distributed import is_main, on_main
from pcas_core.runtime.stage import start_stage
from pcas_core.storage.atomic import write_json
from pcas_core.storage.stores import open_store, write_store_batches

def pseudo_masks_stage(
    maps_store: Annotated[Path, typer.Option(exists=True, help="maps store.")] = Path("features/maps.h5"),
    audio_store: Annotated[Path, typer.Option(exists=True, help="audio store.")] = Path("features/audio.h5"),
    store_out: Annotated[Path, typer.Option(help="pseudo_masks store (.h5).")] = Path("features/pseudo_masks.h5"),
    metrics_out: Annotated[Path, typer.Option(help="Train-split pseudo-mask quality (.json).")] = Path("metrics/pseudo_masks.json"),
    params: Annotated[Path, typer.Option(exists=True, help="params.yaml")] = Path("params.yaml"),
) -> None:
    """Pseudo-masks of every frame: the CAMs of the classes the audio hears times the sounding
    map, refined by a dense CRF; no labels are used. Their quality on the train split is scored
    against ground truth where it exists (evaluation only).

    Reads params `base`, `data`, `pseudo_masks`, `scoring`."""
    run = start_stage("pseudo_masks", params, "data", "pseudo_masks", "scoring", ranks=True)
    cfg = run.config.pseudo_masks
    data = open_dataset(run.config.data)
    with open_store(maps_store, "maps") as maps, open_store(audio_store, "audio", ["logits"]) as audio, \
            PseudoMaskPool(cfg, cfg.workers) as pool:  # chunk by chunk, split over ranks
        on_main(write_store_batches, store_out, "pseudo_masks", data.frames,
                pseudo_mask_pass(data, maps, audio, pool, log=run.log), params=run.params)
    if not is_main():
        return
    result = train_split_scores(store_out, data,
                                official_batch_videos=run.config.scoring.official_batch_videos,
                                log=run.log)
    write_json(metrics_out, result)
    run.log.info("pseudo-masks vs train ground truth: clean %s, official %s", result["clean"],
                 result["official"])
