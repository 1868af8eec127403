"""Held-out evaluation: avg@k (mean accuracy over k samples per question) with its standard error.

Samples go through the per-sample cache like every other generation, keyed by the model's
identity (for a trained student: its checkpoint key), so the base student's samples are
generated once and reused by every run with the same student and eval settings, and raising
k only generates the new samples.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict

import numpy as np

from ded.grading.answers import GradingSettings, check_samples


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from n samples of which c are correct (Chen et al. 2021, eq. 1)."""
    if k > n:
        raise ValueError(f"pass@{k} needs at least {k} samples, got {n}")
    if n - c < k:
        return 1.0
    # 1 - C(n-c, k) / C(n, k), as a stable product
    return float(1.0 - np.prod(1.0 - k / np.arange(n - c + 1, n + 1)))


def score(questions, samples: dict[str, list[dict]], settings: GradingSettings | None = None) -> dict:
    """avg@k, its standard error over questions, per-level accuracy, failure reasons, and each
    question's accuracy (``per_question``: {question id: accuracy over its k samples}, whose mean
    is avg@k; for paired comparisons, stored in eval.json and never logged as a metric).
    `settings`: how answers are graded (None: the defaults)."""
    per_q = []
    per_question: dict[str, float] = {}
    correct_counts = []
    levels = defaultdict(list)
    reasons = Counter()
    lengths, truncated = [], 0
    for q, verdicts in zip(questions, check_samples(questions, samples, settings)):  # code: in parallel sandboxes
        acc = float(np.mean([v.correct for v in verdicts]))
        per_q.append(acc)
        per_question[q.id] = acc
        correct_counts.append(sum(v.correct for v in verdicts))
        levels[q.level].append(acc)
        reasons.update(v.reason for v in verdicts)
        lengths += [s["n_tokens"] for s in samples[q.id]]
        truncated += sum(s["finish"] == "length" for s in samples[q.id])
    n = len(per_q)
    k = len(samples[questions[0].id]) if questions else 0
    mean = float(np.mean(per_q)) if n else float("nan")
    se = float(np.std(per_q, ddof=1) / math.sqrt(n)) if n > 1 else float("nan")
    total = sum(reasons.values())
    ks = sorted({1, k} | {j for j in (2, 4, 8, 16, 32, 64) if j <= k})
    return {
        f"avg@{k}": mean,
        f"avg@{k}_se": se,
        f"avg@{k}_ci95_low": mean - 1.96 * se if n > 1 else float("nan"),
        f"avg@{k}_ci95_high": mean + 1.96 * se if n > 1 else float("nan"),
        **{f"pass@{j}": float(np.mean([pass_at_k(k, c, j) for c in correct_counts])) for j in ks if n},
        "questions": n,
        "k": k,
        "no_answer_rate": reasons["no_answer"] / total if total else float("nan"),
        "truncation_rate": truncated / total if total else float("nan"),
        "mean_tokens": float(np.mean(lengths)) if lengths else float("nan"),
        "by_level": {int(lv): float(np.mean(v)) for lv, v in sorted(levels.items())},
        "per_question": per_question,
    }
