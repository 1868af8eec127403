"""The summary of a sweep: one table row per job, the failed jobs and why, one figure.

    python -m ded.reporting.summary multirun/2026-01-01/12-00-00-abc123      # (re)build it any time

`summarize(sweep_dir)` writes into the sweep folder:

- ``runs.csv``: the full `ded.reporting.results.load_runs` table (config, choices, every metric);
- ``summary.csv`` / ``summary.md``: one row per job holding a record (its folder, one column per
  swept override key, status, the chosen metrics in their k-free ``@k`` form), per-configuration
  means over seeds when the sweep has a seed axis, and a "Failed jobs" section naming every job
  folder whose record is missing or failed, with the reason: the exception its record holds
  (``run/error``, written by ded.pipeline), else its run.log's error line;
- ``summary.png``: the main metric per configuration with error bars (mean over seeds ± s.e.
  when ``train.seed`` or ``generation.seed`` varies, else each run's own ± s.e.).

`SweepSummary` is the Hydra callback (conf/hydra/default.yaml) that calls it at the end of every
``python run.py -m ...``. Hydra 1.3 calls ``on_multirun_end`` only when every job succeeded: a
job that raises lets the basic launcher run the rest of its batch, then the sweep re-raises
the first failure and exits 1; a job that calls ``sys.exit`` (run.py's user errors, status 2)
stops the sweep at once, later jobs never start. Either way the callback still writes the
summary from an exit hook, noting how the sweep ended; it never changes the exit status.
"""

from __future__ import annotations

import atexit
import logging
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hydra.core.utils import JobStatus
from hydra.experimental.callback import Callback

from ded.reporting.results import aggregate, error_line, load_runs, natural_key
from ded.reporting.tracking import QUIET

log = logging.getLogger(__name__)

MAIN_METRIC = "eval/heldout/trained/avg@k"
DEFAULT_METRICS = (
    MAIN_METRIC,
    "eval/heldout/trained/avg@k_se",
    "eval/heldout/delta_avg@k",
    "corpus/examples",
    "corpus/diversity/levenshtein/char",
    "train/train_loss",
    "analysis/corpus/trained_entropy",
    "analysis/pca_shift/trained_vs_base",
)
SEED_KEYS = ("replicate", "train.seed", "generation.seed")  # the replicate key first: it redraws the others
FILES = ("runs.csv", "summary.csv", "summary.md", "summary.png")


@dataclass
class Job:
    dir: Path
    name: str
    overrides: list[str] = field(default_factory=list)
    record: bool = False  # holds metrics.json
    status: str = "no record"
    reason: str = ""


def split_override(o: str) -> tuple[str, str]:
    key, _, value = str(o).lstrip("+~").partition("=")
    return key, value


def find_jobs(sweep_dir: Path) -> list[Path]:
    """Every job folder of a sweep: its subfolders, and any deeper folder holding a record or
    Hydra's .hydra/ (a nested hydra.sweep.subdir), without the folders above those."""
    found = {p for p in sweep_dir.iterdir() if p.is_dir() and not p.name.startswith(".")}
    found |= {m.parent for m in sweep_dir.rglob("metrics.json")}
    found |= {h.parent for h in sweep_dir.rglob(".hydra") if h.is_dir() and h.parent != sweep_dir}
    found = {p for p in found if "wandb" not in p.relative_to(sweep_dir).parts}
    jobs = [p for p in found if not any(q != p and p in q.parents for q in found)]
    return sorted(jobs, key=lambda p: natural_key(str(p.relative_to(sweep_dir))))


def describe_jobs(sweep_dir: Path, runs) -> list[Job]:
    import yaml

    status = dict(zip(runs["run_dir"], runs["status"])) if len(runs) else {}
    recorded = dict(zip(runs["run_dir"], runs["run/error"])) if len(runs) and "run/error" in runs else {}  # the pipeline's exception
    jobs = []
    for d in find_jobs(sweep_dir):
        job = Job(d, str(d.relative_to(sweep_dir)))
        ov = d / ".hydra" / "overrides.yaml"
        try:
            job.overrides = [str(o) for o in (yaml.safe_load(ov.read_text()) or [])] if ov.is_file() else []
        except yaml.YAMLError:
            job.overrides = []
        job.record = str(d) in status
        err = recorded.get(str(d))
        err = " ".join(err.split()) if isinstance(err, str) and err.strip() else None
        if err is None and status.get(str(d)) != "finished":  # a record without run/error, or no record: its run.log's error line
            err = error_line(d)
        if job.record:
            job.status = status[str(d)]
            if job.status != "finished":
                job.reason = err or ("metrics.json says run/status=failed; run.log names no error" if job.status == "failed"
                                     else "metrics.json has no run/status: killed, or still running")  # fmt: skip
        else:
            if err:
                job.reason = f"{err} (stopped before writing metrics.json)"
            elif any(d.glob("*.log")):
                job.reason = "no metrics.json, and its log names no error (killed, or still running?)"
            else:
                job.reason = "no metrics.json and no log (the job never started, or its folder was emptied)"
        jobs.append(job)
    return jobs


def swept_keys(jobs: list[Job]) -> list[str]:
    """Override keys whose value differs between jobs (every key, when none differs), in the order
    they appear; paths/logger/hydra keys left out."""
    per_job = [dict(split_override(o) for o in j.overrides) for j in jobs]
    keys: dict[str, None] = {}
    for ov in per_job:
        keys.update(dict.fromkeys(k for k in ov if not k.startswith(QUIET)))
    varying = [k for k in keys if len({ov.get(k) for ov in per_job}) > 1]
    return varying or list(keys)


def _fmt(v: Any) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return ""
    if isinstance(v, bool):
        return str(v)
    if isinstance(v, float):
        return f"{v:.4g}"
    if hasattr(v, "item") and not isinstance(v, (list, tuple, str)):  # numpy scalars
        return _fmt(v.item())
    return str(v)


def _job_number(name: str) -> str:
    """Hydra's default job folder, ``<num>_<override_dirname>``, as its number (the table's key columns say the rest)."""
    num, sep, _ = str(name).partition("_")
    return num if sep and num.isdigit() else str(name)


def markdown_table(df) -> str:
    """`df` as a markdown table (pandas' to_markdown, each cell through `_fmt`). A "|" or a line break in a
    cell or a column name is escaped here: tabulate leaves them as they are, and they would split the row."""
    esc = lambda v: md_cell(_fmt(v))  # noqa: E731
    return df.rename(columns=esc).apply(lambda col: col.map(esc)).to_markdown(index=False, disable_numparse=True)


def md_cell(text: str) -> str:
    """A markdown table cell: "|" and line breaks escaped (tabulate leaves them; they would split the row)."""
    return text.replace("|", "\\|").replace("\n", " ")


def seed_axis(runs) -> str | None:
    """The seed key that varies across the sweep's runs (replicate first), or None."""
    for key in SEED_KEYS:
        if key in runs.columns and runs[key].dropna().astype(str).nunique() > 1:
            return key
    return None


def summarize(sweep_dir, metrics=None, plot=None, description: str = "", *, note: str = "", not_started=()):
    """Write runs.csv, summary.csv, summary.md and summary.png into `sweep_dir`; return the
    summary table (one row per job holding a record). `metrics`: the columns to show (k-free
    ``@k`` names work for every k; default: `DEFAULT_METRICS`, leaving out those no job has);
    `plot`: the metric drawn (default: the trained held-out avg@k); `note`: a line for the top
    of summary.md (the callback says there how a sweep that failed ended); `not_started`: the
    override lists of planned jobs that never ran (listed with the failed jobs)."""
    import pandas as pd

    sweep_dir = Path(sweep_dir)
    title = description or f"Sweep {'/'.join(sweep_dir.parts[-2:])}"
    runs = load_runs(sweep_dir)
    runs.to_csv(sweep_dir / "runs.csv", index=False)
    jobs = describe_jobs(sweep_dir, runs)
    keys = swept_keys(jobs)
    seed = seed_axis(runs)
    chosen = list(metrics) if metrics else list(DEFAULT_METRICS)

    by_dir = {r["run_dir"]: r for r in runs.to_dict("records")}
    rows = []
    for j in jobs:
        if not j.record:
            continue
        r, ov = by_dir[str(j.dir)], dict(split_override(o) for o in j.overrides)
        rows.append({"job": j.name, **{k: ov.get(k, "") for k in keys}, "status": j.status,
                     **{m: r.get(m) for m in chosen}, "overrides": " ".join(j.overrides)})  # fmt: skip
    table = pd.DataFrame(rows, columns=["job", *keys, "status", *chosen, "overrides"])
    if not metrics:  # the defaults: only what some job recorded
        table = table.drop(columns=[m for m in chosen if table[m].isna().all()])
    table.to_csv(sweep_dir / "summary.csv", index=False)

    main = plot or MAIN_METRIC
    figure = None
    (sweep_dir / "summary.png").unlink(missing_ok=True)
    if len(runs) and main in runs.columns and runs[main].notna().any():
        figure = plot_sweep(sweep_dir / "summary.png", runs, jobs, keys, seed, main, title)

    failed = [j for j in jobs if j.status != "finished"]
    md = [f"# {title}", ""]
    if note:
        md += [f"**{note}**", ""]
    md += [f"`{sweep_dir}`: {len(jobs)} job folders, {sum(j.status == 'finished' for j in jobs)} finished, "
           f"{len(failed)} failed or without a record. Metric names ending in `@k` use each run's own "
           f"`eval.k` ({_k_values(runs)}). All columns of every run: `runs.csv`.", ""]  # fmt: skip
    shown = table.drop(columns=["overrides"]).assign(job=[_job_number(n) for n in table["job"]])  # the swept keys have their columns
    md += [markdown_table(shown) if len(table) else "(no job holds a record: no metrics.json below this folder)"]
    if seed and len(table):
        md += ["", f"## Per configuration, over `{seed}`", ""]
        md += [markdown_table(per_configuration(runs, jobs, keys, seed, [m for m in table.columns if m in chosen], main))]
    md += ["", "## Failed jobs", ""]
    md += [f"- `{j.name}` ({' '.join(j.overrides) or 'no overrides'}): **{j.status}**: {j.reason}" for j in failed]
    md += [f"- ({' '.join(ov)}): **not started**: the multirun stopped before this job" for ov in not_started]
    if not failed and not not_started:
        md += ["None."]
    if figure:
        md += ["", f"![{main}](summary.png)", "", figure]
    elif len(runs):
        md += ["", f"No figure: no job recorded `{main}`."]
    (sweep_dir / "summary.md").write_text("\n".join(md) + "\n")
    return table


def _k_values(runs) -> str:
    if "eval.k" not in runs.columns or runs["eval.k"].isna().all():
        return "k not recorded"
    ks = sorted({int(k) for k in runs["eval.k"].dropna()})
    return "k=" + ", ".join(map(str, ks))


def _config_frame(runs, jobs: list[Job], keys: list[str], seed: str | None):
    """The runs (those with a job folder) with one string column per swept non-seed key."""
    config_keys = [k for k in keys if k not in SEED_KEYS]
    by_dir = {str(j.dir): dict(split_override(o) for o in j.overrides) for j in jobs}
    d = runs[runs["run_dir"].isin(list(by_dir))].copy()
    for k in config_keys:
        d[f"cfg:{k}"] = [by_dir[r].get(k, "") for r in d["run_dir"]]
    return d, config_keys


def _pm(mean: float, se: float) -> str:
    if math.isnan(mean):
        return ""
    if math.isnan(se):
        return f"{mean:.4g}"
    return f"{mean:.4g} ± {0 if se < 1e-12 * max(1.0, abs(mean)) else se:.2g}"  # float noise of equal values is 0


def per_configuration(runs, jobs, keys, seed, metrics, main):
    """One row per configuration (swept non-seed keys): n seeds and mean ± se of each metric, and
    the main metric's 95% t-interval."""
    import pandas as pd

    d, config_keys = _config_frame(runs, jobs, keys, seed)
    by = [f"cfg:{k}" for k in config_keys] or ["__all"]
    if not config_keys:
        d["__all"] = "all runs"
    out = None
    for m in [m for m in metrics if not m.endswith("_se") and m in d.columns and d[m].notna().any()]:
        agg = aggregate(d, m, by, seed=seed)
        cols = agg[by].copy()
        cols[m] = [_pm(a, s) for a, s in zip(agg["mean"], agg["se"])]
        if m == main:
            cols["n"] = agg["n"].values
            ci = zip(agg["ci95_low"], agg["ci95_high"])
            # equal values give a zero-width t interval, which is no statement of uncertainty: comparisons.md has the exact bound
            cols[f"{m} 95% CI"] = ["" if math.isnan(lo) else "no variation" if hi - lo < 1e-12 else f"[{lo:.3g}, {hi:.3g}]" for lo, hi in ci]
        out = cols if out is None else out.merge(cols, on=by, how="outer")
    if out is None:
        return pd.DataFrame()
    order = list(dict.fromkeys(zip(*[d[c] for c in by])))  # the sweep's order, not the alphabet
    out = out.set_index(by).reindex(pd.MultiIndex.from_tuples(order, names=by) if len(by) > 1 else [o[0] for o in order]).reset_index()
    return out.rename(columns={**{f"cfg:{k}": k for k in config_keys}, "__all": "configuration"})


def _hue_label(keys: list[str], values) -> str:
    """A legend entry: the set keys only (an arm that leaves a key unset shows no "key=")."""
    if len(keys) == 1:
        return str(values[0])
    return ", ".join(f"{k}={v}" for k, v in zip(keys, values) if v != "")


def plot_sweep(path: Path, runs, jobs: list[Job], keys: list[str], seed: str | None, metric: str, title: str) -> str:
    """summary.png: `metric` per configuration (x: the first swept key; colours: the others),
    error bars ± 1 s.e.; seed values as dots when the sweep has a seed axis. Returns the caption."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    d, config_keys = _config_frame(runs, jobs, keys, seed)
    x_key, hue_keys = (config_keys[0], config_keys[1:]) if config_keys else (None, [])
    if x_key is None:  # nothing swept but seeds (or a single job)
        d["cfg:__x"] = "all runs" if seed else [Path(r).name for r in d["run_dir"]]
        x_col = "cfg:__x"
    else:
        x_col = f"cfg:{x_key}"
    hue_cols = [f"cfg:{k}" for k in hue_keys]
    d["__hue"] = [_hue_label(hue_keys, vals) for vals in zip(*[d[c] for c in hue_cols])] if hue_cols else ""

    # Every configuration a job folder names, failed ones included (they show as "failed").
    job_cfg = []
    for j in jobs:
        ov = dict(split_override(o) for o in j.overrides)
        xv = ov.get(x_key, "") if x_key else ("all runs" if seed else j.dir.name)
        hv = _hue_label(hue_keys, [ov.get(k, "") for k in hue_keys]) if hue_keys else ""
        job_cfg.append((xv, hv, j.status == "finished" and j.record))
    xs = list(dict.fromkeys(x for x, _, _ in job_cfg))
    hues = list(dict.fromkeys(h for _, h, _ in job_cfg))

    valued = d[d[metric].notna()]
    agg = aggregate(valued, metric, [x_col, "__hue"], seed=seed) if len(valued) else None
    stats = {(r[x_col], r["__hue"]): r for r in agg.to_dict("records")} if agg is not None else {}
    own_se = f"{metric}_se" if f"{metric}_se" in d.columns else None
    use_own = not seed and own_se is not None and all(r["n"] == 1 for r in stats.values())
    if use_own:
        for (xv, hv), r in stats.items():
            sel = valued[(valued[x_col] == xv) & (valued["__hue"] == hv)]
            r["se"] = float(sel[own_se].iloc[0]) if sel[own_se].notna().any() else math.nan

    n_hue = max(1, len(hues))
    width = min(0.8 / n_hue, 0.55)
    fig, ax = plt.subplots(figsize=(max(4.8, 1.2 * len(xs) * (1 + 0.3 * (n_hue - 1)) + 2.2), 4.4))
    colors = plt.get_cmap("tab10").colors
    tops, bottoms, labelled = [0.0], [0.0], set()
    for hi, hv in enumerate(hues):
        offs = (hi - (n_hue - 1) / 2) * width
        for xi, xv in enumerate(xs):
            pos = xi + offs
            r = stats.get((xv, hv))
            if r is None or math.isnan(r["mean"]):
                if any(x == xv and h == hv for x, h, _ in job_cfg):
                    ok = any(x == xv and h == hv and fin for x, h, fin in job_cfg)
                    ax.text(pos, 0, "n/a" if ok else "failed", ha="center", va="bottom", fontsize=8, fontweight="bold",
                            color="gray" if ok else "firebrick", rotation=0 if width >= 0.3 else 90)  # fmt: skip
                continue
            se = r["se"] if not math.isnan(r["se"]) else 0.0
            ax.bar(pos, r["mean"], width * 0.92, color=colors[hi % len(colors)], label=None if hv in labelled else hv,
                   yerr=se if se else None, capsize=4, error_kw={"elinewidth": 1.2, "ecolor": "0.25"}, zorder=2)  # fmt: skip
            if seed:
                sel = valued[(valued[x_col] == xv) & (valued["__hue"] == hv)]
                pts = sel[metric].astype(float).to_numpy()
                jitter = np.linspace(-width * 0.22, width * 0.22, len(pts)) if len(pts) > 1 else np.zeros(len(pts))
                ax.scatter(pos + jitter, pts, s=14, color="black", zorder=3, alpha=0.75, linewidths=0)
                tops.append(float(pts.max()))
                bottoms.append(float(pts.min()))
            top = r["mean"] + se
            label = f"{r['mean']:.3g}" + (f"\nn={r['n']}" if seed else "")
            ax.annotate(label, (pos, max(top, r["mean"])), xytext=(0, 3), textcoords="offset points",
                        ha="center", va="bottom", fontsize=7.5, color="0.2")
            tops.append(top)
            bottoms.append(r["mean"] - se)
            labelled.add(hv)
    lo, hi_ = min(bottoms), max(tops)
    span = (hi_ - lo) or 1.0
    ax.set_ylim(lo - (0.05 * span if lo < 0 else 0), hi_ + 0.18 * span)
    ax.set_xlim(-0.7, len(xs) - 0.3)
    long_ticks = max(map(len, xs), default=0) >= 14
    ax.set_xticks(range(len(xs)), xs, rotation=20 if long_ticks else 0, ha="right" if long_ticks else "center")
    ax.set_xlabel(x_key or ("" if seed else "job"))
    ax.set_ylabel(f"{metric}\n(mean ± 1 s.e.)" if seed else f"{metric}\n(± 1 s.e.)" if use_own else metric)
    ax.grid(axis="y", alpha=0.3, zorder=0)
    ax.spines[["top", "right"]].set_visible(False)
    if hue_keys:
        ax.legend(title=", ".join(hue_keys), fontsize=8, title_fontsize=8, frameon=False, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    if seed:
        caption = f"Bars: mean over {seed} (dots: one run each); error bars: ± 1 s.e. across seeds."
    elif use_own:
        caption = "Error bars: ± 1 s.e. of each run (over its evaluation questions)."
    else:
        several = any(r["n"] > 1 for r in stats.values())
        caption = ("Error bars: ± 1 s.e. across the runs of a configuration." if several
                   else "No error bars: the metric has no standard error.")  # fmt: skip
    if "@k" in metric:
        caption += f" @k: each run's eval.k ({_k_values(d[d[metric].notna()])})."
    n_failed = sum(1 for j in jobs if j.status != "finished")
    sub = caption + (f" {n_failed} failed job(s): see summary.md." if n_failed else "")
    import textwrap

    sub = textwrap.fill(sub, width=int(fig.get_figwidth() * 13))  # the caption stays as wide as the figure
    ax.set_title(f"{title}\n" + "\n" * sub.count("\n"), fontsize=11, loc="left")
    ax.text(0, 1.02, sub, transform=ax.transAxes, fontsize=8, color="0.35", va="bottom")
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
    return caption


class SweepSummary(Callback):
    """Hydra callback: write the sweep's summary (see `summarize`) into its folder when a
    multirun ends, and log where it is. Registered in conf/hydra/default.yaml. A sweep in which
    a job failed never reaches ``on_multirun_end`` (Hydra 1.3), so the summary is also written
    from an exit hook then. Never raises: a summary that cannot be written is one warning."""
    def __init__(self, metrics=None, plot=None, description: str = "") -> None:
        self.metrics = list(metrics) if metrics else None
        self.plot = plot
        self.description = description
        self.sweep_dir: str | None = None
        self.running: int | None = None  # the job in progress (basic launcher: same process)
        self.planned: list[list[str]] | None = None
        self.done = False

    def on_multirun_start(self, config, **kwargs: Any) -> None:
        self.sweep_dir = str(config.hydra.sweep.dir)
        self.done = False
        self.planned = planned_jobs(config)
        # The exit hook runs after threading's shutdown, when a first import of
        # concurrent.futures.thread (pandas imports it) would fail: import it now (15 ms).
        import concurrent.futures.thread  # noqa: F401

        atexit.register(self._at_exit)

    def on_job_start(self, config, **kwargs: Any) -> None:
        self.running = config.hydra.job.get("num")

    def on_job_end(self, config, job_return, **kwargs: Any) -> None:
        self.running = None
        err = getattr(job_return, "_return_value", None)
        if getattr(job_return, "status", None) == JobStatus.FAILED and isinstance(err, BaseException):
            # Hydra 1.3 keeps a job's exception out of its run.log; put it there (file only: the
            # console gets Hydra's own report), so the summary can say why a job failed that
            # stopped before its record could hold run/error (ded.pipeline records it after that).
            record = logging.LogRecord("ded", logging.ERROR, __file__, 0, "job failed: %s: %s", (type(err).__name__, err),
                                       (type(err), err, err.__traceback__))  # fmt: skip
            for handler in logging.getLogger().handlers:
                if isinstance(handler, logging.FileHandler):
                    handler.handle(record)

    def on_multirun_end(self, config, **kwargs: Any) -> None:
        self.done = True
        self._write("")

    def _at_exit(self) -> None:
        if self.done or self.sweep_dir is None:
            return
        self.done = True
        if self.running is not None:
            note = (f"The multirun stopped in job {self.running}: it exited (sys.exit, e.g. a user error, or an interrupt), "
                    "and Hydra starts no job after that one.")  # fmt: skip
        else:
            note = "The multirun ended with an error: a job failed (Hydra runs the rest of its batch, then stops)."
        self._write(note, self._not_started())

    def _not_started(self) -> list[list[str]]:
        if not self.planned:
            return []
        import yaml

        seen = []
        for ov in Path(self.sweep_dir).glob("**/.hydra/overrides.yaml"):
            try:
                seen.append([str(o) for o in yaml.safe_load(ov.read_text()) or []])
            except (OSError, yaml.YAMLError):
                pass
        return [p for p in self.planned if p not in seen]

    def _write(self, note: str, not_started=()) -> None:
        if self.sweep_dir is None or not Path(self.sweep_dir).is_dir():
            return
        try:
            summarize(self.sweep_dir, self.metrics, self.plot, self.description, note=note, not_started=not_started)
            msg = f"sweep summary: {Path(self.sweep_dir) / 'summary.md'} (table, failed jobs; summary.csv, runs.csv, summary.png)"
            if note:  # from the exit hook: Hydra's logging may be the failed job's; say it plainly
                print(f"[ded.reporting.summary] {msg}", file=sys.stderr, flush=True)
            else:
                log.info(msg)
        except Exception as e:  # noqa: BLE001 - the sweep's result stands without its summary
            msg = (f"sweep summary of {self.sweep_dir} not written ({type(e).__name__}: {e}); "
                   f"rebuild it with python -m ded.reporting.summary {self.sweep_dir}")
            if note:
                print(f"[ded.reporting.summary] WARNING {msg}", file=sys.stderr, flush=True)
            else:
                log.warning(msg)


def planned_jobs(config) -> list[list[str]] | None:
    """The override list of every job a basic-sweeper multirun will launch, in order; None when
    that cannot be worked out here (another sweeper, a glob() sweep that needs the config)."""
    try:
        from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
        from hydra.core.override_parser.overrides_parser import OverridesParser

        if "BasicSweeper" not in str(config.hydra.sweeper.get("_target_", "")):
            return None
        args = [f"{k}={v}" for k, v in (config.hydra.sweeper.get("params") or {}).items()]
        args += list(config.hydra.overrides.task)
        batches = BasicSweeper.split_arguments(OverridesParser.create().parse_overrides(args), None)
        return [list(job) for batch in batches for job in batch]
    except Exception:  # noqa: BLE001 - only a better note in the summary depends on it
        return None


def main(argv: list[str] | None = None) -> int:
    import argparse

    ap = argparse.ArgumentParser(description="(Re)build a sweep's summary (runs.csv, summary.csv/.md/.png) in its folder.")
    ap.add_argument("sweep_dir")
    ap.add_argument("--metric", action="append", dest="metrics", help="a column of the summary (repeatable; default: the usual set)")
    ap.add_argument("--plot", help=f"the metric drawn (default {MAIN_METRIC})")
    ap.add_argument("--description", default="")
    args = ap.parse_args(argv)
    if not Path(args.sweep_dir).is_dir():
        print(f"error: {args.sweep_dir}: no such folder", file=sys.stderr)
        return 2
    table = summarize(args.sweep_dir, args.metrics, args.plot, args.description)
    print((Path(args.sweep_dir) / "summary.md").read_text())
    return 0 if len(table) else 1


if __name__ == "__main__":
    sys.exit(main())
