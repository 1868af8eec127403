"""Run a named ablation suite from experiments/ as one Hydra multirun, then tabulate and plot it.

    python sweep.py diversity_ablation                 # run the suite, then summarise it
    python sweep.py diversity_ablation debug=tiny      # extra overrides go to every job
    python sweep.py diversity_ablation --summarize-only multirun/diversity_ablation/<time>
    python sweep.py teacher_choice --scale paper       # the suite's cluster size (its `paper:` block)

A suite is a yaml in experiments/: `sweep` (the multirun axes) and `fixed` (every job) at CPU size,
`also` (more multiruns into the same sweep folder, for an arm that is no point of the product:
the unselected full corpus; its overrides come after `fixed`, so they win), `paper` (the same
keys at the paper's size), the summary's `metrics` and `plot`, and `compare` (`by`: the column(s)
naming the arms, several joined by "/" with unset ones left out; `baseline`: the arm the others
are paired against), which
writes comparisons.md: each arm minus the baseline, paired over seeds and over (seed, question),
with its 95% interval and the smallest difference the suite can detect (2.8 x the paired s.e.:
80% power at the 5% level); and `predict` (`by`: the arm column, `target`: the trained score,
`predictors`: metrics known before training), which writes predictors.md: each predictor's
Spearman rank correlation with the target across the arms' means, with how many arms and seeds
it rests on. The suite's wall time goes to wall_time.txt.

The summary (summary.md, summary.csv, summary.png, runs.csv) is `ded.reporting.summary.summarize` over the
sweep directory, with the suite's metrics, plotted metric and description; it is read from each
job's record (metrics.json, config.yaml, .hydra/), so it can be rebuilt at any time. Every
`run.py -m` already ends with a default summary (the SweepSummary callback); this one replaces it.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent


def load_suite(name: str) -> dict:
    path = ROOT / "experiments" / f"{name}.yaml"
    if not path.exists():
        known = sorted(p.stem for p in (ROOT / "experiments").glob("*.yaml"))
        sys.exit(f"sweep.py: no suite {name!r} in experiments/; known suites: {known}")
    suite = yaml.safe_load(path.read_text())
    for key in ("sweep", "metrics"):
        if not suite.get(key):
            sys.exit(f"sweep.py: {path}: key {key!r} is missing or empty")
    return suite


def summarize(sweep_dir: Path, suite: dict) -> int:
    """The suite's summary of `sweep_dir`, printed; the number of jobs holding a record."""
    from ded.reporting.summary import summarize as write_summary

    table = write_summary(sweep_dir, suite["metrics"], suite.get("plot"), suite.get("description", ""))
    print((sweep_dir / "summary.md").read_text())
    return len(table)


MDE_FACTOR = 2.8  # z(0.975) + z(0.80): the difference a two-sided 5% test finds 80% of the time


def compare(sweep_dir: Path, suite: dict, df=None) -> list[dict]:
    """Each arm of suite['compare']['by'] minus the baseline arm, paired; written to comparisons.md/csv."""
    import pandas as pd

    from ded.reporting.results import load_runs, paired, paired_questions

    spec = suite.get("compare")
    if not spec:
        return []
    df = load_runs(sweep_dir, finished_only=True) if df is None else df.copy()  # df: the finished runs, read once by report()
    cols = [c for c in ([spec["by"]] if isinstance(spec["by"], str) else spec["by"]) if c in df]
    if df.empty or not cols:
        return []
    join = lambda r: "/".join(str(v) for v in r if pd.notna(v)) or None  # noqa: E731  e.g. selected/random
    df["arm"] = df[cols[0]] if len(cols) == 1 else df[cols].apply(join, axis=1)  # one column keeps its values' type
    by, base, metric = "arm", spec["baseline"], suite.get("plot") or "eval/heldout/trained/avg@k"
    rows = []
    for arm in sorted(set(df[by].dropna()) - {base}, key=str):
        for level, res in (("seeds", paired(df, metric, by, base, arm)), ("seed x question", paired_questions(df, by, base, arm))):
            rows.append({"arm": arm, "baseline": base, "paired over": level, "n pairs": res["n"], "difference": res["mean"],
                         "ci95_low": res["ci95_low"], "ci95_high": res["ci95_high"], "se": res["se"],
                         "detectable (80% power)": MDE_FACTOR * res["se"]})  # fmt: skip
    table = pd.DataFrame(rows)
    table.to_csv(sweep_dir / "comparisons.csv", index=False)
    lines = [f"# {metric}: each arm minus {by}={base}, paired", "", "| " + " | ".join(table.columns) + " |", "|" + "---|" * len(table.columns)]
    lines += ["| " + " | ".join(f"{v:+.3f}" if isinstance(v, float) else str(v) for v in r) + " |" for r in table.itertuples(index=False)]
    (sweep_dir / "comparisons.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return rows


def predict(sweep_dir: Path, suite: dict, df=None) -> list[dict]:
    """Spearman correlation across arms (their mean over seeds) between each predictor and the target: predictors.md/csv."""
    import pandas as pd
    from scipy.stats import spearmanr

    from ded.reporting.results import load_runs

    spec = suite.get("predict")
    if not spec:
        return []
    df = load_runs(sweep_dir, finished_only=True) if df is None else df.copy()  # df: the finished runs, read once by report()
    by, target = spec["by"], spec.get("target") or suite.get("plot") or "eval/heldout/trained/avg@k"
    preds = [p for p in spec["predictors"] if p in df]
    if df.empty or by not in df or target not in df or not preds:
        return []
    means = df.groupby(by)[[target, *preds]].mean(numeric_only=True)
    seeds = df.groupby(by).size()
    rows = []
    for p in preds:
        ok = means[[p, target]].dropna()
        rho, pval = spearmanr(ok[p], ok[target]) if len(ok) > 2 else (float("nan"), float("nan"))
        rows.append({"predictor": p, "spearman rho": float(rho), "p value": float(pval), "arms": len(ok),
                     "seeds per arm": f"{seeds.min()}-{seeds.max()}" if seeds.min() != seeds.max() else str(seeds.min())})  # fmt: skip
    table = pd.DataFrame(rows)
    table.to_csv(sweep_dir / "predictors.csv", index=False)
    per_arm = means.assign(seeds=seeds).reset_index()
    per_arm.to_csv(sweep_dir / "predictors_per_arm.csv", index=False)
    fmt = lambda v: f"{v:+.3f}" if isinstance(v, float) else str(v)  # noqa: E731
    lines = [f"# Predictors of {target} across {by} (Spearman over the arms' means)", "",
             "| " + " | ".join(table.columns) + " |", "|" + "---|" * len(table.columns)]  # fmt: skip
    lines += ["| " + " | ".join(fmt(v) for v in r) + " |" for r in table.itertuples(index=False)]
    lines += ["", "Per arm (mean over seeds):", "", "| " + " | ".join(per_arm.columns) + " |", "|" + "---|" * len(per_arm.columns)]
    lines += ["| " + " | ".join(fmt(v) for v in r) + " |" for r in per_arm.itertuples(index=False)]
    (sweep_dir / "predictors.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return rows


def report(sweep_dir: Path, suite: dict) -> int:
    """Summary, comparisons and predictors of a sweep folder; the number of jobs holding a record."""
    n = summarize(sweep_dir, suite)
    if suite.get("compare") or suite.get("predict"):
        from ded.reporting.results import load_runs

        runs = load_runs(sweep_dir, finished_only=True)
        compare(sweep_dir, suite, runs)
        predict(sweep_dir, suite, runs)
    return n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("suite", help="name of a file in experiments/ (without .yaml)")
    ap.add_argument("overrides", nargs="*", help="extra Hydra overrides for every job")
    ap.add_argument("--summarize-only", metavar="SWEEP_DIR", help="only rebuild the summary of a finished sweep")
    ap.add_argument("--scale", choices=["cpu", "paper"], default="cpu", help="cpu: the suite's sweep and fixed keys; paper: its paper block")
    args = ap.parse_args()
    suite = load_suite(args.suite)
    if args.summarize_only:
        if not Path(args.summarize_only).is_dir():
            sys.exit(f"sweep.py: {args.summarize_only}: no such folder")
        if not report(Path(args.summarize_only), suite):
            sys.exit(f"sweep.py: no job holds a record (metrics.json) under {args.summarize_only}")
        return
    if args.scale == "paper":
        if not suite.get("paper"):
            sys.exit(f"sweep.py: suite {args.suite!r} has no paper block")
        suite = {**suite, **suite["paper"]}
    sweep_dir = ROOT / "multirun" / f"{args.suite}{'_paper' if args.scale == 'paper' else ''}" / time.strftime("%Y-%m-%d_%H-%M-%S")
    rc, start = 0, time.monotonic()
    for i, axes in enumerate([suite["sweep"], *suite.get("also", [])]):  # one multirun each, one folder for all
        cmd = [sys.executable, str(ROOT / "run.py"), "-m", *suite.get("fixed", []), *axes, *args.overrides,
               f"hydra.sweep.dir={sweep_dir}", f"hydra.sweep.subdir={chr(97 + i)}${{hydra.job.num}}"]  # a0, a1..., b0...
        print("+", " ".join(cmd), flush=True)
        rc = subprocess.call(cmd) or rc
    if sweep_dir.exists():  # a partly failed sweep is summarised too: its failed jobs say why
        wall = time.monotonic() - start
        (sweep_dir / "wall_time.txt").write_text(f"{wall:.0f} s ({wall / 60:.1f} min) for {len(suite.get('also', [])) + 1} multirun(s)\n")
        report(sweep_dir, suite)
        print(f"sweep.py: {args.suite} took {wall / 60:.1f} min; folder {sweep_dir}")
    sys.exit(rc)


if __name__ == "__main__":
    main()
