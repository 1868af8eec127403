"""Diversity selection at scale: P=4 of N=16 trajectories of ~30k characters, many questions.

    python benchmarks/selection.py                      # 64 questions timed; memory at 16 and 64
    python benchmarks/selection.py --questions 16 --memory 8,32    # a quick look

Baseline: the plain approach, per question the full N x N Levenshtein matrix (rapidfuzz cdist,
default single worker), then greedy max-min. Harness: ded.curation.selection.select_groups with
diversity.workers set, which computes only the distances greedy max-min reads (with rapidfuzz
cutoffs) and runs questions in parallel processes over every core with a bounded window. Both run in this process on the same data and
must return the same selection. A serial harness run (one process) separates the algorithmic
gain from the parallel one. Memory: peak RSS (this process + its workers, sampled) while the
harness streams two different numbers of questions; it should not grow with the count.

The last line of output is one JSON object; `ratio` = baseline_s / harness_s (higher is better).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import sys
import threading
import time
from pathlib import Path

import numpy as np
import psutil
from rapidfuzz.distance import Levenshtein
from rapidfuzz.process import cdist

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from ded.config import DiversityConfig  # noqa: E402
from ded.curation.selection import available_cores, select_groups  # noqa: E402
from ded.curation.selectors import greedy_maxmin  # noqa: E402

# A vocabulary of reasoning-trace words: traces of one question share most of their text
# and differ by rewording, inserted checks, dropped steps and swapped paragraphs.
WORDS = (
    "so we have the equation let us compute then it follows that wait check again substitute "
    "x y n k = + - \\frac{1}{2} \\sqrt{3} therefore which gives hence total sum of terms case "
    "if and only factor divide multiply both sides by 2 3 5 7 11 13 is prime odd even answer"
).split()


def question_texts(q: int, n: int, chars: int) -> list[str]:
    """N seeded variants of one base trace: each mutates a share of words (2% to 60%, so some
    traces are near-copies and some far apart), inserts and deletes words, swaps paragraphs."""
    rng = random.Random(q)
    base = []
    while sum(len(w) + 1 for w in base) < chars:
        base.append(rng.choice(WORDS) if rng.random() < 0.7 else str(rng.randrange(1000)))
    texts = []
    for _ in range(n):
        rate = rng.choice([0.02, 0.05, 0.15, 0.3, 0.6])
        out = []
        for w in base:
            r = rng.random()
            if r < rate / 3:
                out.append(rng.choice(WORDS))  # reworded
            elif r < 2 * rate / 3:
                out += [w, rng.choice(WORDS)]  # inserted
            elif r >= rate:
                out.append(w)  # kept (else: dropped)
        paras = [out[i : i + 120] for i in range(0, len(out), 120)]
        for _ in range(int(rate * 10)):  # a few paragraphs change places
            i, j = rng.randrange(len(paras)), rng.randrange(len(paras))
            paras[i], paras[j] = paras[j], paras[i]
        texts.append("\n\n".join(" ".join(p) for p in paras)[:chars])
    return texts


def groups(questions: int, n: int, chars: int):
    return (question_texts(q, n, chars) for q in range(questions))


def rngs(questions: int):
    """Each question's rng, fresh per call: max-min selection draws its start from it."""
    return (random.Random(f"start-{q}") for q in range(questions))


def harness(data, p: int, workers: int) -> list[list[int]]:
    return list(select_groups(data, rngs(len(data)), p, DiversityConfig(workers=workers)))


def baseline(data, p: int) -> list[list[int]]:
    out = []
    for texts, rng in zip(data, rngs(len(data))):
        dist = cdist(texts, texts, scorer=Levenshtein.normalized_distance, dtype=np.float64)
        out.append(greedy_maxmin(dist, p, rng.randrange(len(texts))))
    return out


class PeakRSS:
    """Peak resident memory of this process plus its children, sampled every 20 ms."""

    def __enter__(self):
        self.peak, self._stop = 0, threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()
        return self

    def _run(self):
        me = psutil.Process()
        while not self._stop.is_set():
            total = 0
            for proc in [me, *me.children(recursive=True)]:
                try:
                    total += proc.memory_info().rss
                except psutil.Error:
                    pass
            self.peak = max(self.peak, total)
            time.sleep(0.02)

    def __exit__(self, *exc):
        self._stop.set()
        self._t.join()


def _cpu_s() -> float:
    """User+system CPU seconds of this process and its finished children."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--questions", type=int, default=64, help="questions in the timed comparison")
    ap.add_argument("--memory", default="16,64", help="two question counts for the memory check (harness only, streamed)")
    ap.add_argument("--n", type=int, default=16)
    ap.add_argument("--p", type=int, default=4)
    ap.add_argument("--chars", type=int, default=30_000)
    ap.add_argument("--workers", type=int, default=0, help="0: every core")
    a = ap.parse_args()
    workers = a.workers or available_cores()
    load = os.getloadavg()[0]
    print(f"cores {available_cores()}, workers {workers}, load average {load:.1f}; N={a.n} P={a.p}, ~{a.chars} chars per trajectory", flush=True)

    # Memory first, streaming questions so nothing is held but the window in flight.
    mem = {}
    for count in [int(x) for x in a.memory.split(",")]:
        with PeakRSS() as m:
            t = time.perf_counter()
            n_sel = sum(1 for _ in select_groups(groups(count, a.n, a.chars), rngs(count), a.p, DiversityConfig(workers=workers)))
            dt = time.perf_counter() - t
        mem[count] = m.peak / 2**20
        print(f"memory: {n_sel} questions streamed in {dt:.1f} s, peak RSS (process + workers) {mem[count]:.0f} MiB", flush=True)

    data = list(groups(a.questions, a.n, a.chars))
    t = time.perf_counter()
    base = baseline(data, a.p)
    base_s = time.perf_counter() - t
    print(f"baseline (full matrix, cdist, greedy max-min): {base_s:.1f} s for {a.questions} questions", flush=True)
    cpu0 = _cpu_s()
    t = time.perf_counter()
    par = harness(data, a.p, workers)
    harness_s = time.perf_counter() - t
    harness_cpu = _cpu_s() - cpu0
    # CPU seconds per wall second: ~workers when the cores are free, less on a shared machine.
    print(f"harness (lazy greedy, {workers} processes): {harness_s:.1f} s, {harness_cpu / harness_s:.2f} cores busy", flush=True)
    t = time.perf_counter()
    serial = harness(data, a.p, 1)
    serial_s = time.perf_counter() - t
    print(f"harness, one process (lazy greedy only): {serial_s:.1f} s", flush=True)
    same = par == base and serial == base
    print(f"same selection as baseline: {same}; ratio {base_s / harness_s:.2f}x (serial {base_s / serial_s:.2f}x)", flush=True)
    counts = sorted(mem)
    print(
        json.dumps(
            {
                "benchmark": "selection",
                "questions": a.questions,
                "n": a.n,
                "p": a.p,
                "chars": a.chars,
                "cores": available_cores(),
                "workers": workers,
                "baseline_s": round(base_s, 3),
                "harness_s": round(harness_s, 3),
                "harness_serial_s": round(serial_s, 3),
                "harness_cores_busy": round(harness_cpu / harness_s, 2),
                "load_average_at_start": round(load, 2),
                "serial_ratio": round(base_s / serial_s, 3),
                "same_selection": same,
                "peak_rss_mib": {str(k): round(mem[k], 1) for k in counts},
                "memory_growth": round(mem[counts[-1]] / mem[counts[0]], 3),
                "ratio": round(base_s / harness_s, 3),
            }
        )
    )
    if not same:
        sys.exit("the harness selection differs from the baseline's")


if __name__ == "__main__":
    main()
