"""Adversarial responses against every answer check: each returns a Verdict within its time limit
(plus slack for a loaded machine) and never raises, and the cost grows linearly with the length.

Evaluation checks every sample, and a looping model writes megabytes of "\\boxed{": before issue
10 the gsm8k and choice checks rescanned the rest of the text once per box (quadratic:
"\\boxed{" repeated took 0.9 s at 7 kB, 3.1 s at 14 kB, 12.8 s at 28 kB). Measured on a 2-core
machine shared with other work, old code / new code, check_answer with timeout_s=2:

| response                             | math          | gsm8k          | choice         |
|--------------------------------------|---------------|----------------|----------------|
| "\\boxed{" x 100k (700 kB)            | 2.0 / 2.2 s   | >90 s / 0.02 s | >90 s / 0.02 s |
| "\\boxed{\\text{" x 50k               | 2.1 / 2.2 s   | >90 s / 0.01 s | >90 s / 0.01 s |
| "The answer is \\text{" x 50k         | 0.7 / 0.5 s   | 48 s / 0.05 s  | >90 s / 0.00 s |
| 1000 unclosed boxes + 100k "\\udcff"  | 0.03 / 0.02 s | 32 s / 0.00 s  | 30 s / 0.00 s  |
| the other cases below                | <= 2.0 s      | <= 0.08 s      | <= 0.05 s      |

Math answers were already bounded by math-verify's alarm (the 2 s are its timeout). Wherever the
old code finished, the verdicts are the same.
"""

import time

import pytest

from ded.grading.answers import GoldError, Verdict, boxed_contents, check_answer, final_text, has_final_answer, last_boxed

TIMEOUT_S = 1
SLACK_S = 4  # a loaded 2-core CI machine; measured well under 1 s beyond the limit

N = 100_000
CASES = {
    "boxed_open": lambda: "\\boxed{" * N,
    "close_braces": lambda: "}" * N,
    "nested_braces": lambda: "\\boxed{" + "{" * N + "}" * N + "}",
    "nested_unclosed": lambda: "\\boxed{" + "{" * N,
    "digits_1MB": lambda: "1" * 1_000_000,
    "answer_is_1MB": lambda: "the answer is " * (1_000_000 // 14),
    "hashes": lambda: "####" * N,
    "huge_number_box": lambda: "\\boxed{" + "1" * N + "}",
    "long_number_box": lambda: "\\boxed{" + "7" * 4000 + "}",  # just under Python's int-to-str limit
    "tower_power": lambda: "\\boxed{9^{9^{9}}}",  # 9^387420489 if evaluated
    "huge_factorial": lambda: "\\boxed{(10^{100})!}",
    "frac_nested_10k": lambda: "\\boxed{" + "\\frac{1}{" * 10_000 + "2" + "}" * 10_000 + "}",
    "non_utf": lambda: ("\\boxed{\udcff\ud800\x00\ufffd" * 1000 + "}" + "\udcff" * N),
    "undecodable_bytes": lambda: bytes(range(256)).decode("utf-8", "surrogateescape") * 4000 + "\\boxed{\udc80}",
    "text_open": lambda: "The answer is \\text{" * (N // 2),
    "boxed_text_open": lambda: "\\boxed{\\text{" * (N // 2),
    "answer_spaces": lambda: "answer" + " " * N + "x",
    "think_open": lambda: "<think>" * N + "\\boxed{1}",
    "many_boxes": lambda: "\\boxed{1} " * N,
}
GOLD = {"math": "3", "gsm8k": "3", "choice": "B"}


@pytest.mark.parametrize("kind", ["math", "gsm8k", "choice", "has_final_answer"])
@pytest.mark.parametrize("case", list(CASES))
def test_each_check_returns_within_its_limit_and_never_raises(case, kind):
    text = CASES[case]()
    t = time.monotonic()
    if kind == "has_final_answer":
        out = has_final_answer(text)
    else:
        out = check_answer(text, GOLD[kind], kind, timeout_s=TIMEOUT_S, n_choices=4)
        assert isinstance(out, Verdict) and out.reason in {"correct", "wrong", "no_answer", "unparsable", "timeout"}
    assert time.monotonic() - t < TIMEOUT_S + SLACK_S, (case, kind, out)


@pytest.mark.parametrize("kind", ["gsm8k", "choice"])
def test_the_deadline_stops_a_scan_midway(kind):
    # The scans are linear, so it takes a tiny limit to see the wall-clock deadline fire.
    t = time.monotonic()
    v = check_answer("\\boxed{" * 300_000, GOLD[kind], kind, timeout_s=0.005)
    assert v == Verdict(False, "timeout") and time.monotonic() - t < 1 + SLACK_S


def _best_of(f, text, reps=3):
    best = float("inf")
    for _ in range(reps):
        t = time.perf_counter()
        f(text)
        best = min(best, time.perf_counter() - t)
    return best


SCALING = {
    "boxed_open": lambda n: "\\boxed{" * (n // 7),
    "unclosed_boxes_then_text": lambda n: "\\boxed{x" * (n // 16) + "}" + "y" * (n // 2),
    "text_open": lambda n: "The answer is \\text{" * (n // 20),
    "nested": lambda n: "\\boxed{" + "{" * (n // 2) + "}" * (n // 2),
}
CHECKS = {
    "gsm8k": lambda t: check_answer(t, "3", "gsm8k", timeout_s=60),
    "choice": lambda t: check_answer(t, "B", "choice", timeout_s=60, n_choices=4),
    "has_final_answer": has_final_answer,
    "final_text": final_text,
    "boxed_contents": boxed_contents,
    "last_boxed": lambda t: _gold_box(t),
}


def _gold_box(text):
    try:
        return last_boxed(text)
    except GoldError:  # an unclosed last box, as a gold solution
        return None


def test_cost_grows_linearly_with_the_response():
    """50, 200 and 800 kB: a linear check takes ~4x as long at 4x the length, a quadratic one 16x
    (the old code took seconds at 50 kB; the 50 kB point runs first so such a regression fails
    fast). Generous bounds for a loaded machine: each step at most 8x plus 50 ms."""
    sizes = (50_000, 200_000, 800_000)
    rows = []
    for case, make in SCALING.items():
        texts = [make(n) for n in sizes]
        for name, check in CHECKS.items():
            times = []
            for text in texts:
                times.append(_best_of(check, text))
                assert times[-1] < 2.0, (case, name, sizes[len(times) - 1], times)
            rows.append((case, name, times))
    print(f"\n{'response':26} {'check':16} {'50 kB':>9} {'200 kB':>9} {'800 kB':>9}")
    for case, name, times in rows:
        print(f"{case:26} {name:16} " + " ".join(f"{t * 1e3:7.1f}ms" for t in times))
    for case, name, (t50, t200, t800) in rows:
        assert t200 < 8 * t50 + 0.05 and t800 < 8 * t200 + 0.05, (case, name, t50, t200, t800)
