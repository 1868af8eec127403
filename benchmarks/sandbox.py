"""Sandbox throughput: executions per second on HumanEval's canonical solutions.

    DED_DATA_DIR=/path/to/data python benchmarks/sandbox.py          # all 164 problems
    python benchmarks/sandbox.py --data /path/to/data --limit 40      # the first 40

The data file is DATA/benchmarks/humaneval.jsonl.gz (DATA: --data, else $DED_DATA_DIR; --data
may also name the .jsonl.gz itself). Each program is prompt + canonical_solution + test +
``check(entry_point)``, the way a code answer is graded. Measured in one process, in this order:

  sandbox, 1 worker     ded.sandbox.run_many(workers=1)
  sandbox, 2 workers    ded.sandbox.run_many(workers=2)
  plain subprocess      subprocess.run([sys.executable, "-I", file]) one after another (the baseline)
  plain, same Python    the same with the interpreter the sandbox runs programs with, when that is
                        another one (as root it may have to be the system's Python: see ded.sandbox)
  grader, 1 and 2       ded.grading.answers.check_answers on each canonical solution as a code answer
                        (the way a response is graded: the judge and the runner in one sandbox, the
                        verdict memo emptied first), with sandbox.workers = 1 and 2

Every sandboxed run and every graded check must pass (all canonical solutions are correct); the
script exits 1 if not. Run it on two trees (copy the script into the older one) to price a change
of the grader: the grader's ms per check against the plain sandbox run of the same programs.
The overhead per execution compares the 1-worker sandbox with each plain baseline. The last line
of output is one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from ded import sandbox  # noqa: E402


def load_programs(data: str | None, limit: int | None) -> list[str]:
    data = data or os.environ.get("DED_DATA_DIR")
    if not data:
        sys.exit("error: no data: pass --data DIR (holding benchmarks/humaneval.jsonl.gz) or set DED_DATA_DIR")
    path = Path(data)
    if path.is_dir():
        path = path / "benchmarks" / "humaneval.jsonl.gz"
    if not path.is_file():
        sys.exit(f"error: {path} does not exist (expected HumanEval as benchmarks/humaneval.jsonl.gz under the data dir)")
    with gzip.open(path, "rt", encoding="utf-8") as f:
        rows = [json.loads(line) for line in f if line.strip()]
    rows = rows[:limit] if limit else rows
    return [row["prompt"] + row["canonical_solution"] + "\n" + row["test"] + f"\ncheck({row['entry_point']})\n" for row in rows]


def timed_sandbox(programs: list[str], workers: int) -> tuple[float, list[sandbox.Result]]:
    t0 = time.perf_counter()
    results = sandbox.run_many([(p, "") for p in programs], workers=workers)
    return time.perf_counter() - t0, results


def timed_grader(data: str | None, limit: int | None, workers: int) -> tuple[float, list]:
    """(seconds, verdicts) of grading each canonical solution as a response, memo emptied first."""
    from ded.config import SandboxConfig
    from ded.data.evalsets import load_eval_set
    from ded.grading import code as code_kind
    from ded.grading.answers import GradingSettings, check_answers

    path = Path(data or os.environ["DED_DATA_DIR"])
    path = path.parent.parent if path.is_file() else path
    questions = load_eval_set("humaneval", path)[:limit]
    with gzip.open(path / "benchmarks" / "humaneval.jsonl.gz", "rt", encoding="utf-8") as f:
        rows = [json.loads(line) for line in f if line.strip()][:limit]
    items = [(f"```python\n{r['prompt']}{r['canonical_solution']}\n```", q.answer, "code") for r, q in zip(rows, questions)]
    code_kind._MEMO.clear()
    t0 = time.perf_counter()
    verdicts = check_answers(items, settings=GradingSettings(SandboxConfig(workers=workers)))
    return time.perf_counter() - t0, verdicts


def timed_plain(programs: list[str], interpreter: str) -> tuple[float, int]:
    """Each program from a file, one `interpreter -I file` after another; returns (seconds, passed)."""
    passed = 0
    with tempfile.TemporaryDirectory(prefix="ded_bench_sandbox_") as d:
        files = []
        for i, program in enumerate(programs):
            path = Path(d, f"p{i}.py")
            path.write_text(program)
            files.append(path)
        t0 = time.perf_counter()
        for path in files:
            r = subprocess.run([interpreter, "-I", str(path)], cwd=d, capture_output=True, timeout=60)
            passed += r.returncode == 0
        return time.perf_counter() - t0, passed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", help="data dir holding benchmarks/humaneval.jsonl.gz (default: $DED_DATA_DIR), or the file")
    ap.add_argument("--limit", type=int, help="use the first N problems only")
    args = ap.parse_args()

    programs = load_programs(args.data, args.limit)
    n = len(programs)
    reason = sandbox.check_isolation()  # also warms the one-time detection, outside the timings
    if reason:
        sys.exit(f"error: no sandbox here: {reason}")
    inner = sandbox.default_interpreter()
    print(f"{n} HumanEval programs; harness Python {sys.executable}; sandboxed programs run on {inner}; "
          f"{len(os.sched_getaffinity(0))} usable cores; load average {os.getloadavg()[0]:.2f}")

    s1, r1 = timed_sandbox(programs, 1)
    s2, r2 = timed_sandbox(programs, 2)
    g1, v1 = timed_grader(args.data, args.limit, 1)
    g2, v2 = timed_grader(args.data, args.limit, 2)
    base, base_passed = timed_plain(programs, sys.executable)
    same = timed_plain(programs, inner) if os.path.realpath(inner) != os.path.realpath(sys.executable) else None

    failed = [(i, r.status, r.stderr.strip().splitlines()[-1:]) for i, r in enumerate(r1 + r2) if r.status != "ok"]
    failed += [(i, v.reason, [v.detail]) for i, v in enumerate(v1 + v2) if not v.correct]
    passed1, passed2 = sum(r.ok for r in r1), sum(r.ok for r in r2)
    rows = [("sandbox, 1 worker", s1, passed1), ("sandbox, 2 workers", s2, passed2),
            (f"plain subprocess ({Path(sys.executable).name} = harness Python)", base, base_passed)]
    if same:
        rows.append((f"plain subprocess ({inner} = sandbox's Python)", same[0], same[1]))
    rows += [("grader (check_answers), 1 worker", g1, sum(v.correct for v in v1)),
             ("grader (check_answers), 2 workers", g2, sum(v.correct for v in v2))]
    print(f"\n{'mode':<58} {'execs/s':>8} {'ms/exec':>8} {'passed':>9}")
    for name, seconds, ok in rows:
        print(f"{name:<58} {n / seconds:>8.1f} {1000 * seconds / n:>8.1f} {ok:>5}/{n}")
    print(f"\n2 workers vs 1: {s1 / s2:.2f}x")
    out = {"n": n, "execs_per_s": {"sandbox_1": n / s1, "sandbox_2": n / s2, "plain": n / base},
           "workers_2_vs_1": s1 / s2, "passed": {"sandbox_1": passed1, "sandbox_2": passed2, "plain": base_passed},
           "harness_python": sys.executable, "sandbox_python": inner}
    out["execs_per_s"].update({"grader_1": n / g1, "grader_2": n / g2})
    out["grader_ms_per_check"] = {"1": 1000 * g1 / n, "2": 1000 * g2 / n}
    out["grader_vs_sandbox_run"] = g1 / s1  # a graded check against a plain sandboxed run of the same program
    print(f"grader vs a plain sandboxed run of the same program (1 worker): {g1 / s1:.2f}x, "
          f"{1000 * (g1 - s1) / n:+.1f} ms per check")
    for label, seconds in [("harness Python", base)] + ([("sandbox's Python", same[0])] if same else []):
        overhead_ms = 1000 * (s1 - seconds) / n
        print(f"sandbox overhead per execution vs plain subprocess on the {label}: {overhead_ms:+.1f} ms ({s1 / seconds:.2f}x)")
        key = "plain" if label == "harness Python" else "plain_same_python"
        out[f"overhead_ms_vs_{key}"] = overhead_ms
        out[f"ratio_vs_{key}"] = s1 / seconds
    if same:
        out["execs_per_s"]["plain_same_python"] = n / same[0]
    print(f"\nall {n} canonical solutions pass in the sandbox and the grader: {'yes' if not failed else 'NO'}")
    for i, status, tail in failed[:10]:
        print(f"  failed: program {i % n} ({status}) {tail}")
    print(json.dumps(out))
    if failed:
        sys.exit(1)


if __name__ == "__main__":
    main()
