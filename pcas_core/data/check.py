"""``pcas check-data``: validate a dataset folder before a long run and describe it.

Reads the folder as every stage does (:func:`pcas_core.data.dataset.read_dataset`), checks every
file's header and contents (:mod:`pcas_core.data.validate`), and reports counts per split, subset
and class, frames per video, audio sample rates and durations, and every problem with its path.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from pcas_core.data.dataset import AVSData, NEEDED_SPLITS, read_dataset, split_problems
from pcas_core.data.problems import Problems
from pcas_core.data.table import SPLITS
from pcas_core.data.validate import check_contents

__all__ = ["CheckReport", "check_dataset", "format_report"]


@dataclass
class CheckReport:
    """What :func:`check_dataset` found: the dataset, its problems, one row of audio facts per video
    (``uid``, ``audio_path``, ``rate``, ``channels``, ``duration``)."""

    data: AVSData
    problems: Problems
    audio: pd.DataFrame

    def ok(self, skip_bad: bool = False) -> bool:
        """No error; with ``skip_bad``, no error outside single videos (those would be skipped)
        and at least one video left in each split the pipeline needs."""
        if not skip_bad:
            return not self.problems.errors
        if any(not p.uid for p in self.problems.errors):
            return False
        bad = self.problems.bad_uids()
        left = self.data.metadata[~self.data.metadata["uid"].isin(bad)]
        return all((left["split"] == s).any() for s in NEEDED_SPLITS)


def check_dataset(data: dict[str, Any]) -> CheckReport:
    """Read and fully check the dataset ``data`` (a ``data`` params section) describes.

    Raises:
        FileNotFoundError / DataError: problems of the whole dataset that stop reading it (no index
            csv, a missing csv column, no label2idx.json, ...), naming the file.
    """
    problems = Problems()
    ds, audio = read_dataset({"img_size": 224, **data}, problems)
    check_contents(ds.frames, ds.palette, problems, off_palette=ds.off_palette)
    split_problems(ds, problems, NEEDED_SPLITS)
    return CheckReport(ds, problems, audio)


def _table(df: pd.DataFrame, indent: str = "  ") -> str:
    return "\n".join(indent + line for line in df.to_string().splitlines())


def _counts(values: pd.Series) -> str:
    counts = values.value_counts(dropna=False).sort_index()
    return ", ".join(f"{k}: {v}" for k, v in counts.items())


def format_report(report: CheckReport, skip_bad: bool = False) -> str:
    """The report as text (sections: totals, videos/frames per split and subset (and per clip
    kind when the metadata has a ``kind`` column), videos per class, frames per video, audio,
    problems)."""
    ds, frames = report.data, report.data.frames
    meta = ds.metadata
    lines = [f"dataset {ds.dataset} at {ds.root}: {len(meta)} videos, {len(frames)} frames, "
             f"{ds.num_classes} classes ({ds.num_classes - 1} foreground)"
             + (", binary masks" if ds.binary else "")]
    splits = [s for s in SPLITS if (meta["split"] == s).any()]
    per = pd.DataFrame({
        "videos": meta.groupby(["split", "subset"]).size(),
        "frames": frames.groupby(["split", "subset"]).size(),
        "annotated": frames[frames["mask_path"] != ""].groupby(["split", "subset"]).size(),
    }).fillna(0).astype(int).reindex(splits, level=0)
    lines += ["videos and frames per split and subset:", _table(per)]
    if "kind" in meta.columns:  # clip kinds (the bundled demo's metadata column)
        kinds = meta["kind"].to_numpy()[frames["video"].to_numpy()]
        per_kind = pd.DataFrame({
            "videos": meta.groupby(["split", "kind"]).size(),
            "frames": frames.assign(kind=kinds).groupby(["split", "kind"]).size(),
        }).fillna(0).astype(int).reindex(splits, level=0)
        lines += ["videos and frames per split and clip kind (metadata column kind):",
                  _table(per_kind)]
    by_class = pd.DataFrame(ds.labels, columns=ds.class_names[1:]).groupby(
        meta["split"].to_numpy()).sum().T.astype(int).reindex(columns=splits)
    by_class = by_class[by_class.sum(axis=1) > 0]
    lines += [f"videos per class (video-level labels; {len(by_class)} of {ds.num_classes - 1} "
              "classes occur):", _table(by_class)]
    unlabelled = int((ds.labels.sum(axis=1) == 0).sum())
    if unlabelled:
        lines.append(f"  videos without a foreground class: {unlabelled}")
    lines.append("frames per video: " + _counts(frames.groupby("video").size()))
    audio = report.audio
    known = audio.dropna(subset=["duration"])
    lines.append("audio sample rates (Hz): " + _counts(audio["rate"].astype("Int64")))
    lines.append("audio channels: " + _counts(audio["channels"].astype("Int64")))
    if len(known):
        d = known["duration"].to_numpy()
        lines.append(f"audio duration (s): min {d.min():.2f}, median {np.median(d):.2f}, "
                     f"max {d.max():.2f}")
    errors, notes = report.problems.errors, report.problems.notes
    lines.append(f"problems: {len(errors)} error(s) in {len(report.problems.bad_uids())} "
                 f"video(s), {len(notes)} note(s)")
    lines += [f"  ERROR {p}" for p in errors] + [f"  note  {p}" for p in notes]
    if skip_bad and errors:
        lines.append("with --skip-bad these videos are left out: "
                     + ", ".join(sorted(report.problems.bad_uids())))
    lines.append("OK" if report.ok(skip_bad) else "FAILED")
    return "\n".join(lines)
