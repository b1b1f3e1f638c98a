"""Stage pseudo_masks: audio-selected CAMs times the sounding map, refined by a dense CRF."""

import contextlib
import json
from pathlib import Path
from typing import Annotated

import typer

from pcas_core.storage.atomic import atomic_path
from pcas_core.runtime.stage import start_stage
from pcas_core.data.dataset import open_dataset
from pcas_core.runtime.distributed import is_main
from pcas_core.pipeline.pseudo_masks import write_pseudo_masks
from pcas_core.method.pseudo_masks import PseudoMaskPool
from pcas_core.evaluation.scoring import Prediction, metrics_file, score_by_subset, scored_frames
from pcas_core.storage.stores import open_store, read_rows, store_writer

app = typer.Typer(add_completion=False)


@app.callback(invoke_without_command=True)
def pseudo_masks_stage(
    maps_store: Annotated[Path, typer.Option(exists=True, help="maps store.")] = Path("features/maps.h5"),
    audio_store: Annotated[Path, typer.Option(exists=True, help="audio store.")] = Path("features/audio.h5"),
    store_out: Annotated[Path, typer.Option(help="pseudo_masks store (.h5).")] = Path("features/pseudo_masks.h5"),
    metrics_out: Annotated[Path, typer.Option(help="Train-split pseudo-mask quality (.json).")] = Path("metrics/pseudo_masks.json"),
    params: Annotated[Path, typer.Option(exists=True, help="params.yaml")] = Path("params.yaml"),
) -> None:
    """Pseudo-masks of every frame (params `data`, `pseudo_masks`); no labels are used. Their
    quality on the train split is scored against ground truth where it exists (evaluation only)."""
    p, typed, log, _ = start_stage("pseudo_masks", params, "data", "pseudo_masks", ranks=True)
    cfg, kind = typed.pseudo_masks, typed.data.dataset
    data = open_dataset(typed.data)
    size = (data.img_size, data.img_size)
    with open_store(maps_store, "maps") as maps, open_store(audio_store, "audio", ["logits"]) as audio, \
            (store_writer(store_out, "pseudo_masks", data.frames, {"mask": size}, params=p)
             if is_main() else contextlib.nullcontext()) as out, \
            PseudoMaskPool(cfg, cfg.workers) as pool:
        write_pseudo_masks(data, maps, audio, out, pool)  # chunk by chunk, split over ranks
    if not is_main():
        return
    train = data.split("train")
    scored = scored_frames(train.frames, require_all=False)
    result = metrics_file(kind, "train", score_by_subset(
        kind, Prediction(read_rows(store_out, "pseudo_masks", scored, ["mask"])["mask"]),
        train.masks(), scored, batch_videos=cfg.official_batch_videos), {})
    with atomic_path(metrics_out) as tmp:
        tmp.write_text(json.dumps(result, indent=2))
    log.info("pseudo-masks vs train ground truth: clean %s, official %s", result["clean"],
             result["official"])
