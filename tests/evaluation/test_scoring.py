import math

import pytest

from ded.data import Question
from ded.evaluation.scoring import pass_at_k, score


def test_avg_at_k_and_standard_error_by_hand():
    qs = [Question("a", "?", "1", level=1), Question("b", "?", "2", level=1), Question("c", "?", "3", level=2)]
    ok, bad = "\\boxed{%s}", "\\boxed{0}"
    samples = {
        "a": [{"text": ok % 1, "n_tokens": 5, "finish": "stop"}] * 4,  # 1.0
        "b": [{"text": ok % 2, "n_tokens": 5, "finish": "stop"}] * 2 + [{"text": bad, "n_tokens": 5, "finish": "stop"}] * 2,  # 0.5
        "c": [{"text": "nothing", "n_tokens": 9, "finish": "length"}] * 4,  # 0.0
    }
    r = score(qs, samples)
    assert r["avg@4"] == pytest.approx(0.5)
    # sample std of [1, .5, 0] is 0.5; se = 0.5 / sqrt(3)
    assert r["avg@4_se"] == pytest.approx(0.5 / math.sqrt(3))
    assert r["by_level"] == {1: 0.75, 2: 0.0}
    assert r["no_answer_rate"] == pytest.approx(4 / 12)
    assert r["truncation_rate"] == pytest.approx(4 / 12)
    assert r["mean_tokens"] == pytest.approx((8 * 5 + 4 * 9) / 12)

    # pass@k by hand: a: 4/4 -> 1; b: 2/4 -> pass@1 .5, pass@2 = 1 - C(2,2)/C(4,2) = 5/6; c: 0
    assert r["pass@1"] == pytest.approx((1 + 0.5 + 0) / 3)
    assert r["pass@2"] == pytest.approx((1 + 5 / 6 + 0) / 3)
    assert r["pass@4"] == pytest.approx((1 + 1 + 0) / 3)
    assert r["avg@4_ci95_low"] == pytest.approx(0.5 - 1.96 * 0.5 / math.sqrt(3))


@pytest.mark.parametrize("n,c,k", [(10, 3, 1), (10, 3, 5), (16, 0, 4), (5, 5, 2), (20, 7, 8), (3, 1, 3)])
def test_pass_at_k_matches_the_combinatorial_definition(n, c, k):
    from math import comb

    assert pass_at_k(n, c, k) == pytest.approx(1 - comb(n - c, k) / comb(n, k))


def test_pass_at_k_needs_k_samples():
    with pytest.raises(ValueError, match="pass@5"):
        pass_at_k(4, 1, 5)


def test_each_question_is_scored_under_its_own_answer_kind():
    """A choice question is read as a letter, a GSM8K one as a number, a math one by math-verify;
    scoring choice answers with the math checker would call "The answer is (B)." unanswered."""
    from ded.curation.filters import pass_rates

    qs = [Question("mc", "Which? A. x B. y", "B", kind="choice"), Question("gs", "How many?", "1234", kind="gsm8k"),
          Question("m", "Solve.", "\\frac{1}{2}")]  # fmt: skip
    samples = {
        "mc": [{"text": t, "n_tokens": 3, "finish": "stop"} for t in ("The answer is (B).", "\\boxed{C}")],
        "gs": [{"text": t, "n_tokens": 3, "finish": "stop"} for t in ("#### 1,234", "The answer is $1,235.")],
        "m": [{"text": t, "n_tokens": 3, "finish": "stop"} for t in ("\\boxed{0.5}", "<think>\\boxed{1/2}</think> no idea")],
    }
    r = score(qs, samples)
    assert r["avg@2"] == pytest.approx(0.5)  # one of two right in each
    assert pass_rates(qs, samples) == {"mc": 0.5, "gs": 0.5, "m": 0.5}
    # why a question carries its kind: the math checker finds no answer in "The answer is (B)."
    from ded.grading.answers import check_answer

    assert not check_answer("The answer is (B).", "B", "math").correct


def test_scores_and_pass_rates_grade_under_the_settings_they_are_given():
    from ded.curation.filters import pass_rates
    from ded.grading.answers import ANSWER_KINDS, AnswerKind, GradingSettings, Verdict

    seen = []

    class Recorded(AnswerKind):
        def check_many(self, items, settings, progress=False):
            seen.append(settings)
            return [Verdict(r == g, "correct" if r == g else "wrong") for r, g in items]

    qs = [Question("a", "?", "yes", kind="recorded")]
    samples = {"a": [{"text": t, "n_tokens": 1, "finish": "stop"} for t in ("yes", "no")]}
    grading = GradingSettings(hide=("/runs",))
    ANSWER_KINDS.register("recorded", Recorded())
    try:
        assert score(qs, samples, grading)["avg@2"] == 0.5 and pass_rates(qs, samples, grading) == {"a": 0.5}
        score(qs, samples)
    finally:
        ANSWER_KINDS.unregister("recorded")
    assert seen == [grading, grading, GradingSettings()]  # none given: the defaults


def test_pool_and_benchmark_questions_carry_their_answer_kind(tmp_path):
    import json

    from ded.data.pools import PoolSpec, read_pool

    p = tmp_path / "mc.jsonl"
    p.write_text(json.dumps({"question": "Which?", "choices": ["x", "y", "z"], "answer": 1}) + "\n")
    (q,), _ = read_pool(PoolSpec(str(p), "choice"))
    assert (q.kind, q.answer) == ("choice", "B")
    g = tmp_path / "g.jsonl"
    g.write_text(json.dumps({"question": "How many?", "answer": "2 + 2 = 4\n#### 4"}) + "\n")
    (q,), _ = read_pool(PoolSpec(str(g), "gsm8k"))
    assert q.kind == "gsm8k"
    m = tmp_path / "m.jsonl"
    m.write_text(json.dumps({"problem": "Solve.", "solution": "so \\boxed{3}"}) + "\n")
    (q,), _ = read_pool(PoolSpec(str(m), "math"))
    assert q.kind == "math"
