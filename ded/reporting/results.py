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
from natsort import natsort_keygen, natsorted, ns

from ded.reporting.offline import OfflineRun, nested_media, offline_runs, read_run
from ded.reporting.tracking import sync_command

log = logging.getLogger(__name__)

FIXED_COLUMNS = ("run_dir", "status", "overrides")
# Where the run went in W&B (metrics.json, or the W&B run itself): in every table, None where the source does not know.
WANDB_COLUMNS = ("wandb/group", "wandb/name", "wandb/job_type", "wandb/sweep_dir", "wandb/run_dir", "wandb/sync", "wandb/url", "wandb/error")
# Metric names that were renamed: a record written before the rename also gets the new name.
RENAMED = {"train/train_loss": "train/loss"}
_ERROR_LINE = re.compile(r"^(?:\[[^\]]*\])*\[ERROR\]\s*-\s*|^error:\s*", re.IGNORECASE)


# ---------------------------------------------------------------- reading one record


def flatten(tree: Mapping) -> dict[str, Any]:
    """{"a": {"b": 1, "c": [1, 2]}} -> {"a.b": 1, "a.c": [1, 2]} (``pandas.json_normalize``): nested
    mappings become dotted keys, lists stay values, empty mappings vanish."""
    import pandas as pd

    return pd.json_normalize(dict(tree)).to_dict("records")[0] if tree else {}


def sortable(name: str) -> str:
    """`name` under W&B's rule for metric names its UI sorts and filters on (``^[_a-zA-Z][_a-zA-Z0-9]*$``;
    ``@`` and ``/`` fall outside it): ``@`` -> ``_at_``, any other such character -> ``_``
    (``eval/heldout/trained/avg@k`` -> ``eval_heldout_trained_avg_at_k``)."""
    return re.sub(r"[^_a-zA-Z0-9]", "_", name.replace("@", "_at_"))


def k_aliases(metrics: Mapping[str, Any], k: int | None) -> dict[str, Any]:
    """The k-free names of every metric whose name carries ``@<k>`` (the run's own k), each unless
    `metrics` already holds it: the alias with a literal ``k`` (``avg@4`` -> ``avg@k``, ``avg@4_se`` ->
    ``avg@k_se``, ``delta_avg@4`` -> ``delta_avg@k``) and its `sortable` name (``..._avg_at_k``)."""
    if k is None:
        return {}
    pattern = re.compile(rf"@{int(k)}(?=$|[_/])")
    out = {}
    for name, value in metrics.items():
        alias = pattern.sub("@k", name)
        if alias != name:
            out.update({a: value for a in (alias, sortable(alias)) if a not in metrics})
    return out


def with_sortable_k_free(metrics: Mapping[str, Any], k: int) -> dict[str, Any]:
    """`metrics` and, beside each name carrying ``@<k>``, its sortable k-free name: what the
    evaluation stage logs, so a dashboard needs no k and W&B can sort and filter on the score."""
    return {**metrics, **{n: v for n, v in k_aliases(metrics, k).items() if "@" not in n}}


def infer_k(config: Mapping[str, Any], metrics: Mapping[str, Any]) -> int | None:
    """The run's eval.k: from its config, else from its metrics (``eval_k``, ``eval/<split>/<model>/k``,
    or the one N of every ``avg@N`` name)."""
    k = config.get("eval.k")
    if isinstance(k, (int, float)) and not isinstance(k, bool) and not _isnan(k):
        return int(k)
    for name, value in metrics.items():
        if re.fullmatch(r"eval_k|eval/[^/]+/(trained|base)/k", name) and isinstance(value, (int, float)):
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
    flattened (columns in name order, so both sources give one order), the metrics keep their
    names and get their k-free aliases; every `WANDB_COLUMNS` column is there (None: not known)."""
    flat = dict(sorted(flatten(config or {}).items()))
    metrics = {k: v for k, v in metrics.items() if not isinstance(v, (Mapping, list))}
    for new, old in RENAMED.items():
        if new not in metrics and old in metrics:
            metrics[new] = metrics[old]
    metrics.update(k_aliases(metrics, infer_k(flat, metrics)))
    metrics.update({c: None for c in WANDB_COLUMNS if c not in metrics})
    row: dict[str, Any] = {
        "run_dir": str(run_dir),
        "status": metrics.get("run/status") or status or "incomplete",
        "overrides": list(overrides or []),
    }
    row.update({f"choice.{g}": c for g, c in sorted((choices or {}).items()) if not str(g).startswith("hydra") and c is not None})
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
    metrics = {**last_points(d / "history.jsonl"), **metrics}
    hydra_cfg = _read_yaml(d / ".hydra" / "hydra.yaml") or {}
    choices = ((hydra_cfg.get("hydra") or {}).get("runtime") or {}).get("choices") or {}
    status = None
    if "run/status" not in metrics:  # never finished: a recorded error says it failed
        status = "failed" if error_line(d) else "incomplete"
    return record_row(str(d), metrics, _read_yaml(d / "config.yaml") or {}, _read_yaml(d / ".hydra" / "overrides.yaml") or [],
                      choices, status)  # fmt: skip


def last_points(path: Path) -> dict[str, Any]:
    """The last value of every curve in a history.jsonl (what W&B's summary holds for a curve, so
    local and W&B rows agree); {} without one."""
    if not path.is_file() or not path.stat().st_size:
        return {}
    try:
        h = read_jsonl(path).drop(columns="step", errors="ignore")
    except ValueError as e:  # a line cut short by a crash: the curves are left out, the rest stands
        log.warning("%s: unreadable (%s); its curves are left out of the runs table", path, e)
        return {}
    return {k: _py(v) for k, v in h.ffill().iloc[-1].items() if v is not None and not _isnan(_py(v))} if len(h) else {}


def read_jsonl(path: str | Path):
    """A JSON-lines file as a DataFrame, values as written (no date or dtype guessing)."""
    import pandas as pd

    return pd.read_json(path, lines=True, dtype=False, precise_float=True)


# Paths in natural order (job 2 before job 10), by natsort.
natural_key = natsort_keygen(alg=ns.PATH)


def frame(rows: Iterable[dict]):
    """The runs DataFrame from rows (pandas keeps the columns in order of first appearance: the
    fixed columns, then choices, config and metrics)."""
    import pandas as pd

    rows = list(rows)
    return pd.DataFrame(rows) if rows else pd.DataFrame(columns=list(FIXED_COLUMNS))


def load_runs(root: str | Path, *, finished_only: bool = False):
    """One row per run record (a folder holding metrics.json) anywhere below `root`."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: no such folder")
    dirs = natsorted({m.parent for m in root.rglob("metrics.json")}, alg=ns.PATH)
    return _finished(frame(read_record(d) for d in dirs), finished_only)


def _finished(df, finished_only: bool):
    return df[df["status"] == "finished"].reset_index(drop=True) if finished_only and len(df) else df


def load_wandb_runs(path: str, group: str | None = None, *, finished_only: bool = False):
    """The runs of a W&B project (``entity/project``), optionally one group (a sweep), with the
    columns of `load_runs`: ``run_dir`` is the run's W&B path (``entity/project/id``), the config
    is flattened (its ``overrides`` and ``choices`` entries become ``overrides`` and
    ``choice.<group>``) and the summary's metrics keep their names (curves, images and tables,
    which W&B also keeps in the summary, are left out as in metrics.json)."""
    import wandb

    runs = wandb.Api().runs(path, filters={"group": group} if group else None, lazy=False)
    return _finished(frame(wandb_row(r) for r in runs), finished_only)


def load_wandb_offline(root: str | Path, *, finished_only: bool = False):
    """The offline W&B runs below `root` (``offline-run-*/run-*.wandb``, read by
    ded.reporting.offline) with the columns of `load_runs`, exactly as `load_wandb_runs` gives
    them once synced: the W&B way of reading a sweep, without a server. ``run_dir`` is the
    offline run folder."""
    return _finished(frame(wandb_row(r) for r in offline_runs(root)), finished_only)


def wandb_row(run) -> dict[str, Any]:
    """One W&B run as a runs-table row: a public-API ``Run`` or an offline `OfflineRun`."""

    config = {k: v for k, v in dict(run.config).items() if not k.startswith("_")}
    overrides = config.pop("overrides", None) or []
    choices = config.pop("choices", None) or {}
    sweep_dir = config.pop("sweep_dir", None)  # the tracker's, beside the resolved config; metrics.json: wandb/sweep_dir
    offline = isinstance(run, OfflineRun)
    if offline:
        summary, history, where = nested_media(run.summary), run.history_keys, str(run.dir)
    else:
        summary, keys = dict(run.summary_metrics), getattr(run, "history_keys", None) or {}
        history = set((json.loads(keys) if isinstance(keys, str) else keys).get("keys", {}))
        where = "/".join(run.path)
    # wandb's own keys and the curves' x axes (<prefix>/step, see Tracker.log) are not metrics
    metrics = {k: v for k, v in summary.items() if not k.startswith("_") and not (re.fullmatch(r"[^/]+/step", k) and (k in history or not history))}
    metrics.update({"wandb/group": getattr(run, "group", None), "wandb/name": getattr(run, "name", None),
                    "wandb/job_type": getattr(run, "job_type", None), "wandb/sweep_dir": sweep_dir})  # fmt: skip
    if offline:
        metrics.update({"wandb/run_dir": where, "wandb/sync": sync_command([where], run.project, run.entity or None)})
    elif getattr(run, "url", None):
        metrics["wandb/url"] = run.url
    state = getattr(run, "state", None)  # finished | running | pending | crashed | failed | killed
    state = state if state == "finished" else "incomplete" if state in ("running", "pending", None) else "failed"
    return record_row(where, metrics, config, overrides, choices, state)


def newest_sweep(root: str | Path = "multirun") -> Path:
    """The newest sweep folder below `root` (a folder holding Hydra's ``multirun.yaml``, by its
    modification time): the notebooks' default, so they read one sweep, not every sweep ever run."""
    found = [m.parent for m in Path(root).rglob("multirun.yaml")] if Path(root).is_dir() else []
    if not found:
        raise FileNotFoundError(f"{root}: no sweep folder (one holding multirun.yaml) below it; set SWEEP to a sweep folder")
    return max(found, key=lambda d: (d / "multirun.yaml").stat().st_mtime)


def load_sweep(source: str = "local", sweep=None, *, project: str | None = None, group: str | None = None, finished_only: bool = True):
    """The runs table of one sweep, from the source the notebooks name: ``local`` (`load_runs` on the
    run records below `sweep`, a folder or a list of folders; None: `newest_sweep`),
    ``wandb-offline`` (`load_wandb_offline` on the same folders: what `wandb sync` uploads) or
    ``wandb`` (`load_wandb_runs` of W&B project `project`, ``entity/project``, group `group`)."""
    import pandas as pd

    if source == "wandb":
        if not project or not group:
            raise ValueError(f"source 'wandb' needs project ('entity/project', got {project!r}) and group (the sweep's W&B group, "
                             f"metrics.json wandb/group; got {group!r})")  # fmt: skip
        return load_wandb_runs(project, group, finished_only=finished_only)
    readers = {"local": load_runs, "wandb-offline": load_wandb_offline}
    if source not in readers:
        raise ValueError(f"source {source!r}: expected one of local, wandb-offline, wandb")
    folders = [newest_sweep()] if sweep is None else [sweep] if isinstance(sweep, (str, Path)) else list(sweep)
    return pd.concat([readers[source](f, finished_only=finished_only) for f in folders], ignore_index=True)


# ---------------------------------------------------------------- what a run logged besides its metrics


def _kind(run_dir: str | Path) -> str:
    """Where `run_dir` (a runs-table ``run_dir``) points: a local record, an offline W&B run, or a W&B run path."""
    d = Path(str(run_dir))
    if (d / "metrics.json").is_file():
        return "local"
    if d.name.startswith("offline-run-") and any(d.glob("run-*.wandb")):
        return "offline"
    if not d.exists() and str(run_dir).count("/") == 2:
        return "wandb"
    raise FileNotFoundError(f"{run_dir}: neither a run record (metrics.json), an offline W&B run folder, nor a W&B run path entity/project/id")


def _offline(run_dir):
    return read_run(next(Path(str(run_dir)).glob("run-*.wandb")))


def run_row(run_dir: str | Path) -> dict[str, Any]:
    """One run's row of the runs table, from where `run_dir` points (a run record, an offline W&B
    run folder, or a W&B run path entity/project/id)."""
    kind = _kind(run_dir)
    return read_record(run_dir) if kind == "local" else wandb_row(_offline(run_dir) if kind == "offline" else _api_run(run_dir))


def run_table(run_dir: str | Path, name: str):
    """A table the run logged (``tracker.table(name, ...)``) as a DataFrame, from where `run_dir`
    points: a run record (``tables/<name>.jsonl``; the corpus: ``corpus.jsonl``), an offline W&B run
    (its ``files/media/table/...table.json``) or a W&B run path (that file, downloaded). Empty when
    the run logged no such table."""
    import pandas as pd

    kind = _kind(run_dir)
    if kind == "local":
        path = Path(run_dir) / ("corpus.jsonl" if name == "corpus" else f"tables/{name.replace('/', '_')}.jsonl")
        return read_jsonl(path) if path.is_file() and path.stat().st_size else pd.DataFrame()
    if kind == "offline":
        entry, folder = nested_media(_offline(run_dir).summary).get(name), Path(str(run_dir)) / "files"
    else:
        import tempfile

        run = _api_run(run_dir)
        entry, folder = run.summary.get(name), Path(tempfile.mkdtemp(prefix="ded-wandb-"))
        if isinstance(entry, Mapping) and entry.get("path"):
            run.file(entry["path"]).download(root=str(folder), replace=True)
    if not isinstance(entry, Mapping) or not entry.get("path"):
        return pd.DataFrame()
    table = json.loads((folder / entry["path"]).read_text())
    return pd.DataFrame(table["data"], columns=table["columns"])


def eval_record(run_dir: str | Path) -> dict:
    """The run's eval.json (provenance and results, per-question accuracies included): the file in a
    run record, or the ``eval.json`` of the run's evaluation artifact (an offline run's staged copy,
    or downloaded from W&B)."""
    kind = _kind(run_dir)
    if kind == "local":
        path = Path(run_dir) / "eval.json"
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no eval.json (the run did not evaluate)")
        return json.loads(path.read_text())
    if kind == "offline":
        arts = [a for a in _offline(run_dir).artifacts if a["type"] == "evaluation"]
        staged = arts[-1]["files"].get("eval.json") if arts else None
        if not staged or not Path(staged).is_file():
            raise FileNotFoundError(f"{run_dir}: no evaluation artifact with a staged eval.json "
                                    "(the run did not evaluate, or it was synced and its staging copy removed)")
        return json.loads(Path(staged).read_text())
    arts = [a for a in _api_run(run_dir).logged_artifacts() if a.type == "evaluation"]
    if not arts:
        raise FileNotFoundError(f"{run_dir}: no evaluation artifact (the run did not evaluate)")
    return json.loads(Path(arts[-1].get_entry("eval.json").download()).read_text())


def run_history(run_dir: str | Path):
    """The run's curves (``tracker.log(..., step=...)``) as a DataFrame with a ``step`` column: a run
    record's history.jsonl, or the W&B history rows that carry a ``<prefix>/step`` axis (offline
    run or W&B run path)."""
    import pandas as pd

    kind = _kind(run_dir)
    if kind == "local":
        path = Path(run_dir) / "history.jsonl"
        return read_jsonl(path) if path.is_file() and path.stat().st_size else pd.DataFrame()
    rows = _offline(run_dir).history if kind == "offline" else list(_api_run(run_dir).scan_history())
    out = []
    for r in rows:
        axes = [k for k in r if k.endswith("/step") and not k.startswith("_")]
        if axes:  # a curve point (the images and tables advance W&B's own step, without an axis)
            out.append({"step": r[axes[0]], **{k: v for k, v in r.items() if not k.startswith("_") and k not in axes}})
    return pd.DataFrame(out)


def _api_run(path):
    import wandb

    return wandb.Api().run(str(path))


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
    """{question_id: accuracy} of one run, from its eval.json ``results[split][model][per_question]``.
    ``model="final"`` is the run's last model, as the evaluation logs ``eval/<split>/final/...``: the RL
    model where one was evaluated, else the trained one."""
    path = Path(str(run_dir)) / "eval.json" if _kind(run_dir) == "local" else f"{run_dir} (its evaluation artifact's eval.json)"
    try:
        res = eval_record(run_dir)["results"][split]
        if model == "final":
            model = "rl" if "rl" in res else "trained"
        pq = res[model]["per_question"]
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
