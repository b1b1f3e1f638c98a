"""Paper tables with their spread (``pcas report``): runs of ``dvc exp show --json`` grouped by the
params that differ, mean and sample standard deviation over ``base.seed``, and each group's
difference to a reference group paired by seed.

From the JSON to a table:

1. :func:`exp_show_runs`: one row per run (the workspace, each baseline commit, each
   experiment) with its params (``params.yaml`` keys dotted, ``align.cmc``; other params files
   as ``FILE:key``) and numeric metrics (``FILE:key``, ``metrics/metrics.json:clean.miou``).
   Runs with the same params are one run (after ``dvc exp run`` the workspace repeats the last
   experiment; a committed result repeats the experiment that made it), so no seed counts twice.
2. :func:`select_runs`: a table's runs. With group prefixes (``--table 4``: ``align.``) the runs
   whose other params (``base.seed`` aside) are those of the baseline commit, grouped by the
   params under the prefixes that differ between them; without, every run, grouped by every
   param that differs except ``base.seed``.
3. :func:`spread_report`: per group and metric, the mean and sample standard deviation over seeds
   (ddof 1) with each seed's value; per group other than the reference and metric, the paired
   differences ``d_s = group(s) - reference(s)`` over the seeds both have, their mean, sample
   standard deviation and standard error ``SE = sd(d) / sqrt(n)``, and whether the difference
   exceeds the spread under :data:`RULE`.
4. :mod:`pcas_core.evaluation.report_text`: the report as text tables and markdown.

The rule: a difference exceeds the spread when ``|mean(d)| > 2 SE`` (n >= 2 seeds). Pairing by
seed removes what both runs of a seed share (data order, initialisation, the demo's clips), so
the spread that matters for a difference is that of the differences, not each group's; 2 SE is
the usual two-sided ~95 % normal-approximation bound. With few seeds it is lenient (a paired
t-test at 5 % would need 4.3 SE for 3 seeds, 2.8 for 5), so a difference that passes it with 3
seeds is worth more seeds, and one that fails it is not shown by these runs.
"""

from __future__ import annotations

import fnmatch
import json
import math
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

__all__ = ["SEED", "RULE", "TableSpec", "TABLES", "exp_show_json", "exp_show_runs", "Runs",
           "resolve_metrics", "select_runs", "parse_reference", "SpreadReport", "spread_report"]

SEED = "base.seed"
PARAMS_FILE = "params.yaml"
ABSENT = "<absent>"  # a param key a run does not have
RULE = ("|mean paired difference| > 2 SE, SE = sd(d) / sqrt(n), paired by base.seed "
        "(n >= 2; lenient for few seeds: a 5 % paired t-test needs 4.3 SE at n = 3)")


@dataclass(frozen=True)
class TableSpec:
    """A preset table.

    Attributes:
        title: heading of the report.
        groups: param prefixes that make the rows (``align.``); () = every param that differs.
        metrics: metric patterns (``FILE:key`` or ``key``, fnmatch wildcards); a pattern that
            matches no metric of the runs is left out (per clip kind "when present").
    """

    title: str
    groups: tuple[str, ...] = ()
    metrics: tuple[str, ...] = ()


#: ``--table N``: the paper's Table 3 (the audio encoder) and Table 4 (the alignment terms)
TABLES: dict[str, TableSpec] = {
    "3": TableSpec("Table 3: frame-level audio classification of the test split (train_audio)",
                   ("train_audio.",),
                   ("metrics/audio.json:frame_cls_test.f1",
                    "metrics/audio.json:frame_cls_test.recall",
                    "metrics/audio.json:*kind*.f1")),
    "4": TableSpec("Table 4: the alignment terms (align), segmentation head and pseudo-masks",
                   ("align.",),
                   ("metrics/metrics.json:clean.miou_present",
                    "metrics/metrics.json:official.miou",
                    "metrics/metrics.json:pseudo_masks.clean.miou_present")),
}


def exp_show_json(repo: Path = Path(".")) -> list[dict]:
    """Run ``dvc exp show --json`` in ``repo`` (with this interpreter's DVC) and parse it.

    Raises:
        ValueError: DVC failed, e.g. ``repo`` is not a DVC repository (DVC's message included).
    """
    done = subprocess.run([sys.executable, "-m", "dvc", "exp", "show", "--json"], cwd=repo,
                          capture_output=True, text=True)
    if done.returncode != 0:
        raise ValueError(f"`dvc exp show --json` failed in {Path(repo).resolve()}: "
                         f"{' '.join(done.stderr.split())}")
    return json.loads(done.stdout)


def _canon(value: Any) -> str:
    """A param value as one comparable string: strings as they are, the rest as JSON."""
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True)


def _files(block: dict | None, numeric: bool) -> dict[str, Any]:
    """``{file: {"data": {...}}}`` of ``dvc exp show`` -> flat ``{name: value}`` (nested keys
    dotted by :func:`pandas.json_normalize`; an empty mapping has no key)."""
    out: dict[str, Any] = {}
    for file, content in (block or {}).items():
        flat = pd.json_normalize((content or {}).get("data") or {}, sep=".").to_dict("records")[0]
        for key, value in flat.items():
            if not numeric:
                out[key if file == PARAMS_FILE else f"{file}:{key}"] = _canon(value)
            elif isinstance(value, (int, float)) and not isinstance(value, bool):
                out[f"{file}:{key}"] = float(value)
    return out


@dataclass
class Runs:
    """Runs of ``dvc exp show``, one row each (same index in all three frames).

    Attributes:
        info: columns ``name``, ``rev``, ``source`` (``workspace`` | ``baseline`` |
            ``experiment``).
        params: one column per param, values as strings (:func:`_canon`; NaN where a run lacks
            the key).
        metrics: one float column per numeric metric ``FILE:key`` (NaN where missing).
        baseline: the params of the first baseline commit (also when its run is counted under
            an experiment with the same params), or None.
        notes: what was left out and why.
    """

    info: pd.DataFrame
    params: pd.DataFrame
    metrics: pd.DataFrame
    baseline: pd.Series | None = None
    notes: list[str] = field(default_factory=list)

    def take(self, rows: np.ndarray) -> Runs:
        """The runs at the boolean ``rows``."""
        idx = self.info.index[rows]
        return Runs(self.info.loc[idx], self.params.loc[idx], self.metrics.loc[idx],
                    self.baseline, list(self.notes))


def exp_show_runs(shown: list[dict]) -> Runs:
    """Every run of ``dvc exp show --json`` output, runs with equal params counted once.

    Experiments come first, then baselines, then the workspace, so the named experiment is the
    one kept. A run whose params could not be read is left out (named in ``notes``).

    Raises:
        ValueError: not ``dvc exp show --json`` output, or no run has ``base.seed``.
    """
    if not isinstance(shown, list) or not all(isinstance(e, dict) and "rev" in e for e in shown):
        raise ValueError("expected the output of `dvc exp show --json`: a list of revisions")
    found: list[tuple[str, str, str, dict]] = []
    for entry in shown:
        for exp in entry.get("experiments") or []:
            for rev in exp.get("revs") or []:
                found.append((rev.get("name") or exp.get("name") or rev["rev"][:7], rev["rev"],
                              "experiment", rev.get("data") or {}))
    found += [(e.get("name") or e["rev"][:7], e["rev"], "baseline", e.get("data") or {})
              for e in shown if e["rev"] != "workspace"]
    found += [("workspace", "workspace", "workspace", e.get("data") or {})
              for e in shown if e["rev"] == "workspace"]
    info, params, metrics, notes, seen, baseline = [], [], [], [], {}, None
    for name, rev, source, data in found:
        p = _files(data.get("params"), numeric=False)
        if not p:
            notes.append(f"{name}: no params (left out)")
            continue
        if source == "baseline" and baseline is None:
            baseline = pd.Series(p)
        key, m = json.dumps(p, sort_keys=True), _files(data.get("metrics"), numeric=True)
        if key in seen:
            first, first_m = seen[key]
            differ = {k for k in set(m) & set(first_m) if m[k] != first_m[k]}
            notes.append(f"{name} ({source}): same params as {first}, counted once" +
                         (f" (its metrics differ: {sorted(differ)})" if differ else ""))
            continue
        seen[key] = (name, m)
        info.append({"name": name, "rev": rev, "source": source})
        params.append(p)
        metrics.append(m)
    runs = Runs(pd.DataFrame(info), pd.DataFrame(params), pd.DataFrame(metrics), baseline, notes)
    if SEED not in runs.params or runs.params[SEED].isna().all():
        raise ValueError(f"no run has the param {SEED}: nothing to pair by seed")
    return runs


def resolve_metrics(patterns: list[str] | tuple[str, ...], columns: list[str], *,
                    required: bool) -> list[str]:
    """Metric columns matching ``patterns`` in pattern order: ``FILE:key`` patterns match the
    whole name, bare ``key`` patterns the part after the file (fnmatch wildcards allowed).

    Raises:
        ValueError: ``required`` and a pattern matches nothing, or a bare key is in two files
            (lists the metrics there are).
    """
    out: list[str] = []
    for pattern in patterns:
        full = ":" in pattern
        hits = [c for c in columns if fnmatch.fnmatchcase(c if full else c.split(":", 1)[-1],
                                                            pattern)]
        if not full and not any(ch in pattern for ch in "*?[") and len(hits) > 1:
            raise ValueError(f"metric {pattern!r} is in several files: {hits}; name one FILE:key")
        if required and not hits:
            raise ValueError(f"no metric matches {pattern!r}; the runs have: {sorted(columns)}")
        out += [h for h in hits if h not in out]
    return out


def select_runs(runs: Runs, groups: tuple[str, ...]) -> tuple[Runs, list[str]]:
    """The runs of a table and the params that make its groups (see the module docstring).

    Args:
        groups: param prefixes (``align.``); () for every param.

    Returns:
        ``(runs, group keys)``: the keys (sorted) whose values differ between the chosen runs.
    """
    params = runs.params.drop(columns=[SEED]).fillna(ABSENT)
    under = [c for c in params if not groups or c.startswith(groups)]
    if groups:
        ref = params.mode().iloc[0] if runs.baseline is None else \
            runs.baseline.reindex(params.columns).fillna(ABSENT)
        other = [c for c in params if c not in under]
        same = (params[other] == ref[other]).all(axis=1).to_numpy()
        runs = runs.take(same)
        runs.notes.append(f"{int((~same).sum())} run(s) whose params outside {list(groups)} "
                          "differ from the baseline commit's: left out" if (~same).any() else
                          f"every run has the baseline commit's params outside {list(groups)}")
    chosen = runs.params[under].fillna(ABSENT)
    return runs, sorted(c for c in under if chosen[c].nunique() > 1)


def parse_reference(text: str) -> dict[str, str]:
    """``"align.cmc=false,align.cmpc=true"`` -> ``{"align.cmc": "false", ...}``, values read as
    YAML scalars and written as :func:`exp_show_runs` writes params.

    Raises:
        ValueError: an item without ``=``.
    """
    out = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        if "=" not in item:
            raise ValueError(f"--reference takes KEY=VALUE items separated by commas, got {item!r}")
        key, value = item.split("=", 1)
        out[key.strip()] = _canon(yaml.safe_load(value.strip()))
    return out


@dataclass
class SpreadReport:
    """What :func:`spread_report` finds.

    Attributes:
        title, rule: headings. reference: the reference group's label. keys: group params.
        groups: one row per (group, metric): ``group`` (label), the group keys, ``metric``,
            ``n``, ``mean``, ``std`` (sample, ddof 1; NaN for one seed), ``seeds``, ``values``
            (each seed's value, in seed order), ``reference`` (bool), ``diff_n``, ``diff_mean``,
            ``diff_std``, ``diff_se``, ``diff_values`` (d_s per common seed), ``exceeds``
            (:data:`RULE`; None for the reference or fewer than 2 common seeds).
        notes: runs left out and why.
    """

    title: str
    rule: str
    reference: str
    keys: list[str]
    groups: pd.DataFrame
    notes: list[str]


def _label(values: pd.Series) -> str:
    return ", ".join(f"{k}={v}" for k, v in values.items()) or "all runs"


def _exceeds(mean: float, se: float, n: int) -> bool | None:
    if n < 2:
        return None
    return bool(abs(mean) > 2.0 * se) if se > 0 else bool(mean != 0.0)


def spread_report(runs: Runs, metrics: list[str], keys: list[str], *, title: str,
                  reference: dict[str, str] | None = None) -> SpreadReport:
    """Mean ± std over seeds per group, and paired differences to the reference group.

    Args:
        runs, keys: from :func:`select_runs`. metrics: from :func:`resolve_metrics`.
        reference: params of the reference group (``--reference``); None: the group of the
            baseline commit's params, else the first group.

    Raises:
        ValueError: no metric, no run with one of them, a reference key that is not a group
            key, or no group matches the reference.
    """
    if not metrics:
        raise ValueError("no metric to report")
    has = runs.metrics.reindex(columns=metrics).notna().any(axis=1).to_numpy()
    notes = list(runs.notes) + [f"{n} ({s}): none of the metrics, left out" for n, s in
                                runs.info.loc[~has, ["name", "source"]].itertuples(index=False)]
    runs = runs.take(has)
    if not len(runs.info):
        raise ValueError(f"no run has any of the metrics {metrics}")
    table = runs.params[keys].fillna(ABSENT).copy()
    table["group"] = [_label(row) for _, row in table.iterrows()] if keys else "all runs"
    table["seed"] = pd.to_numeric(runs.params[SEED], errors="coerce")
    values = pd.concat([table, runs.metrics.reindex(columns=metrics)], axis=1)
    labels = list(dict.fromkeys(values.sort_values(keys + ["seed"])["group"]))
    bad = sorted(set(reference or {}) - set(keys))
    if bad:
        raise ValueError(f"--reference keys {bad} do not tell the groups apart; group keys: "
                         f"{keys}")
    want = reference or ({} if runs.baseline is None else
                         runs.baseline.reindex(keys).fillna(ABSENT).to_dict())
    hit = values[(values[list(want)] == pd.Series(want, dtype=object)).all(axis=1)]
    if reference and hit.empty:
        raise ValueError(f"no group has {reference}; groups: {labels}")
    if hit.empty:
        notes.append("no group has the baseline commit's params: the reference is the first group")
    ref_label = hit["group"].iloc[0] if len(hit) else labels[0]
    labels = [ref_label] + [label for label in labels if label != ref_label]
    ref = values[values["group"] == ref_label].set_index("seed")
    rows = []
    for label in labels:
        part = values[values["group"] == label].sort_values("seed")
        for metric in metrics:
            own = part[["seed", metric]].dropna()
            d = (own.set_index("seed")[metric] - ref[metric]).dropna()
            n_d = len(d)
            mean_d = float(d.mean()) if n_d else math.nan
            sd_d = float(d.std(ddof=1)) if n_d > 1 else math.nan
            se_d = sd_d / math.sqrt(n_d) if n_d > 1 else math.nan
            is_ref = label == ref_label
            rows.append({"group": label, **part[keys].iloc[0].to_dict(), "metric": metric,
                         "n": len(own), "mean": float(own[metric].mean()),
                         "std": float(own[metric].std(ddof=1)) if len(own) > 1 else math.nan,
                         "seeds": " ".join(str(int(s)) for s in own["seed"]),
                         "values": " ".join(f"{v:.6g}" for v in own[metric]),
                         "reference": is_ref,
                         "diff_n": 0 if is_ref else n_d,
                         "diff_mean": math.nan if is_ref else mean_d,
                         "diff_std": math.nan if is_ref else sd_d,
                         "diff_se": math.nan if is_ref else se_d,
                         "diff_values": "" if is_ref else " ".join(f"{v:+.6g}" for v in d),
                         "exceeds": None if is_ref else _exceeds(mean_d, se_d, n_d)})
    return SpreadReport(title, RULE, ref_label, keys, pd.DataFrame(rows), notes)
