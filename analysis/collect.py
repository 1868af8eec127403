"""Gather every run record below a folder into one CSV: one row per run, one column per metric.

    python analysis/collect.py multirun/ > runs.csv
"""

import csv
import json
import sys
from pathlib import Path


def collect(root: Path) -> list[dict]:
    rows = []
    for m in sorted(root.rglob("metrics.json")):
        overrides = m.parent / ".hydra" / "overrides.yaml"
        row = {"run": str(m.parent), "overrides": overrides.read_text().replace("\n", " ") if overrides.exists() else ""}
        row.update(json.loads(m.read_text()))
        rows.append(row)
    return rows


if __name__ == "__main__":
    if len(sys.argv) != 2 or not Path(sys.argv[1]).is_dir():
        sys.exit("usage: python analysis/collect.py <folder with run records>")
    rows = collect(Path(sys.argv[1]))
    cols = sorted({k for r in rows for k in r} - {"run", "overrides"})
    w = csv.DictWriter(sys.stdout, fieldnames=["run", "overrides", *cols])
    w.writeheader()
    w.writerows(rows)
