"""The headline: the few numbers a person reads first, taken from a test metrics file
(:func:`pcas_core.evaluation.scoring.metrics_file`), for ``metrics/headline.json``, the table
``make repro`` ends with (``pcas report``) and the last log line of ``evaluate``.

Rows are the predictors the metrics file scores on the test split: the segmentation head (the
file's top level), the test frames' pseudo-masks and each sanity baseline. Columns, for the
semantic kind (AVSS, 71 classes):

- ``miou_present``: clean-mode mIoU averaged over the classes that occur in the test split
  (background included); the official 71-class mean (``miou``) is small by construction on a
  dataset with few classes, so it is not the headline;
- ``fscore_present``: the F-score (beta^2 = 0.3) over the same classes;
- ``fg_miou``: class-agnostic mIoU (AVSBench's S4/MS3 binary mIoU of "any sounding class");
- ``absent_class_frames``: share of frames whose prediction holds a class their ground truth
  lacks (a silent object painted, or a class confused: lower is better);
- ``official_miou``: what the official AVSS test script prints (71-class mean, padded frames).

Binary kinds (S4/MS3) have ``miou``, ``fscore`` (clean) and ``official_miou``,
``official_fscore``. docs/avsbench.md §3 defines every metric.
"""

from __future__ import annotations

import pandas as pd

from pcas_core.evaluation.scoring import KINDS

__all__ = ["COLUMNS", "ROW_NAMES", "headline", "headline_file", "headline_frame",
           "headline_text", "headline_log"]

#: headline column -> (mode, key of the metrics file), per scoring type
COLUMNS = {
    "semantic": {"miou_present": ("clean", "miou_present"),
                 "fscore_present": ("clean", "fscore_present"),
                 "fg_miou": ("clean", "fg_miou"),
                 "absent_class_frames": ("clean", "absent_class_frames"),
                 "official_miou": ("official", "miou")},
    "binary": {"miou": ("clean", "miou"), "fscore": ("clean", "fscore"),
               "official_miou": ("official", "miou"), "official_fscore": ("official", "fscore")},
}

#: headline row -> what a person reads
ROW_NAMES = {"head": "segmentation head",
             "pseudo_masks": "pseudo-masks of the test frames",
             "background": "baseline: background everywhere",
             "listening": "baseline: listening only",
             "looking": "baseline: looking only"}

_SHORT = {"miou_present": "mIoU", "fscore_present": "F", "fg_miou": "fg mIoU",
          "absent_class_frames": "absent", "official_miou": "official mIoU",
          "miou": "mIoU", "fscore": "F", "official_fscore": "official F"}


def _row(scores: dict, columns: dict[str, tuple[str, str]]) -> dict[str, float]:
    return {name: float(scores[mode][key]) for name, (mode, key) in columns.items()
            if key in scores.get(mode, {})}


def headline(metrics: dict) -> dict:
    """The headline of a test metrics file: ``{"split", "kind", "n_frames", "head": {...},
    "pseudo_masks": {...}, "background": {...}, "listening": {...}, "looking": {...}}`` (rows
    the file lacks are left out), each row ``{column: value}`` in :data:`COLUMNS` order.

    Args:
        metrics: the content of ``metrics/metrics.json`` (or ``pcas predict --root``'s).

    Raises:
        ValueError: not a metrics file (no ``kind`` of :data:`KINDS`, or no clean scores).
    """
    kind = metrics.get("kind")
    if kind not in KINDS or "clean" not in metrics:
        raise ValueError(f"not a pcas test metrics file (kind {kind!r}, keys "
                         f"{sorted(metrics)[:8]}): expected metrics/metrics.json of evaluate")
    columns = COLUMNS[KINDS[kind]]
    out = {"split": metrics.get("split", "test"), "kind": kind,
           "n_frames": int(metrics["clean"].get("n_frames", 0)),
           "head": _row(metrics, columns)}
    if "pseudo_masks" in metrics:
        out["pseudo_masks"] = _row(metrics["pseudo_masks"], columns)
    for name, scores in (metrics.get("baseline") or {}).items():
        out[name] = _row(scores, columns)
    return out


def headline_file(head: dict) -> dict:
    """The content of ``metrics/headline.json`` from :func:`headline` output: the head's row
    under ``head`` and the others under ``reference`` (``reference.pseudo_masks``,
    ``reference.background``, ...), numbers only. ``dvc metrics diff`` sorts a file's keys, so
    ``head.*`` comes before ``reference.*``; the file's few keys keep ``dvc metrics diff
    --targets metrics/headline.json`` to about 25 lines."""
    rows = {k: v for k, v in head.items() if isinstance(v, dict)}
    return {"head": rows.get("head", {}), "reference": {k: v for k, v in rows.items()
                                                       if k != "head"}}


def headline_frame(head: dict) -> pd.DataFrame:
    """:func:`headline` output as a table: one row per predictor (index: :data:`ROW_NAMES`'
    text), one column per headline column (NaN where a row lacks it)."""
    rows = {ROW_NAMES.get(k, k): v for k, v in head.items() if isinstance(v, dict)}
    return pd.DataFrame.from_dict(rows, orient="index")


def headline_text(head: dict) -> str:
    """:func:`headline` as a plain-text table (every line under 120 characters), with a title
    line naming the split and frames and a key to the columns."""
    frame = headline_frame(head).rename(columns=_SHORT)
    body = frame.to_string(float_format=lambda v: f"{v:.4f}", na_rep="-")
    semantic = KINDS[head["kind"]] == "semantic"
    key = ("mIoU, F: clean mode, mean over the classes present; fg mIoU: any sounding class vs "
           "background;\nabsent: share of frames painting a class their truth lacks (lower is "
           "better); official mIoU: the\nofficial AVSS script (71-class mean, padded frames)."
           if semantic else
           "mIoU, F: clean mode (binary: any sounding class); official: the official S4/MS3 "
           "script (batch means).")
    return (f"{head['split']} split, {head['n_frames']} frames ({head['kind']}):\n{body}\n{key}")


def headline_log(head: dict) -> str:
    """One log line: the head's headline values and, beside them, those of the pseudo-masks and
    background-everywhere rows, each named by what it is (``miou_present``, not ``miou``)."""
    def values(row: dict) -> str:
        return ", ".join(f"{k} {v:.4f}" for k, v in row.items())

    parts = [f"test split ({head['n_frames']} frames): head {values(head['head'])}"]
    for name in ("pseudo_masks", "background"):
        first = next(iter(COLUMNS[KINDS[head["kind"]]]))
        if name in head and first in head[name]:
            parts.append(f"{ROW_NAMES[name]} {first} {head[name][first]:.4f}")
    return "; ".join(parts)
