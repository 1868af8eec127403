import json
import os
import random
import re
from pathlib import Path

import pytest

from conftest import DATA, needs_data

from ded.data import Question
from ded.curation.filters import (
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
    looping_lines = "\n".join(["Let me check.", "6*7=42"] * 6 + ["So 42."])
    inline_loop = "We expand: $x^2+2x+1" + "=(x+1)^2" * 80 + "$"  # one 'word' for str.split()
    stuck_on_markup = "So\n" + "\\]\n" * 60  # a model stuck on a closing delimiter
    assert Repetition()(item(healthy)) is True
    for loop in (loop_tail, looping_lines, inline_loop, stuck_on_markup):
        assert Repetition()(item(loop)) == (False, "repetition"), loop[:60]


# Healthy worked solutions in a chat model's layout: a display delimiter on each line of its own,
# "Simplifying both sides, we get:" before each step. The old rule (any line seen twice, over
# half the lines) dropped the first two as loops.
HEALTHY_DISPLAY = [
    r"""To solve the equation, we first move every term to one side.

Step 1: Expand the left-hand side.
\[
(x + 3)(x - 2) = x^2 + x - 6
\]
Simplifying both sides, we get:
\[
x^2 + x - 6 = 2x + 6
\]
Step 2: Collect the terms.
\[
x^2 - x - 12 = 0
\]
Simplifying both sides, we get:
\[
(x - 4)(x + 3) = 0
\]
Step 3: Solve each factor.
\[
x - 4 = 0 \quad \text{or} \quad x + 3 = 0
\]
Therefore,
\[
x = 4 \quad \text{or} \quad x = -3
\]
Step 4: Check both roots in the original equation.
\[
(4 + 3)(4 - 2) = 14 = 2 \cdot 4 + 6
\]
\[
(-3 + 3)(-3 - 2) = 0 = 2 \cdot (-3) + 6
\]
Therefore,
\[
\boxed{x = 4 \text{ or } x = -3}
\]""",
    r"""We want the sum of the first 20 terms of the arithmetic sequence $3, 7, 11, \dots$.

The first term is:
$$
a_1 = 3
$$
The common difference is:
$$
d = 7 - 3 = 4
$$
The 20th term is:
$$
a_{20} = a_1 + 19d = 3 + 76 = 79
$$
The sum of the first $n$ terms is:
$$
S_n = \frac{n}{2}(a_1 + a_n)
$$
Substituting, we get:
$$
S_{20} = \frac{20}{2}(3 + 79)
$$
Simplifying, we get:
$$
S_{20} = 10 \cdot 82 = 820
$$
Check with the other formula:
$$
S_{20} = \frac{20}{2}\left(2a_1 + 19d\right)
$$
Simplifying, we get:
$$
S_{20} = 10 (6 + 76) = 820
$$
So,
$$
\boxed{820}
$$""",
    r"""Let the two numbers be $a$ and $b$, with $a + b = 12$ and $ab = 35$.

We use the identity
\begin{align*}
a^2 + b^2 &= (a + b)^2 - 2ab \\
&= 144 - 70 \\
&= 74.
\end{align*}
Then
\begin{align*}
a^3 + b^3 &= (a + b)(a^2 - ab + b^2) \\
&= 12 (74 - 35) \\
&= 12 \cdot 39 \\
&= 468.
\end{align*}
Also,
\begin{align*}
(a - b)^2 &= (a + b)^2 - 4ab \\
&= 144 - 140 \\
&= 4,
\end{align*}
so $|a - b| = 2$.
Therefore,
\[
a - b = \pm 2.
\]
Adding this to $a + b = 12$, we get:
\[
2a = 14 \quad \text{or} \quad 2a = 10.
\]
Therefore,
\[
\{a, b\} = \{5, 7\}.
\]
Check:
\[
5 + 7 = 12, \qquad 5 \cdot 7 = 35.
\]
Hence
\[
a^3 + b^3 = \boxed{468}.
\]""",
]


def test_repetition_keeps_display_equations_and_step_templates():
    f = Repetition()
    for text in HEALTHY_DISPLAY:
        assert f(item(text)) is True, f.scores(text)
    # ... and still drops one of them looping: its last step written over and over
    looped = HEALTHY_DISPLAY[0] + "\nSimplifying both sides, we get:\n\\[\nx^2 - x - 12 = 0\n\\]" * 12
    assert f(item(looped)) == (False, "repetition")


# Real outputs of SmolLM2-135M-Instruct (the test model, tests/conftest.py SMOLLM), each labelled
# by reading it. Made with ded.core.models.load_model(SMOLLM), float32 on CPU, the chat template over
# "<problem>" + MATH_INSTRUCTION for rows 0-55 of MATH test (math_test5000.jsonl, field
# math_test_idx), greedy decoding (do_sample=False), max_new_tokens=500, batches of 4 padded on
# the left. "loop": the output repeats the same content copy after copy (note says how);
# "no_loop": finished outputs that are wrong or rambling, some restating a line once or twice,
# but not looping. Left out as unclear: outputs that cycle two blocks a few times then stop.
SMOLLM2_OUTPUTS = Path(__file__).resolve().parents[1] / "fixtures" / "smollm2_loops.jsonl"


def test_repetition_on_real_small_model_outputs():
    rows = [json.loads(line) for line in SMOLLM2_OUTPUTS.read_text().splitlines()]
    loops = [r for r in rows if r["label"] == "loop"]
    clean = [r for r in rows if r["label"] == "no_loop"]
    f = Repetition()
    caught = [r["math_test_idx"] for r in loops if f(item(r["text"])) is not True]
    kept = [r["math_test_idx"] for r in clean if f(item(r["text"])) is True]
    print(f"\nSmolLM2 outputs: {len(caught)}/{len(loops)} loops dropped, {len(kept)}/{len(clean)} non-loops kept")
    assert len(loops) >= 10 and len(clean) >= 10
    assert len(caught) == len(loops) and len(kept) == len(clean)




def _display_style(text: str) -> str:
    """A MATH solution in a chat model's layout: display delimiters and align environments on
    lines of their own."""
    text = text.replace("\\[", "\n\\[\n").replace("\\]", "\n\\]\n")
    return re.sub(r"(\\(?:begin|end)\{(?:align|eqnarray)\*?\})", r"\n\1\n", text)


@needs_data
def test_repetition_keeps_real_worked_solutions():
    """Human-written MATH solutions (display equations, repeated figures, long derivations):
    none is a loop. Measured on all 5000 (as written and in display layout) and on MATH-500:
    0 dropped, where the old rule dropped 30 (0.6%), 61 (1.2%) and 1."""
    math = [json.loads(line)["solution"] for line in (DATA / "pools" / "math_test5000.jsonl").open()][:1000]
    math500 = [json.loads(line)["solution"] for line in (DATA / "benchmarks" / "math500.jsonl").open()]
    f = Repetition()
    for name, texts in [("MATH", math), ("MATH display layout", [_display_style(t) for t in math]), ("MATH-500", math500)]:
        dropped = [t for t in texts if f(item(t)) is not True]
        print(f"\n{name}: {len(dropped)}/{len(texts)} dropped as repetition")
        assert not dropped, dropped[0][:300]


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


def test_the_correct_filter_grades_under_the_settings_it_was_built_with():
    from ded.config import SandboxConfig, TrajectoryFilters
    from ded.grading.answers import ANSWER_KINDS, AnswerKind, GradingSettings, Verdict

    seen = []

    class Recorded(AnswerKind):
        def check(self, response, gold, timeout_s=5, n_choices=None, settings=None):
            seen.append(settings)
            return Verdict(True, "correct")

    grading = GradingSettings(SandboxConfig(per_test_s=1.5), hide=("/runs",))
    (correct,) = [f for f in build_trajectory_filters(TrajectoryFilters(), grading) if isinstance(f, Correct)]
    ANSWER_KINDS.register("recorded", Recorded())
    try:
        assert correct((Question("q", "?", "x", kind="recorded"), {"text": "x", "finish": "stop"})) is True
    finally:
        ANSWER_KINDS.unregister("recorded")
    assert seen == [grading]


def test_dedup_drops_copies_of_a_kept_trajectory_only():
    """corpus.filters.dedup: the first of each text (whitespace aside) stays, per question; a wrong
    answer is dropped as wrong, not as a copy, because dedup runs after correct."""
    from ded.config import TrajectoryFilters

    chain = build_trajectory_filters(TrajectoryFilters(dedup=True))
    assert [type(f).__name__ for f in chain][-2:] == ["Correct", "Duplicate"]
    q1, q2 = Question("q1", "What is $2+2$?", "4"), Question("q2", "What is $1+3$?", "4")
    ok, ok_spaced, wrong = "2 + 2 = 4. $\\boxed{4}$", "2 + 2 =  4.\n$\\boxed{4}$", "$\\boxed{5}$"
    items = [(q, {"text": t, "finish": "stop", "n_tokens": 5}) for q, t in [(q1, ok), (q1, ok_spaced), (q1, wrong), (q1, wrong), (q2, ok)]]
    kept, log = run_filters(items, chain, lambda it: {"id": it[0].id, "response": it[1]["text"]})
    assert [(q.id, s["text"]) for q, s in kept] == [("q1", ok), ("q2", ok)]
    assert log.dropped == {"duplicate": 1, "wrong": 2}
    assert [r["reason"] for r in log.rejects].count("duplicate") == 1
