import random

from ded.data import Question
from ded.filters import (
    Complete,
    Correct,
    FilterLog,
    Language,
    Length,
    Repetition,
    ThinkFormat,
    build_trajectory_filters,
    run_filters,
)

Q = Question("q", "What is $6 \\times 7$?", "42")
GOOD = "<think>\n6 times 7: 6*7 = 42. Check: 42/7 = 6.\n</think>\nThe answer is $\\boxed{42}$."


def item(text, finish="stop", **extra):
    return (Q, {"text": text, "finish": finish, **extra})


def reasons(f, texts_or_items):
    return [f(x if isinstance(x, tuple) else item(x)) for x in texts_or_items]


def test_correct_complete_final_answer():
    assert reasons(Correct(), [GOOD, "\\boxed{41}", "no idea", "\\boxed{@#!}"]) == [True, (False, "wrong"), (False, "no_answer"), (False, "unparsable")]
    assert Correct("gsm8k")(item("#### 42")) is True
    assert reasons(Complete(), [item(GOOD), item(GOOD, "length")]) == [True, (False, "truncated")]


def test_length_in_tokens():
    f = Length(min_tokens=3, max_tokens=10)
    assert f(item("a b")) == (False, "too_short")
    assert f(item("a b c d")) is True
    assert f(item("a b", n_tokens=12)) == (False, "too_long")  # the backend's token count wins
    assert Length(max_tokens=2, count=len)(item("abc")) == (False, "too_long")  # a tokenizer-like counter


def test_think_format():
    f = ThinkFormat()
    cases = {
        GOOD: True,
        "The answer is \\boxed{42}": (False, "format:no_think"),
        "<think> 6*7=42, so": (False, "format:unclosed_think"),
        "<think>a</think><think>b</think> \\boxed{42}": (False, "format:multiple_think"),
        "Sure! <think>a</think> \\boxed{42}": (False, "format:text_before_think"),
        "<think>6*7=42</think>   ": (False, "format:empty_answer"),
        "6*7=42</think> \\boxed{42}": (False, "format:no_think_open"),
    }
    for text, want in cases.items():
        assert f(item(text)) == want, text
    assert ThinkFormat(opener_in_prompt=True)(item("6*7=42</think> \\boxed{42}")) is True  # template opened it


def test_repetition_loops():
    rng = random.Random(0)
    words = "we compute the product of six and seven then check the result by division".split()
    healthy = " ".join(rng.choice(words) for _ in range(400))
    loop_tail = healthy + (" wait let me recompute six times seven again carefully now" * 40)
    looping_lines = "\n".join(["Let me check.", "6*7=42", "Let me check.", "6*7=42", "Let me check.", "So 42."])
    assert Repetition()(item(healthy)) is True
    assert Repetition()(item(loop_tail)) == (False, "repetition")
    assert Repetition()(item(looping_lines)) == (False, "repetition")


def test_language_script_share():
    f = Language()
    assert f(item(GOOD + " \\alpha \\theta αβ")) is True  # LaTeX commands and Greek letters are fine
    drift = GOOD + " 所以答案是四十二，我们再检查一下这个乘法是否正确。" * 3
    assert f(item(drift)) == (False, "language")
    assert Language(scripts=("LATIN", "CJK"))(item(drift)) is True


def test_run_filters_first_reason_and_rejects_kept():
    items = [item(GOOD), item(GOOD, "length"), item("\\boxed{41}"), item("<think>x</think>\\boxed{42}" + "", n_tokens=10_000)]
    kept, log = run_filters(items, [Complete(), Correct(), Length(max_tokens=4096), ThinkFormat()], lambda it: {"text": it[1]["text"]})
    assert kept == items[:1]
    assert isinstance(log, FilterLog) and log.kept == 1
    assert log.dropped == {"truncated": 1, "wrong": 1, "too_long": 1}
    assert [r["reason"] for r in log.rejects] == ["truncated", "wrong", "too_long"] and log.rejects[1]["text"] == "\\boxed{41}"


def test_complete_names_truncated_and_missing():
    assert Complete()((None, {"finish": "stop"})) is True
    assert Complete()((None, {"finish": "length"})) == (False, "truncated")
    assert Complete()((None, {"finish": "missing"})) == (False, "missing")


def test_configured_chain_cheapest_first_correct_last():
    from ded.config import TrajectoryFilters

    def kinds(**kw):
        return [type(f).__name__ for f in build_trajectory_filters(TrajectoryFilters(**kw))]

    assert kinds() == ["Complete", "Repetition", "Correct"]
    assert kinds(repetition=False) == ["Complete", "Correct"]
    everything = kinds(min_tokens=5, think_format=True, language=True)
    assert everything == ["Complete", "Length", "ThinkFormat", "Repetition", "Language", "Correct"]
    (length,) = [f for f in build_trajectory_filters(TrajectoryFilters(max_tokens=9)) if isinstance(f, Length)]
    assert (length.min_tokens, length.max_tokens) == (0, 9)
