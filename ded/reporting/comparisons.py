"""A suite's comparisons and predictors with the statistics of ded.reporting.stats, as tables,
markdown and a forest plot (``sweep.py`` writes them next to the summary). Predictors validated
across students (a rule fitted on one, scored on another): ded/reporting/predictors.py.

    from ded.reporting.comparisons import compare, predict
    rows = compare(runs, by=["name", "choice.diversity"], baseline="selected/random", within="corpus.size")

An arm is a value of the `by` column(s) (several joined by "/", unset ones left out); `within`
(optional) is a column every comparison is repeated at (a corpus size). Each declared comparison
(every arm minus the baseline, and `pairs`) is primary: its p value is Holm-corrected together
with the suite's other declared comparisons; the declared predictors are a second family (with
5 teachers the smallest exact Spearman p is 2/120, so in one family they could never pass and
would only double the comparisons' correction); `explore` pairs are reported with their own p
values, marked exploratory. The replicate key is the column
``replicate`` when it varies, else the first seed key that does (older suites replicate over
``train.seed``).
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

from ded.reporting.results import per_question
from ded.reporting.stats import ALPHA, crossed, exact_bounds, holm, replicate_t, spearman_bootstrap, spearman_exact

log = logging.getLogger(__name__)

REPLICATE_KEYS = ("replicate", "train.seed", "generation.seed")
DEFAULT_METRIC = "eval/heldout/trained/avg@k"


def replicate_key(df) -> str | None:
    """The column the suite replicates over: the first of REPLICATE_KEYS that varies."""
    for key in REPLICATE_KEYS:
        if key in df.columns and df[key].dropna().astype(str).nunique() > 1:
            return key
    return None


def with_arms(df, by) -> Any:
    """`df` with an ``arm`` column: the `by` value, or several joined by "/" (unset ones left out)."""
    import pandas as pd

    cols = [c for c in ([by] if isinstance(by, str) else by) if c in df.columns]
    if not cols:
        raise KeyError(f"none of the arm columns {by} is in the runs table")
    df = df.copy()
    join = lambda r: "/".join(str(v) for v in r if pd.notna(v)) or None  # noqa: E731  e.g. selected/random
    df["arm"] = df[cols].apply(join, axis=1) if len(cols) > 1 else df[cols[0]].map(lambda v: None if pd.isna(v) else str(v))
    return df


def split_model(metric: str) -> tuple[str, str]:
    """(split, model) of an evaluation metric ``eval/<split>/<model>/<name>``: whose per-question
    accuracies a comparison of that metric pairs (``final``: the run's last model, RL or trained)."""
    parts = metric.split("/")
    if len(parts) != 4 or parts[0] != "eval" or parts[2] not in ("base", "trained", "rl", "final") or not parts[3].startswith("avg@"):
        raise ValueError(f"compare: metric {metric!r} is not eval/<split>/<base|trained|rl|final>/avg@k: comparisons pair "
                         "per-question accuracies (a question's mean over its k samples), which only avg@k aggregates")  # fmt: skip
    return parts[1], parts[2]


def cells(df, rep: str | None, metric: str = DEFAULT_METRIC) -> Any:
    """One arm's replicate x question table of the accuracy behind `metric` (runs of one replicate
    averaged); also ``samples`` (per cell: eval.k) in ``.attrs``."""
    import pandas as pd

    split, model = split_model(metric)
    rows, runs_per = [], {}
    for _, run in df.iterrows():
        r = str(run[rep] if rep else 0)
        try:
            accs = per_question(run["run_dir"], split, model)
        except (FileNotFoundError, ValueError) as e:  # a finished run without per-question results: said, then left out
            log.warning("left out of the comparisons: %s", e)
            continue
        runs_per[r] = runs_per.get(r, 0) + 1
        rows += [{"replicate": r, "question": q, "acc": acc} for q, acc in accs.items()]
    if doubled := sorted(r for r, n in runs_per.items() if n > 1):
        log.warning("replicate(s) %s of one arm hold several runs, averaged: is a swept key missing from the arm columns?", doubled)
    if not rows:
        return pd.DataFrame()
    table = pd.DataFrame(rows).groupby(["replicate", "question"])["acc"].mean().unstack("question")
    k = pd.to_numeric(df.get("eval.k"), errors="coerce").dropna() if "eval.k" in df else pd.Series(dtype=float)
    table.attrs["k"] = int(k.iloc[0]) if len(k) else 1
    return table


def _complete(*tables):
    """The tables cut to the replicates and questions all of them hold in every cell (the
    complete crossed design), columns in one order, so cell [i, j] is the same pair in each."""
    reps = sorted(set.intersection(*(set(t.index) for t in tables)), key=str)
    qs = sorted(set.intersection(*(set(t.columns) for t in tables)), key=str)
    cut = [t.loc[reps, qs] for t in tables]
    full = [q for q in qs if not any(c[q].isna().any() for c in cut)]  # a question missing anywhere leaves every table
    out = [c[full] for c in cut]
    for o, t in zip(out, tables):
        o.attrs.update(t.attrs)
    return out


def arm_score(table) -> dict:
    """An arm's held-out score: the crossed estimate, or the exact (Clopper-Pearson) bound over its
    samples when every cell is equal (an arm that solved nothing gets [0, upper], not [0, 0])."""
    if table.empty:
        return {}
    (table,) = _complete(table)
    k = table.attrs.get("k", 1)
    values = table.to_numpy(dtype=float)
    n = values.size * k
    info = {"replicates": len(table), "questions": table.shape[1], "samples": n}
    if len(table) < 2 or table.shape[1] < 2:  # one replicate: no statement about a new replicate's model
        return {"score": float(values.mean()) if values.size else math.nan, "ci95_low": math.nan, "ci95_high": math.nan,
                "interval": "none (needs 2 replicates and 2 questions)", **info}  # fmt: skip
    if values.min() == values.max():
        hits = int(round(values.sum() * k))
        lo, hi = exact_bounds(hits, n)
        return {"score": float(values.mean()), "ci95_low": lo, "ci95_high": hi, "interval": "exact (Clopper-Pearson)", **info}
    est = crossed(values)
    return {"score": est.mean, "ci95_low": est.ci95_low, "ci95_high": est.ci95_high, "interval": "crossed", **info}


def difference(a, b) -> dict:
    """b minus a: the primary (crossed) and secondary (over replicates) estimates, on the replicates
    and questions both hold. Replicate r of one arm is paired with replicate r of the other."""
    a, b = _complete(a, b)
    out = {"replicates": len(a), "questions": a.shape[1]}
    if len(a) < 2 or a.shape[1] < 2:
        return out | {"difference": math.nan, "note": f"needs 2 replicates and 2 questions, has {len(a)} x {a.shape[1]}"}
    d = b.to_numpy(dtype=float) - a.to_numpy(dtype=float)
    primary, secondary = crossed(d), replicate_t(d.mean(axis=1))
    out |= {"difference": primary.mean, "ci95_low": primary.ci95_low, "ci95_high": primary.ci95_high, "p": primary.p,
            "df": primary.df, "detectable": primary.detectable, "var_replicate": primary.components["replicate"],
            "var_question": primary.components["question"], "var_cell": primary.components["cell"],
            "rep_ci95_low": secondary.ci95_low, "rep_ci95_high": secondary.ci95_high, "rep_detectable": secondary.detectable}  # fmt: skip
    if not primary.se > 0:  # every cell equal (two arms that both solved nothing): bound it by the arms' exact intervals
        k = min(a.attrs.get("k", 1), b.attrs.get("k", 1))
        # 97.5% each, so the difference of the two bounds holds with at least 95% (Bonferroni)
        la, ha = exact_bounds(int(round(a.to_numpy().sum() * k)), a.size * k, alpha=ALPHA / 2)
        lb, hb = exact_bounds(int(round(b.to_numpy().sum() * k)), b.size * k, alpha=ALPHA / 2)
        out |= {"ci95_low": lb - ha, "ci95_high": hb - la, "note": "no variation: bounds from the arms' exact intervals"}
    return out


def compare(df, by, baseline, within=None, pairs=(), explore=(), labels=None, metric: str = DEFAULT_METRIC) -> tuple[list[dict], list[dict]]:
    """(comparisons, arms) of `metric`'s per-question accuracies: every arm minus `baseline` and each
    of `pairs` ([a, b]: b minus a), primary; each of `explore`, exploratory; at every value of
    `within`. `labels` renames arms (``selected/none: first-P``); `baseline`, `pairs` and `explore`
    may use either name. Holm is not applied here (``holm_family`` does it over the suite's family)."""
    split_model(metric)  # a metric without per-question accuracies fails here, naming it
    if within and within not in df:
        raise KeyError(f"compare.within: no column {within!r} in the runs table")
    df = with_arms(df, by)
    if labels:
        df["arm"] = df["arm"].map(lambda a: labels.get(a, a))
        baseline = labels.get(str(baseline), baseline)
        pairs = [[labels.get(str(x), x) for x in p] for p in pairs]
        explore = [[labels.get(str(x), x) for x in p] for p in explore]
    rep = replicate_key(df)
    levels = [(None, df)] if not within else [(w, g) for w, g in df.groupby(within, sort=True, dropna=False)]
    comps, arms = [], []
    for level, g in levels:
        tables = {arm: cells(ga, rep, metric) for arm, ga in g.groupby("arm", sort=False)}
        for arm, t in tables.items():
            if not t.empty:
                arms.append({"within": level, "arm": arm} | arm_score(t))
        if str(baseline) not in tables:
            log.warning("no baseline arm %r%s (arms: %s): no comparisons", baseline, f" at {within}={level}" if within else "", sorted(tables))
        planned = [(str(baseline), a, "primary") for a in tables if a != str(baseline)]
        planned += [(str(a), str(b), "primary") for a, b in pairs] + [(str(a), str(b), "exploratory") for a, b in explore]
        planned = list(dict.fromkeys(planned))  # a declared pair that repeats a baseline comparison counts once
        for a, b, family in planned:
            if a in tables and b in tables and not tables[a].empty and not tables[b].empty:
                comps.append({"within": level, "arm": b, "baseline": a, "family": family} | difference(tables[a], tables[b]))
    for row in comps + arms:
        row["replicate key"] = rep
    return comps, arms


def predict(df, by: str, target: str, predictors, within: str | None = None) -> list[dict]:
    """Each predictor's Spearman rho with `target` across the arms' means: exact permutation p
    value, and a 95% bootstrap interval resampling each arm's replicates; with `within` (a column
    such as the student), one set of rows per value of it, each row saying which (``within``)."""
    if within:
        if within not in df:
            raise KeyError(f"predict.within: no column {within!r} in the runs table")
        return [{"within": str(level)} | r for level, g in df.groupby(within, sort=True) for r in predict(g, by, target, predictors)]
    import pandas as pd

    rows = []
    if by not in df or target not in df:
        return rows
    for p in [p for p in predictors if p in df]:
        d = df[[by]].assign(**{p: pd.to_numeric(df[p], errors="coerce"), target: pd.to_numeric(df[target], errors="coerce")}).dropna()
        means = d.groupby(by)[[p, target]].mean()
        rho, pval = spearman_exact(means[p], means[target])
        groups = {arm: (g[p].astype(float).to_numpy(), g[target].astype(float).to_numpy()) for arm, g in d.groupby(by)}
        lo, hi = spearman_bootstrap(groups)
        per_arm = replicates_per_arm(d.groupby(by).size().tolist())
        rows.append({"predictor": p, "spearman rho": rho, "ci95_low": lo, "ci95_high": hi, "p": pval, "family": "primary",
                     "arms": len(means), "replicates per arm": per_arm})  # fmt: skip
    return rows


def replicates_per_arm(counts: list[int]) -> str:
    """The replicates each arm holds, as a table cell: "5", or "3-5" when arms differ."""
    return "0" if not counts else str(min(counts)) if min(counts) == max(counts) else f"{min(counts)}-{max(counts)}"


def holm_family(*tables: list[dict]) -> None:
    """Add ``p (Holm)`` and ``survives Holm`` to every primary row of the given tables, corrected as one family."""
    primary = [r for t in tables for r in t if r.get("family") == "primary"]
    for r, adj in zip(primary, holm([r.get("p", math.nan) for r in primary])):
        r["p (Holm)"] = adj
        r["survives Holm"] = bool(adj < ALPHA) if not math.isnan(adj) else None


def forest_plot(comps: list[dict], path: Path, title: str, metric: str = DEFAULT_METRIC, within: str | None = None) -> None:
    """Each comparison's difference with its primary 95% interval, one panel per `within` level;
    exploratory ones in grey, primary ones that survive Holm filled. The numbers (difference,
    interval, p) stand in a column right of each panel, so no label crosses an interval or an axis."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in comps if not math.isnan(r.get("difference", math.nan))]
    if not rows:
        return
    levels = list(dict.fromkeys(r["within"] for r in rows))
    counts = [sum(1 for r in rows if r["within"] == lv) for lv in levels]
    fig, axes = plt.subplots(len(levels), 1, figsize=(7.5, 0.42 * sum(counts) + 0.9 * len(levels) + 1.0), sharex=True, squeeze=False,
                             gridspec_kw={"height_ratios": counts})  # one panel per level, stacked: one x scale to compare them on
    for ax, lv in zip(axes[:, 0], levels):
        sub = [r for r in rows if r["within"] == lv][::-1]
        for y, r in enumerate(sub):
            untested = r.get("survives Holm") is None  # exploratory, or no variation to test
            colour = "0.55" if untested else ("tab:blue" if r["survives Holm"] else "tab:orange")
            lo, hi = max(r["ci95_low"], -1.0), min(r["ci95_high"], 1.0)  # a difference of accuracies lies in [-1, 1]
            ax.plot([lo, hi], [y, y], color=colour, lw=2.2)
            ax.plot(r["difference"], y, "o", color=colour, mfc=colour if r.get("survives Holm") else "white", ms=7)
            ax.text(1.03, y, _forest_label(r), transform=ax.get_yaxis_transform(), va="center", fontsize=8, color="0.2", family="monospace")
        ax.text(1.03, len(sub) - 0.4, "difference [95% CI]   p", transform=ax.get_yaxis_transform(), fontsize=8, color="0.4", family="monospace")
        ax.axvline(0, color="black", lw=0.8)
        ax.set_ylim(-0.6, len(sub) - 0.2)
        ax.set_yticks(range(len(sub)), [f"{r['arm']} − {r['baseline']}" for r in sub], fontsize=9)
        ax.set_title("" if lv is None else f"{within or 'at'} = {lv}", fontsize=10, loc="left")
        ax.grid(axis="x", alpha=0.3)
    axes[-1, 0].set_xlabel(f"difference in {metric.split('/')[-1]} (95% CI)")
    fig.suptitle(f"{title}\nfilled blue: declared, survives Holm · orange: declared, does not · grey: exploratory or untestable",
                 fontsize=10)  # fmt: skip
    fig.tight_layout()
    fig.savefig(path, dpi=130, bbox_inches="tight")
    plt.close(fig)


def _forest_label(r: dict) -> str:
    """`+0.055 [-0.025, +0.135]  p(Holm) 1` for a declared comparison, `p 0.04` for an exploratory one."""
    p = r.get("p (Holm)") if r.get("survives Holm") is not None else r.get("p")
    p_txt = "" if p is None or p != p else f"  p{'(Holm)' if r.get('survives Holm') is not None else ''} {p:.2g}"
    return f"{r['difference']:+.3f} [{r['ci95_low']:+.3f}, {r['ci95_high']:+.3f}]{p_txt}"


def load_comparisons(path: Path) -> list[dict]:
    """comparisons.csv back as forest_plot's rows: an empty p, Holm verdict or level is None again."""
    import pandas as pd

    df = pd.read_csv(path, keep_default_na=False, na_values=[""])  # an arm named "none" stays a name
    return [{k: None if k in ("p", "p (Holm)", "survives Holm", "within") and v != v else v for k, v in r.items()} for r in df.to_dict("records")]


if __name__ == "__main__":  # redraw a suite's forest.png from its comparisons.csv: python -m ded.reporting.comparisons CSV TITLE [WITHIN]
    import sys

    csv, title, *rest = sys.argv[1:]
    forest_plot(load_comparisons(Path(csv)), Path(csv).with_name("forest.png"), title, within=rest[0] if rest else None)
