import time

import pytest

from ded.grading.answers import ANSWER_KINDS, AnswerKind, GoldError, GradingSettings, Verdict, boxed_contents, check_answer, check_answers


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
def test_math_is_the_default_kind(response, gold, correct, reason):
    v = check_answer(response, gold)
    assert (v.correct, v.reason) == (correct, reason)


# Tricky math answers: what math-verify (through check_answer) decides, and why it is right.
MATH = [
    # equivalent fractions, \frac vs /, decimals
    ("\\boxed{\\frac{2}{4}}", "\\frac12", "correct"),
    ("\\boxed{1/2}", "\\frac{1}{2}", "correct"),
    ("\\boxed{\\dfrac{3}{6}}", "0.5", "correct"),
    ("\\boxed{\\sqrt{2}/2}", "\\frac{\\sqrt2}{2}", "correct"),
    ("\\boxed{0.6667}", "\\frac{2}{3}", "wrong"),  # a rounded decimal is not the fraction
    ("\\boxed{3.0}", "3", "correct"),
    ("\\boxed{1{,}000}", "1000", "correct"),
    # units and decorations around the number
    ("\\boxed{5\\text{ cm}}", "5", "correct"),
    ("\\boxed{5 \\text{ cm}^2}", "5", "correct"),
    ("\\boxed{\\$18}", "18", "correct"),
    ("\\boxed{90^\\circ}", "90", "correct"),
    ("\\boxed{x = 5}", "5", "correct"),
    ("\\boxed{50\\%}", "0.5", "unparsable"),  # math-verify reads a percent only as text: equal to "50\%" alone
    ("\\boxed{50\\%}", "50\\%", "correct"),
    # intervals: endpoints and brackets both matter
    ("\\boxed{(1, 3]}", "(1,3]", "correct"),
    ("\\boxed{[1,3]}", "(1,3)", "wrong"),
    ("\\boxed{(-\\infty, 2) \\cup (3, \\infty)}", "(-\\infty,2)\\cup(3,\\infty)", "correct"),
    ("\\boxed{x \\in (1,3]}", "(1,3]", "correct"),
    # tuples
    ("\\boxed{(3, \\pi/2)}", "\\left( 3, \\frac{\\pi}{2} \\right)", "correct"),
    # several boxes form a set: order free, all must be there, nothing extra
    ("\\boxed{2} and \\boxed{3}", "2, 3", "correct"),
    ("\\boxed{3} and \\boxed{2}", "2, 3", "correct"),
    ("\\boxed{2}, \\boxed{3}", "\\{2,3\\}", "correct"),
    ("\\boxed{2} and \\boxed{3}", "3", "wrong"),
    ("\\boxed{\\frac{1}{2}} \\boxed{7}", "\\frac{1}{2}", "wrong"),
    # unanswered and unparsable are counted as such, not as wrong
    ("I cannot determine the answer.", "3", "no_answer"),
    ("12 + 35 = 47", "47", "no_answer"),  # a free-floating number is no answer
    ("\\boxed{}", "3", "unparsable"),
    ("\\boxed{@#!}", "3", "unparsable"),
    ("\\boxed{x^2+}", "3", "unparsable"),
    ("\\boxed{4}", "", "bad_gold"),
]


@pytest.mark.parametrize("response,gold,reason", MATH)
def test_tricky_math_answers(response, gold, reason):
    v = check_answer(response, gold, "math")
    assert v.reason == reason and v.correct == (reason == "correct")
    if reason != "bad_gold":  # the kind's extraction is what the verdict saw
        assert ANSWER_KINDS["math"].extract(response) == v.extracted


GSM8K = [
    ("The answer is $\\boxed{18}$", "18", "correct"),
    ("\\boxed{\\$1,234}", "1234", "correct"),
    ("\\boxed{1{,}234}", "1234", "correct"),
    ("\\boxed{18 \\text{ dollars}}", "18", "correct"),
    ("\\boxed{18.00}", "18", "correct"),
    ("so she earns 18 a day.\n#### 18", "18", "correct"),  # GSM8K's own answer line
    ("The answer is: 18.", "Janet makes 9 * 2 = 18\n#### 18", "correct"),  # gold given as the GSM8K solution
    ("\\boxed{17}", "18", "wrong"),
    ("\\boxed{18.5}", "18", "wrong"),
    ("She makes 18 dollars.", "18", "no_answer"),
    ("\\boxed{18 or 20}", "18", "unparsable"),
    ("\\boxed{eighteen}", "18", "unparsable"),
    ("\\boxed{18}", "x", "bad_gold"),
]


@pytest.mark.parametrize("response,gold,reason", GSM8K)
def test_gsm8k_integer_answers(response, gold, reason):
    v = check_answer(response, gold, "gsm8k")
    assert v.reason == reason and v.correct == (reason == "correct")


CHOICE = [
    ("\\boxed{C}", 2, "correct"),  # gold as a 0-based index (MMLU)
    ("\\boxed{C}", "C", "correct"),
    ("\\boxed{\\text{(D)}}", "D", "correct"),
    ("The answer is (B)", "B", "correct"),
    ("Answer: c. reduce the carrying capacity", "C", "correct"),
    ("\\boxed{A}", "C", "wrong"),
    ("I think B is right", "B", "no_answer"),
    ("\\boxed{B or C}", "B", "unparsable"),
    ("\\boxed{E}", "B", "unparsable"),  # with 4 choices E is not an option
    ("\\boxed{B}", 7, "bad_gold"),
]


@pytest.mark.parametrize("response,gold,reason", CHOICE)
def test_multiple_choice_letters(response, gold, reason):
    v = check_answer(response, gold, "choice", n_choices=4)
    assert v.reason == reason and v.correct == (reason == "correct")


def test_each_check_is_time_limited():
    t = time.monotonic()
    v = check_answer("\\boxed{10^{10^{10^{10}}}}", "3", "math", timeout_s=1)
    assert v.reason == "timeout" and time.monotonic() - t < 3


def test_unknown_kind():
    with pytest.raises(ValueError, match="allowed"):
        check_answer("\\boxed{1}", "1", "poetry")


def test_check_answers_hands_each_kind_its_own_items_in_one_batch():
    """Items are grouped by kind, each kind's batch goes to its check_many with the settings, and
    the verdicts come back in the items' order; the default batch checks one by one (math)."""
    calls = []

    class Counted(AnswerKind):
        def check_many(self, items, settings, progress=False):
            calls.append((items, settings, progress))
            return [Verdict(r == g, "correct" if r == g else "wrong") for r, g in items]

    ANSWER_KINDS.register("counted", Counted())
    try:
        settings = GradingSettings(hide=("/nowhere",))
        items = [("<think>\\boxed{1}</think>\\boxed{2}", "2", "math"), ("a", "a", "counted"), ("\\boxed{3}", "2", "math"),
                 ("b", "c", "counted")]  # fmt: skip
        verdicts = check_answers(items, progress=True, settings=settings)
    finally:
        ANSWER_KINDS.unregister("counted")
    assert [v.reason for v in verdicts] == ["correct", "correct", "wrong", "wrong"]  # math: the answer after the thought
    assert calls == [([("a", "a"), ("b", "c")], settings, True)]


def test_each_kind_reads_a_source_rows_gold():
    math, gsm8k, choice = (ANSWER_KINDS[k] for k in ("math", "gsm8k", "choice"))
    assert math.gold(27.0) == "27" and math.gold(" \\frac{1}{2} ") == "\\frac{1}{2}"
    assert gsm8k.gold("so 1,234 in all\n#### $1,234") == "1234"
    assert [choice.gold(v, 4) for v in (2, "2", "c", "(C)")] == ["C"] * 4
    for kind, value, text in [(gsm8k, "just 7", "no '#### N' line"), (gsm8k, "#### seven", "not a number"),
                              (choice, 4, "out of range for 4"), (choice, "AB", "neither"), (math, " ", "empty")]:  # fmt: skip
        with pytest.raises(GoldError, match=text):
            kind.gold(value, 4)


def test_each_kind_extracts_the_final_answer():
    assert ANSWER_KINDS["gsm8k"].extract("so \\boxed{\\$1,234.0}") == "1234"
    assert ANSWER_KINDS["choice"].extract("The answer is (b).", 4) == "B"
    assert ANSWER_KINDS["choice"].extract("The answer is (E).", 4) is None
    assert ANSWER_KINDS["math"].extract("so \\boxed{\\frac{1}{2}}") == "\\frac{1}{2}"
    assert boxed_contents("\\boxed{\\frac{1}{2}} and \\fbox{3} then \\boxed{x") == ["\\frac{1}{2}", "3", None]


def _boxes_by_rescanning(text):
    """The straightforward definition (what the checks did before issue 10, quadratic): from each
    box opener, scan forward counting braces to the one that closes it."""
    import re

    out = []
    for m in re.finditer(r"\\(?:boxed|fbox)\s*\{", text):
        depth = 1
        for i in range(m.end(), len(text)):
            depth += {"{": 1, "}": -1}.get(text[i], 0)
            if depth == 0:
                out.append(text[m.end() : i])
                break
        else:
            out.append(None)
    return out


def test_one_pass_box_matching_agrees_with_rescanning():
    import random

    from ded.grading.answers import final_text, last_boxed

    rng = random.Random(0)
    pieces = ["\\boxed{", "\\fbox {", "{", "}", "}", "x", "12", " ", "\\frac{1}{2}", "answer is 3\n", "#### 4"]
    for _ in range(3000):
        text = "".join(rng.choice(pieces) for _ in range(rng.randrange(1, 14)))
        want = _boxes_by_rescanning(text)
        assert boxed_contents(text) == want, text
        if want:
            assert final_text(text) == (want[-1] if want[-1] is not None else ""), text
            if want[-1] is not None:
                assert last_boxed(text) == want[-1].strip(), text
    assert boxed_contents("\\boxed{a \\boxed{b} c} \\boxed{d") == ["a \\boxed{b} c", "b", None]


def test_gsm8k_and_choice_checks_have_a_deadline():
    v = check_answer("\\boxed{" * 300_000, "3", "gsm8k", timeout_s=0.005)
    assert v.reason == "timeout" and not v.correct
    assert check_answer("\\boxed{18}", "18", "gsm8k", timeout_s=0.5).correct  # a fraction of a second is enough
