"""Every run record below a folder as one CSV (`ded.reporting.results.load_runs`): one row per run, columns
for its status, overrides, config-group choices, resolved config (dotted keys) and every metric
(plus the k-free aliases: `avg@k` and the sortable `..._avg_at_k`). `--source wandb-offline` reads
the same table from the folder's offline W&B runs (`load_wandb_offline`).

    python notebooks/collect.py multirun/<date>/<time> > runs.csv
    python notebooks/collect.py multirun/<date>/<time> --finished-only -o runs.csv
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from ded.reporting.results import load_runs, load_wandb_offline  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("root", help="a folder holding run records (metrics.json) anywhere below it")
    ap.add_argument("--finished-only", action="store_true", help="only runs whose record says run/status=finished")
    ap.add_argument("-o", "--output", help="write the CSV here instead of stdout")
    ap.add_argument("--source", choices=["local", "wandb-offline"], default="local",
                    help="local: the run records (metrics.json); wandb-offline: the offline W&B runs below the folder")
    args = ap.parse_args()
    if not Path(args.root).is_dir():
        sys.exit(f"collect.py: {args.root}: no such folder")
    df = (load_runs if args.source == "local" else load_wandb_offline)(args.root, finished_only=args.finished_only)
    df.to_csv(args.output or sys.stdout, index=False)


if __name__ == "__main__":
    main()
