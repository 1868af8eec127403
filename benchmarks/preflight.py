"""How fast a run or sweep that cannot run here is refused (issue 13's target: within 10 s).

    python benchmarks/preflight.py              # 3 repeats of each command, the median printed
    python benchmarks/preflight.py --repeats 1 --only headline

Each command runs as a user would type it, from a scratch folder, with an empty cache and
HF_HUB_OFFLINE=1 (on a machine without the paper's models, GPUs, vLLM or R1's endpoint every one of
them must exit 2 with one ``error:`` line per missing requirement and no traceback; the script exits
1 otherwise):

  headline sweep   run.py -m teacher=qwq,r1 corpus.size=400,800
  paper sweep      run.py -m experiment=paper_32b teacher=qwq,r1 corpus.size=400,800
  single run       run.py teacher=qwq

The baseline, measured in the same run, is the floor any such check pays: starting Python and
importing torch (counting GPUs needs it). The last line is one JSON object; ``ratio`` is
baseline / headline sweep (1.0: the refusal costs no more than importing torch).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COMMANDS = {
    "headline sweep": ["-m", "teacher=qwq,r1", "corpus.size=400,800"],
    "paper sweep": ["-m", "experiment=paper_32b", "teacher=qwq,r1", "corpus.size=400,800"],
    "single run": ["teacher=qwq"],
}
TARGET_S = 10.0


def timed(argv: list[str], cwd: Path, env: dict) -> tuple[float, subprocess.CompletedProcess]:
    t = time.perf_counter()
    p = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    return time.perf_counter() - t, p


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--only", choices=["headline"], help="the headline sweep alone (and the baseline)")
    args = ap.parse_args()
    if args.repeats < 1:
        ap.error("--repeats: must be >= 1")
    results, ok = {}, True
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "offline", "DED_CACHE_DIR": str(Path(tmp) / "cache")}
        env.pop("DED_R1_BASE_URL", None)
        runs = {"baseline: python -c 'import torch'": [sys.executable, "-c", "import torch; torch.cuda.device_count()"]}
        runs |= {name: [sys.executable, str(ROOT / "run.py"), *a, f"hydra.sweep.dir={tmp}/sweep", f"hydra.run.dir={tmp}/run"]
                 for name, a in COMMANDS.items() if not args.only or name == "headline sweep"}  # fmt: skip
        for name, argv in runs.items():
            times = []
            for _ in range(args.repeats):
                s, p = timed(argv, Path(tmp), env)
                times.append(s)
                if name.startswith("baseline"):
                    continue
                errors = [x for x in p.stderr.splitlines() if x.startswith("error:")]
                if p.returncode != 2 or not errors or "Traceback" in p.stderr:
                    print(f"{name}: expected exit 2 with error: lines and no traceback, got {p.returncode}\n{p.stderr[-2000:]}")
                    ok = False
            results[name] = statistics.median(times)
            extra = "" if name.startswith("baseline") else f"  ({len(errors)} error lines; target {TARGET_S:.0f} s: {'met' if results[name] < TARGET_S else 'MISSED'})"
            print(f"{name:40s} {results[name]:6.2f} s median of {args.repeats}{extra}", flush=True)
    base = results.pop("baseline: python -c 'import torch'")
    print(json.dumps({"seconds": results, "baseline_s": round(base, 3), "ratio": round(base / results["headline sweep"], 3),
                      "target_s": TARGET_S}))  # fmt: skip
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
