import pytest

from ded.verify import check


@pytest.mark.parametrize(
    "response,gold,correct,reason",
    [
        ("$12 + 35 = 47$. The answer is $\\boxed{47}$.", "47", True, "correct"),
        ("\\boxed{46}", "47", False, "wrong"),
        ("12 + 35 = 47", "47", False, "no_answer"),  # an unboxed number is not an answer
        ("The final answer is $47$", "47", True, "correct"),
        ("\\boxed{\\frac{1}{2}}", "0.5", True, "correct"),
        ("\\boxed{\\frac{2}{4}}", "\\frac{1}{2}", True, "correct"),
        ("\\boxed{1,234}", "1234", True, "correct"),
        ("\\boxed{-3}", "3", False, "wrong"),
        ("", "3", False, "no_answer"),
        ("<think>\nmaybe \\boxed{4}\n</think>\n\nThe answer is \\boxed{5}.", "5", True, "correct"),  # after the thought
        ("<think>\nso \\boxed{5} probably", "5", False, "no_answer"),  # unclosed thought: no answer yet
    ],
)
def test_verification_table(response, gold, correct, reason):
    v = check(response, gold)
    assert (v.correct, v.reason) == (correct, reason)
