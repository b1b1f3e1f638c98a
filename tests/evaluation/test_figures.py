"""Plots a person can read: the per-class IoU spec of dvc.yaml puts the class names on a
categorical axis in the Vega-Lite spec DVC renders, and the `figures` stage draws the curves,
per-class IoU and confusion counts as PNGs with a page that needs no network."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from dvc_render.vega import VegaRenderer
from PIL import Image

from pcas_core.evaluation.scoring import Prediction, metrics_file, score_by_subset, scored_frames
from pcas_core.pipeline.figures import FigureInputs, draw_figures, read_curves, report_html

ROOT = Path(__file__).resolve().parents[2]


def _plot_props(path: str) -> dict:
    for entry in yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]["evaluate"]["plots"]:
        if isinstance(entry, dict) and path in entry:
            return {k: v for k, v in entry[path].items() if k != "cache"}
    raise AssertionError(f"dvc.yaml has no plot {path}")


def test_per_class_iou_names_the_classes_on_a_categorical_axis():
    props = _plot_props("plots/per_class_iou.csv")
    rows = [{"class": c, "iou": v, "rev": "workspace"} for c, v in
            [("background", 0.93), ("dog", 0.25), ("sheep", 0.01)]]
    spec = VegaRenderer(rows, "plots/per_class_iou.csv", **props).get_filled_template()
    enc = spec["encoding"]
    names = {ax: enc[ax]["field"] for ax in ("x", "y")}
    types = {ax: enc[ax]["type"] for ax in ("x", "y")}
    category = next(ax for ax in ("x", "y") if names[ax] == "class")
    value = next(ax for ax in ("x", "y") if names[ax] == "iou")
    assert types[category] in ("nominal", "ordinal") and types[value] == "quantitative"
    assert spec["data"]["values"][1]["class"] == "dog"


def _tiny_run(tmp: Path) -> FigureInputs:
    for stage, steps in [("align", 26), ("evaluate", 90)]:
        folder = tmp / "dvclive" / stage / "plots" / "metrics"
        folder.mkdir(parents=True)
        step = np.arange(1, steps + 1)
        for term in ("loss", "lr", "cmc"):
            pd.DataFrame({"step": step, term: 1.0 / step}).to_csv(folder / f"{term}.tsv",
                                                                  sep="\t", index=False)
    pd.DataFrame({"class": ["background", "dog", "sheep"], "iou": [0.9, 0.25, 0.0]}).to_csv(
        tmp / "per_class_iou.csv", index=False)
    pd.DataFrame({"actual": ["dog", "dog", "background", "sheep"],
                  "predicted": ["dog", "background", "sheep", "sheep"]}).to_csv(
        tmp / "confusion.csv", index=False)
    frames = scored_frames(pd.DataFrame([{"uid": "a", "frame": f, "subset": "v1s",
                                          "mask_path": "m.png"} for f in range(5)]),
                           require_all=True)
    gts = np.zeros((5, 4, 4), np.uint8)
    gts[:, :2] = 1
    metrics = metrics_file("avss", "test", score_by_subset("avss", Prediction(gts), gts, frames,
                                                           batch_videos=4), {})
    (tmp / "metrics.json").write_text(json.dumps(metrics))
    overlays = tmp / "overlays"
    overlays.mkdir()
    for name in ("a_2.png", "a_clip.png"):
        Image.new("RGB", (8, 8)).save(overlays / name)
    return FigureInputs({"align": tmp / "dvclive" / "align",
                         "evaluate": tmp / "dvclive" / "evaluate"},
                        tmp / "per_class_iou.csv", tmp / "confusion.csv", tmp / "metrics.json",
                        overlays)


def test_figures_are_images_and_the_page_shows_them_without_a_script(tmp_path):
    inputs = _tiny_run(tmp_path)
    out = tmp_path / "figures"
    out.mkdir()
    written = draw_figures(inputs, out)
    assert written == ["curves_align.png", "curves_evaluate.png", "per_class_iou.png",
                       "confusion.png"]
    for name in written:
        with Image.open(out / name) as image:
            assert image.format == "PNG" and min(image.size) > 150
    page = report_html(inputs, written, "figures", "overlays")
    assert "<script" not in page and "http" not in page.split("</title>")[1]
    for src in ["figures/" + n for n in written] + ["overlays/a_2.png", "overlays/a_clip.png"]:
        assert f"src='{src}'" in page
    assert page.index("overlays/a_clip.png") < page.index("overlays/a_2.png")  # strips first
    assert "segmentation head" in page and "1.0000" in page  # the headline table
    assert set(read_curves(tmp_path / "dvclive" / "align")) == {"loss", "lr", "cmc"}
