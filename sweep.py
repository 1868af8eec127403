"""Run a named ablation suite from experiments/ as one Hydra multirun, then tabulate and plot it.

    python sweep.py diversity_ablation                 # run the suite, then summarise it
    python sweep.py diversity_ablation debug=tiny      # extra overrides go to every job
    python sweep.py diversity_ablation --summarize-only multirun/diversity_ablation/<time>
    python sweep.py teacher_choice --scale paper       # the suite's cluster size (its `paper:` block)

A suite is a yaml in experiments/: `sweep` (the multirun axes) and `fixed` (every job) at CPU size,
`also` (more multiruns into the same sweep folder, for an arm that is no point of the product:
the unselected full corpus), `paper` (the same keys at the paper's size), the summary's
`metrics` and `plot`, and `compare` (`by`: the column(s) naming the arms, the first one set wins;
`baseline`: the arm the others are paired against), which
writes comparisons.md: each arm minus the baseline, paired over seeds and over (seed, question),
with its 95% interval and the smallest difference the suite can detect (2.8 x the paired s.e.:
80% power at the 5% level).

The summary (summary.md, summary.csv, summary.png, runs.csv) is `ded.summary.summarize` over the
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
    from ded.summary import summarize as write_summary

    table = write_summary(sweep_dir, suite["metrics"], suite.get("plot"), suite.get("description", ""))
    print((sweep_dir / "summary.md").read_text())
    return len(table)


MDE_FACTOR = 2.8  # z(0.975) + z(0.80): the difference a two-sided 5% test finds 80% of the time


def compare(sweep_dir: Path, suite: dict) -> list[dict]:
    """Each arm of suite['compare']['by'] minus the baseline arm, paired; written to comparisons.md/csv."""
    import pandas as pd

    from ded.results import load_runs, paired, paired_questions

    spec = suite.get("compare")
    if not spec:
        return []
    df = load_runs(sweep_dir, finished_only=True)
    cols = [c for c in ([spec["by"]] if isinstance(spec["by"], str) else spec["by"]) if c in df]
    if df.empty or not cols:
        return []
    df["arm"] = df[cols].bfill(axis=1).iloc[:, 0]  # the first of the `by` columns that is set
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
        if not summarize(Path(args.summarize_only), suite):
            sys.exit(f"sweep.py: no job holds a record (metrics.json) under {args.summarize_only}")
        compare(Path(args.summarize_only), suite)
        return
    if args.scale == "paper":
        if not suite.get("paper"):
            sys.exit(f"sweep.py: suite {args.suite!r} has no paper block")
        suite = {**suite, **suite["paper"]}
    sweep_dir = ROOT / "multirun" / f"{args.suite}{'_paper' if args.scale == 'paper' else ''}" / time.strftime("%Y-%m-%d_%H-%M-%S")
    rc = 0
    for i, axes in enumerate([suite["sweep"], *suite.get("also", [])]):  # one multirun each, one folder for all
        cmd = [sys.executable, str(ROOT / "run.py"), "-m", *axes, *suite.get("fixed", []), *args.overrides,
               f"hydra.sweep.dir={sweep_dir}", f"hydra.sweep.subdir={chr(97 + i)}${{hydra.job.num}}"]  # a0, a1..., b0...
        print("+", " ".join(cmd), flush=True)
        rc = subprocess.call(cmd) or rc
    if sweep_dir.exists():  # a partly failed sweep is summarised too: its failed jobs say why
        summarize(sweep_dir, suite)
        compare(sweep_dir, suite)
    sys.exit(rc)


if __name__ == "__main__":
    main()
