import math

import pytest

from ded.data import Question
from ded.evaluate import score


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
