"""Run records as one pandas table, and the statistics a comparison of configurations needs.

    from ded.reporting.results import load_runs, aggregate, paired, paired_questions
    df = load_runs("multirun/", finished_only=True)
    aggregate(df, "eval/heldout/trained/avg@k", by=["choice.diversity", "corpus.size"])
    paired(df, "eval/heldout/trained/avg@k", by="choice.diversity", a="random", b="levenshtein")

A run record is a folder holding ``metrics.json`` (see ded/reporting/tracking.py). ``load_runs`` gives one
row per record: ``run_dir``, ``status``, ``overrides`` (the job's Hydra overrides, a list),
``choice.<group>`` (the config-group choices from ``.hydra/hydra.yaml``), the resolved config
flattened into dotted columns (``corpus.size``, ``train.seed``, ``eval.k``; lists kept as
values) and every metric under its own name. Metric names carry the run's k (``avg@4``); each
row also gets k-free aliases with a literal ``k`` (``eval/heldout/trained/avg@k``,
``..._se``, ``eval/heldout/delta_avg@k``) from its own ``eval.k``, so runs with different k line
up. ``load_wandb_runs`` builds the same columns from a W&B project.

Intervals are Student-t with n-1 degrees of freedom over seeds (``aggregate``), over paired
seeds (``paired``) or over paired (seed, question) cells (``paired_questions``); n=1 gives NaN.
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

log = logging.getLogger(__name__)

FIXED_COLUMNS = ("run_dir", "status", "overrides")
# Metric names that were renamed: a record written before the rename also gets the new name.
RENAMED = {"train/train_loss": "train/loss"}
_ERROR_LINE = re.compile(r"^(?:\[[^\]]*\])*\[ERROR\]\s*-\s*|^error:\s*", re.IGNORECASE)


# ---------------------------------------------------------------- reading one record


def flatten(tree: Mapping, prefix: str = "") -> dict[str, Any]:
    """{"a": {"b": 1, "c": [1, 2]}} -> {"a.b": 1, "a.c": [1, 2]}: nested mappings become dotted
    keys; lists (and empty mappings) are kept as values."""
    out: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            out.update(flatten(value, name + "."))
        else:
            out[name] = value
    return out


def k_aliases(metrics: Mapping[str, Any], k: int | None) -> dict[str, Any]:
    """The k-free alias of every metric whose name carries ``@<k>`` (``avg@4`` -> ``avg@k``,
    ``avg@4_se`` -> ``avg@k_se``, ``delta_avg@4`` -> ``delta_avg@k``), for the run's own k."""
    if k is None:
        return {}
    pattern = re.compile(rf"@{int(k)}(?=$|[_/])")
    out = {}
    for name, value in metrics.items():
        alias = pattern.sub("@k", name)
        if alias != name and alias not in metrics:
            out[alias] = value
    return out


def infer_k(config: Mapping[str, Any], metrics: Mapping[str, Any]) -> int | None:
    """The run's eval.k: from its config, else from its metrics (``eval/<split>/<model>/k``, or
    the one N of every ``avg@N`` name)."""
    k = config.get("eval.k")
    if isinstance(k, (int, float)) and not isinstance(k, bool) and not _isnan(k):
        return int(k)
    for name, value in metrics.items():
        if re.fullmatch(r"eval/[^/]+/(trained|base)/k", name) and isinstance(value, (int, float)):
            return int(value)
    found = {int(m.group(1)) for name in metrics for m in [re.search(r"avg@(\d+)(?=$|[_/])", name)] if m}
    return found.pop() if len(found) == 1 else None


def error_line(run_dir: str | Path) -> str | None:
    """Why a run failed, from its run.log (Hydra's job log; another ``*.log`` when the job has
    another name): the exception line that ends the last traceback, or else the last ``error:``
    / ``[ERROR]`` line (timestamp and logger prefix dropped). None when it names no error."""
    d = Path(run_dir)
    logs = [d / "run.log"] if (d / "run.log").is_file() else sorted(d.glob("*.log"))
    if not logs:
        return None
    lines = logs[0].read_text(errors="replace").splitlines()
    found = None
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("Traceback (most recent call last)"):
            # the exception line: the first line after the indented frames
            j = i + 1
            while j < len(lines) and (lines[j].startswith(" ") or not lines[j].strip()):
                j += 1
            if j < len(lines):
                found = lines[j].strip()
            i = j + 1
            continue
        if _ERROR_LINE.search(line):
            found = _ERROR_LINE.sub("", line).strip() or line.strip()
        i += 1
    return found


def record_row(
    run_dir: str,
    metrics: Mapping[str, Any],
    config: Mapping[str, Any] | None = None,
    overrides: Sequence[str] | None = None,
    choices: Mapping[str, Any] | None = None,
    status: str | None = None,
) -> dict[str, Any]:
    """One row of the runs table, from the parts of a record (local or W&B): the config is
    flattened, the metrics keep their names and get their k-free aliases."""
    flat = flatten(config or {})
    metrics = {k: v for k, v in metrics.items() if not isinstance(v, (Mapping, list))}
    for new, old in RENAMED.items():
        if new not in metrics and old in metrics:
            metrics[new] = metrics[old]
    metrics.update(k_aliases(metrics, infer_k(flat, metrics)))
    row: dict[str, Any] = {
        "run_dir": str(run_dir),
        "status": metrics.get("run/status") or status or "incomplete",
        "overrides": list(overrides or []),
    }
    row.update({f"choice.{g}": c for g, c in sorted((choices or {}).items()) if not str(g).startswith("hydra")})
    row.update({k: v for k, v in flat.items() if k not in row})
    row.update({k: v for k, v in sorted(metrics.items()) if k not in row})
    return row


def _read_yaml(path: Path) -> Any:
    try:
        return yaml.safe_load(path.read_text()) if path.is_file() else None
    except yaml.YAMLError as e:
        log.warning("%s: unreadable YAML (%s); left out", path, str(e).splitlines()[0])
        return None


def read_record(run_dir: str | Path) -> dict[str, Any]:
    """One local run record (a folder holding metrics.json) as a row of `load_runs`."""
    d = Path(run_dir)
    try:
        metrics = json.loads((d / "metrics.json").read_text())
    except (OSError, ValueError) as e:
        log.warning("%s: unreadable metrics.json (%s)", d, e)
        metrics = {}
    hydra_cfg = _read_yaml(d / ".hydra" / "hydra.yaml") or {}
    choices = ((hydra_cfg.get("hydra") or {}).get("runtime") or {}).get("choices") or {}
    status = None
    if "run/status" not in metrics:  # never finished: a recorded error says it failed
        status = "failed" if error_line(d) else "incomplete"
    return record_row(str(d), metrics, _read_yaml(d / "config.yaml") or {}, _read_yaml(d / ".hydra" / "overrides.yaml") or [],
                      choices, status)  # fmt: skip


def natural_key(path: Path) -> list:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", str(path))]


def frame(rows: Iterable[dict]):
    """The runs DataFrame from rows: fixed columns first, then choices, config and metrics."""
    import pandas as pd

    rows = list(rows)
    cols: dict[str, None] = dict.fromkeys(FIXED_COLUMNS)
    for r in rows:
        cols.update(dict.fromkeys(r))
    return pd.DataFrame(rows, columns=list(cols)) if rows else pd.DataFrame(columns=list(FIXED_COLUMNS))


def load_runs(root: str | Path, *, finished_only: bool = False):
    """One row per run record (a folder holding metrics.json) anywhere below `root`."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: no such folder")
    dirs = sorted({m.parent for m in root.rglob("metrics.json")}, key=natural_key)
    df = frame(read_record(d) for d in dirs)
    if finished_only:
        df = df[df["status"] == "finished"].reset_index(drop=True)
    return df


def load_wandb_runs(path: str, group: str | None = None):
    """The runs of a W&B project (``entity/project``), optionally one group (a sweep), with the
    columns of `load_runs`: ``run_dir`` is the run's W&B path, the config is flattened (its
    ``overrides`` and ``choices`` entries become ``overrides`` and ``choice.<group>``) and the
    summary's metrics keep their names."""
    import wandb

    runs = wandb.Api().runs(path, filters={"group": group} if group else None, lazy=False)
    return frame(wandb_row(r) for r in runs)


def wandb_row(run) -> dict[str, Any]:
    """One W&B public-API run as a runs-table row."""
    config = dict(run.config)
    overrides = config.pop("overrides", None) or []
    choices = config.pop("choices", None) or {}
    summary = {k: v for k, v in dict(run.summary_metrics).items() if not k.startswith("_")}
    state = getattr(run, "state", None)  # finished | running | pending | crashed | failed | killed
    state = state if state == "finished" else "incomplete" if state in ("running", "pending", None) else "failed"
    return record_row("/".join(run.path), summary, config, overrides, choices, state)


# ---------------------------------------------------------------- statistics


def _isnan(v) -> bool:
    return isinstance(v, float) and math.isnan(v)


def t_interval(values: Sequence[float]) -> dict[str, float]:
    """mean, se (sample std, ddof=1, over sqrt(n)), 95% Student-t interval (n-1 dof), n.
    n=1 gives NaN se and interval; n=0 NaN everywhere."""
    import numpy as np
    from scipy import stats

    x = np.asarray([v for v in values if v is not None and not _isnan(v)], dtype=float)
    n = len(x)
    mean = float(x.mean()) if n else math.nan
    if n < 2:
        return {"mean": mean, "se": math.nan, "ci95_low": math.nan, "ci95_high": math.nan, "n": n}
    se = float(x.std(ddof=1) / math.sqrt(n))
    half = float(stats.t.ppf(0.975, n - 1)) * se
    return {"mean": mean, "se": se, "ci95_low": mean - half, "ci95_high": mean + half, "n": n}


def _list(cols) -> list[str]:
    return [cols] if isinstance(cols, str) else list(cols)


def _need(df, cols: Iterable[str]) -> None:
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise KeyError(f"no column {missing} in the runs table (has {len(df.columns)} columns, e.g. {list(df.columns)[:8]})")


def aggregate(df, metric: str, by, seed: str | None = "train.seed"):
    """Per group of the `by` columns: mean, se, ci95_low, ci95_high, n over its runs' `metric`.

    Runs of one group that share a `seed` value (a rerun) are averaged first, so n counts
    seeds; without a `seed` column every run counts once. ``seeds`` lists the seeds used."""
    import pandas as pd

    by = _list(by)
    _need(df, [metric, *by])
    d = df[df[metric].notna()].copy()
    d[metric] = pd.to_numeric(d[metric])
    if seed is not None and seed in d.columns:
        keys = d[seed].where(d[seed].notna(), pd.Series([f"run {i}" for i in range(len(d))], index=d.index, dtype=object))
        d["__seed"] = keys
        d = d.groupby([*by, "__seed"], dropna=False, sort=False)[metric].mean().reset_index()
    else:
        d["__seed"] = range(len(d))
    rows = []
    for key, g in d.groupby(by, dropna=False, sort=False):
        key = key if isinstance(key, tuple) else (key,)
        rows.append({**dict(zip(by, key)), **t_interval(g[metric].tolist()), "seeds": g["__seed"].tolist()})
    cols = [*by, "mean", "se", "ci95_low", "ci95_high", "n", "seeds"]
    return pd.DataFrame(rows, columns=cols)


def _pair(values_a: Mapping, values_b: Mapping, **info) -> dict[str, Any]:
    common = [k for k in values_a if k in values_b]
    unmatched = [k for k in values_a if k not in values_b] + [k for k in values_b if k not in values_a]
    diffs = {k: values_b[k] - values_a[k] for k in common}
    return {**info, **t_interval(list(diffs.values())), "unmatched": unmatched, "diffs": diffs}


def _py(v):
    return v.item() if hasattr(v, "item") and not isinstance(v, (str, bytes)) else v  # numpy scalar -> Python


def _key(values: tuple):
    values = tuple(_py(v) for v in values)
    return values[0] if len(values) == 1 else values


def paired(df, metric: str, by: str, a, b, on=("train.seed",)) -> dict[str, Any]:
    """Configuration `b` minus configuration `a` (values of column `by`), matched on the `on`
    columns (a seed): mean, se, ci95_low, ci95_high (t, n-1 dof) of the per-pair differences,
    n pairs, ``unmatched`` (keys present on one side only, or without a value) and ``diffs``
    ({key: b - a}). A key is the `on` value, or a tuple of them when `on` names several
    columns; runs of one side that share a key are averaged."""
    on = _list(on)
    _need(df, [metric, by, *on])

    def side(value) -> dict:
        d = df[(df[by] == value) & df[metric].notna()]
        out: dict = {}
        for key, g in d.groupby(on, dropna=False, sort=True):
            key = key if isinstance(key, tuple) else (key,)
            out[_key(key)] = float(g[metric].astype(float).mean())
        return out

    return _pair(side(a), side(b), metric=metric, by=by, a=a, b=b, on=on)


def per_question(run_dir: str | Path, split: str = "heldout", model: str = "trained") -> dict[str, float]:
    """{question_id: accuracy} of one run, from its eval.json ``results[split][model][per_question]``."""
    path = Path(run_dir) / "eval.json"
    try:
        results = json.loads(path.read_text())["results"]
        pq = results[split][model]["per_question"]
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no eval.json (the run did not evaluate)") from None
    except KeyError as e:
        raise ValueError(f"{path}: no results[{split!r}][{model!r}]['per_question'] (missing {e}); "
                       "runs recorded before eval.json held per-question accuracy cannot be paired by question") from None  # fmt: skip
    return {str(q): (sum(v) / len(v) if isinstance(v, list) else float(v)) for q, v in pq.items()}


def paired_questions(df, by: str, a, b, split: str = "heldout", model: str = "trained", on=("train.seed",)) -> dict[str, Any]:
    """Like `paired`, at (seed, question) level: each run's per-question accuracy from its
    eval.json, configuration b minus a for every (on..., question_id) present in both, so the
    interval reflects the question-level pairing. Keys are tuples (on values..., question_id)."""
    on = _list(on)
    _need(df, [by, *on, "run_dir"])

    def side(value) -> dict:
        cells: dict[tuple, list[float]] = {}
        for _, row in df[df[by] == value].iterrows():
            for q, acc in per_question(row["run_dir"], split, model).items():
                cells.setdefault((*(_py(row[c]) for c in on), q), []).append(acc)
        return {k: sum(v) / len(v) for k, v in sorted(cells.items(), key=lambda kv: tuple(map(str, kv[0])))}

    return _pair(side(a), side(b), metric=f"eval/{split}/{model}/per_question", by=by, a=a, b=b, on=[*on, "question_id"])
