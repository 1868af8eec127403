"""Run a named ablation suite from experiments/ as one Hydra multirun, then tabulate and plot it.

    python sweep.py diversity_ablation                 # run the suite, then summarise it
    python sweep.py diversity_ablation debug=tiny      # extra overrides go to every job
    python sweep.py diversity_ablation --summarize-only multirun/diversity_ablation/<time>

The summary (summary.md, summary.csv, summary.png) is written into the sweep directory, read
from each job's metrics.json and .hydra/overrides.yaml, so it can be rebuilt at any time.
"""

from __future__ import annotations

import argparse
import csv
import json
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


def summarize(sweep_dir: Path, suite: dict) -> list[dict]:
    rows = []
    for job in sorted(sweep_dir.iterdir(), key=lambda p: (len(p.name), p.name)):
        metrics_file = job / "metrics.json"
        if not job.is_dir() or not metrics_file.exists():
            continue
        overrides = yaml.safe_load((job / ".hydra" / "overrides.yaml").read_text()) if (job / ".hydra" / "overrides.yaml").exists() else []
        m = json.loads(metrics_file.read_text())
        rows.append({"job": job.name, "overrides": " ".join(overrides), **{k: m.get(k) for k in suite["metrics"]}})
    if not rows:
        sys.exit(f"sweep.py: no finished jobs (metrics.json) under {sweep_dir}")
    cols = ["job", "overrides", *suite["metrics"]]
    with open(sweep_dir / "summary.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=cols)
        w.writeheader()
        w.writerows(rows)
    fmt = lambda v: f"{v:.4g}" if isinstance(v, float) else ("" if v is None else str(v))  # noqa: E731
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(fmt(r[c]) for c in cols) + " |" for r in rows]
    (sweep_dir / "summary.md").write_text(f"# {suite.get('description', '')}\n\n" + "\n".join(lines) + "\n")
    if suite.get("plot"):
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        key = suite["plot"]
        se = rows[0].get(key + "_se") is not None and key + "_se"
        fig, ax = plt.subplots(figsize=(max(5, 1.2 * len(rows)), 3.5))
        vals = [r[key] if r[key] is not None else float("nan") for r in rows]
        ax.bar(range(len(rows)), vals, yerr=[r[se] for r in rows] if se else None, capsize=3)
        ax.set_xticks(range(len(rows)), [r["overrides"].replace(" ", "\n") for r in rows], fontsize=7)
        ax.set(ylabel=key, title=suite.get("description", ""))
        fig.savefig(sweep_dir / "summary.png", dpi=110, bbox_inches="tight")
    print("\n".join(lines))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("suite", help="name of a file in experiments/ (without .yaml)")
    ap.add_argument("overrides", nargs="*", help="extra Hydra overrides for every job")
    ap.add_argument("--summarize-only", metavar="SWEEP_DIR", help="only rebuild the summary of a finished sweep")
    args = ap.parse_args()
    suite = load_suite(args.suite)
    if args.summarize_only:
        summarize(Path(args.summarize_only), suite)
        return
    sweep_dir = ROOT / "multirun" / args.suite / time.strftime("%Y-%m-%d_%H-%M-%S")
    cmd = [sys.executable, str(ROOT / "run.py"), "-m", *suite["sweep"], *suite.get("fixed", []), *args.overrides,
           f"hydra.sweep.dir={sweep_dir}", "hydra.sweep.subdir=${hydra.job.num}"]
    print("+", " ".join(cmd), flush=True)
    rc = subprocess.call(cmd)
    if sweep_dir.exists():
        summarize(sweep_dir, suite)
    sys.exit(rc)


if __name__ == "__main__":
    main()
