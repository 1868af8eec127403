"""Run a named ablation suite from experiments/ as one Hydra multirun, then tabulate and plot it.

    python sweep.py diversity_ablation                 # run the suite, then summarise it
    python sweep.py diversity_ablation debug=tiny      # extra overrides go to every job
    python sweep.py diversity_ablation --summarize-only multirun/diversity_ablation/<time>

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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("suite", help="name of a file in experiments/ (without .yaml)")
    ap.add_argument("overrides", nargs="*", help="extra Hydra overrides for every job")
    ap.add_argument("--summarize-only", metavar="SWEEP_DIR", help="only rebuild the summary of a finished sweep")
    args = ap.parse_args()
    suite = load_suite(args.suite)
    if args.summarize_only:
        if not Path(args.summarize_only).is_dir():
            sys.exit(f"sweep.py: {args.summarize_only}: no such folder")
        if not summarize(Path(args.summarize_only), suite):
            sys.exit(f"sweep.py: no job holds a record (metrics.json) under {args.summarize_only}")
        return
    sweep_dir = ROOT / "multirun" / args.suite / time.strftime("%Y-%m-%d_%H-%M-%S")
    cmd = [sys.executable, str(ROOT / "run.py"), "-m", *suite["sweep"], *suite.get("fixed", []), *args.overrides,
           f"hydra.sweep.dir={sweep_dir}", "hydra.sweep.subdir=${hydra.job.num}"]
    print("+", " ".join(cmd), flush=True)
    rc = subprocess.call(cmd)
    if sweep_dir.exists():  # a partly failed sweep is summarised too: its failed jobs say why
        summarize(sweep_dir, suite)
    sys.exit(rc)


if __name__ == "__main__":
    main()
