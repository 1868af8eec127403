"""A built-in, seeded, verifiable task of multi-step word problems with graded difficulty.

Why: on one-step sums a teacher's correct answers are nearly all the same string, so diversity
selection has nothing to choose from. Here a question is a short story of two to four steps
("Mia has 7 shells. Mia finds 3 more shells. Mia gives 4 shells to a friend. How many shells
does Mia have now?"), so correct solutions of one question can differ in wording, order and
length, and DED's diversity question becomes testable on CPU.

The task owns its data, rendering and grading:
  * ``STEPS``: each kind of step is one sentence template, its regular expression and its
    arithmetic, so a question can be read back from its text alone;
  * ``solve(text)``: reads a question back and writes a worked solution in one fixed terse style
    (the ``solver`` teacher, ded/generation/backends/solver.py: never wrong, unlike any student;
    registered in ``ded.data.solvers.SOLVERS``);
  * ``FEWSHOT``: three worked examples in three styles (terse, step by step, ``<think>``), which
    prompted teachers prepend (``fewshot_style``);
  * the train pool and the held-out split are disjoint by construction (eval drawn first, its
    texts excluded from the pool), as in the arithmetic task.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from typing import Callable

from ded.core.registry import ConfigError
from ded.data import Question
from ded.data.arithmetic import draw
from ded.data.solvers import SOLVERS, Solver
from ded.data.tasks import TASKS, WORKED_EXAMPLES, WorkedExamples

NAMES = ["Mia", "Leo", "Ava", "Sam", "Zoe", "Ben", "Ivy", "Max", "Lea", "Tom", "Kim", "Ray"]
ITEMS = ["apples", "shells", "stamps", "marbles", "cards", "pens", "stickers", "coins", "books", "beads"]


@dataclass(frozen=True)
class Step:
    """One kind of sentence: its template (``{n}`` name, ``{i}`` items, ``{a}``/``{b}`` numbers),
    how it changes the count, and how the solver writes that change."""

    template: str
    apply: Callable[[int, int, int], int]
    show: Callable[[int, int, int], str]  # (count before, a, b) -> "x + a = y"-style working


STEPS: dict[str, Step] = {
    "buy": Step("{n} buys {a} more {i}.", lambda x, a, b: x + a, lambda x, a, b: f"{x} + {a} = {x + a}"),
    "find": Step("{n} finds {a} more {i}.", lambda x, a, b: x + a, lambda x, a, b: f"{x} + {a} = {x + a}"),
    "give": Step("{n} gives {a} {i} to a friend.", lambda x, a, b: x - a, lambda x, a, b: f"{x} - {a} = {x - a}"),
    "lose": Step("{n} loses {a} {i}.", lambda x, a, b: x - a, lambda x, a, b: f"{x} - {a} = {x - a}"),
    "packs": Step("{n} buys {a} bags with {b} {i} in each bag.", lambda x, a, b: x + a * b,
                  lambda x, a, b: f"{a} \\times {b} = {a * b}, {x} + {a * b} = {x + a * b}"),  # fmt: skip
    "double": Step("{n} doubles the number of {i}.", lambda x, a, b: 2 * x, lambda x, a, b: f"2 \\times {x} = {2 * x}"),
    "share": Step("{n} splits the {i} equally into {a} boxes and keeps one box.", lambda x, a, b: x // a,
                  lambda x, a, b: f"{x} \\div {a} = {x // a}"),  # fmt: skip
}

START = "{n} has {a} {i}."
ASK = "How many {i} does {n} have now?"

# Levels: (number of steps after the start, step kinds to draw from, largest start, largest operand).
LEVELS: dict[int, tuple[int, tuple[str, ...], int, int]] = {
    1: (1, ("buy", "find", "give", "lose"), 9, 9),
    2: (2, ("buy", "find", "give", "lose"), 9, 9),
    3: (2, ("buy", "give", "packs", "double"), 12, 5),
    4: (3, ("buy", "find", "give", "lose", "packs", "double"), 20, 9),
    5: (4, tuple(STEPS), 30, 9),
}


def _operands(kind: str, count: int, top: int, rng: random.Random) -> tuple[int, int] | None:
    """Operands for one step that keep the count a whole, positive, modest number (None: no fit)."""
    if kind in ("give", "lose"):
        return (rng.randint(2, count - 1), 0) if count > 2 else None  # never "1 apples", never none left
    if kind == "share":
        ways = [d for d in range(2, 6) if count % d == 0]
        return (rng.choice(ways), 0) if ways else None
    if kind == "packs":
        return rng.randint(2, min(top, 5)), rng.randint(2, min(top, 6))
    if kind == "double":
        return (0, 0) if count <= 50 else None
    return rng.randint(2, top), 0


def make_question(level: int, rng: random.Random) -> Question:
    """One question of `level`: a start sentence, the level's number of steps, the ask."""
    n_steps, kinds, start_top, top = LEVELS[level]
    name, items = rng.choice(NAMES), rng.choice(ITEMS)
    count = rng.randint(2, start_top)
    sentences = [START.format(n=name, a=count, i=items)]
    while len(sentences) <= n_steps:
        kind = rng.choice(kinds)
        ops = _operands(kind, count, top, rng)
        if ops is None:
            continue
        a, b = ops
        count = STEPS[kind].apply(count, a, b)
        sentences.append(STEPS[kind].template.format(n=name, a=a, b=b, i=items))
    text = " ".join(sentences + [ASK.format(n=name, i=items)])
    return Question(id="", text=text, answer=str(count), level=level, domain="word_problems")


def _pattern(template: str) -> re.Pattern:
    body = re.escape(template).replace(r"\{n\}", r"(?P<n>\w+)").replace(r"\{i\}", r"(?P<i>\w+)")
    return re.compile(body.replace(r"\{a\}", r"(?P<a>\d+)").replace(r"\{b\}", r"(?P<b>\d+)") + r"$")


_START, _STEPS = _pattern(START), {kind: _pattern(s.template) for kind, s in STEPS.items()}


def read(text: str) -> tuple[int, list[tuple[str, int, int]]]:
    """(start count, [(step kind, a, b)]) of a question's text; ValueError names a sentence no template reads."""
    sentences = re.findall(r"[^.?]+[.?]", text)
    if len(sentences) < 2 or not (m := _START.match(sentences[0].strip())):
        raise ValueError(f"not a multistep question (no start sentence): {text[:80]!r}")
    start, steps = int(m["a"]), []
    for s in sentences[1:-1]:
        for kind, pat in _STEPS.items():
            if m := pat.match(s.strip()):
                g = m.groupdict()
                steps.append((kind, int(g.get("a") or 0), int(g.get("b") or 0)))
                break
        else:
            raise ValueError(f"not a multistep step sentence: {s.strip()!r}")
    return start, steps


def solve(text: str) -> str:
    """A worked solution in the solver's fixed terse style: one line per step, then the boxed answer."""
    count, steps = read(text)
    lines = [f"Start: {count}."]
    for kind, a, b in steps:
        lines.append(f"{STEPS[kind].show(count, a, b)}.")
        count = STEPS[kind].apply(count, a, b)
    return "\n".join(lines + [f"Answer: $\\boxed{{{count}}}$"])


# How a varied solution may say each part: always the same arithmetic, in different words.
_OPEN = ["{n} starts with {x} {i}.", "At first {n} has {x} {i}.", "We begin with {x} {i}.", "Start: {x}."]
_SAY = {
    "+": ["{w}, so {n} has {x} + {a} = {y} {i}.", "{x} + {a} = {y}.", "Adding {a} gives {y} {i}.", "Now {y}, because {x} + {a} = {y}."],
    "-": ["{w}, so {n} has {x} - {a} = {y} {i}.", "{x} - {a} = {y}.", "Taking away {a} leaves {y} {i}.", "Now {y}, because {x} - {a} = {y}."],
    "packs": ["{w}: {a} \\times {b} = {p} more, so {x} + {p} = {y}.", "The bags hold {a} \\times {b} = {p} {i}; {x} + {p} = {y}.",
              "{p} new {i} ({a} bags of {b}), {y} in all.", "{x} + {a} \\times {b} = {x} + {p} = {y}."],
    "double": ["Doubling gives 2 \\times {x} = {y}.", "{x} doubled is {y} {i}.", "2 \\times {x} = {y}.", "Twice {x} is {y}."],
    "share": ["{x} \\div {a} = {y} {i} in each box, and {n} keeps one box.", "{x} \\div {a} = {y}.", "Each box gets {y}, since {x} / {a} = {y}.",
              "Keeping one of {a} equal boxes leaves {y}."],
}
_CLOSE = ["The answer is $\\boxed{{{y}}}$.", "So {n} has $\\boxed{{{y}}}$ {i} now.", "Answer: $\\boxed{{{y}}}$", "$\\boxed{{{y}}}$"]
_OP = {"buy": "+", "find": "+", "give": "-", "lose": "-", "packs": "packs", "double": "double", "share": "share"}


def solve_varied(text: str, rng: random.Random) -> str:
    """A worked solution with the same arithmetic as `solve`, worded by `rng`: per step one of four
    phrasings, an opening line or none, one of four closings, lines or one paragraph. Always correct;
    two samples of one question differ in wording, length and layout (what diversity selection sees)."""
    count, steps = read(text)
    start = _START.match(text[: text.index(".") + 1])  # read() has checked it
    name, items = start["n"], start["i"]
    parts = [rng.choice(_OPEN).format(n=name, x=count, i=items)] if rng.random() < 0.7 else []
    for kind, a, b in steps:
        y = STEPS[kind].apply(count, a, b)
        what = STEPS[kind].template.format(n=name, a=a, b=b, i=items).rstrip(".")
        parts.append(rng.choice(_SAY[_OP[kind]]).format(w=what, n=name, x=count, a=a, b=b, p=a * b, y=y, i=items))
        count = y
    parts.append(rng.choice(_CLOSE).format(n=name, y=count, i=items))
    return ("\n" if rng.random() < 0.5 else " ").join(parts)


# Worked examples a prompted teacher prepends (``fewshot: n`` turns, ``fewshot_style``). Fixed
# questions, excluded from both splits.
DEMO_QUESTIONS = [
    "Nia has 3 plums. Nia buys 4 more plums. Nia gives 2 plums to a friend. How many plums does Nia have now?",
    "Eli has 4 kites. Eli buys 2 bags with 3 kites in each bag. How many kites does Eli have now?",
    "Uma has 5 rings. Uma doubles the number of rings. Uma loses 3 rings. How many rings does Uma have now?",
]
FEWSHOT: dict[str, list[str]] = {
    "terse": [
        "3 + 4 = 7. 7 - 2 = 5. The answer is $\\boxed{5}$.",
        "2 \\times 3 = 6. 4 + 6 = 10. The answer is $\\boxed{10}$.",
        "2 \\times 5 = 10. 10 - 3 = 7. The answer is $\\boxed{7}$.",
    ],
    "stepwise": [
        "Nia starts with 3 plums. After buying 4 more she has 3 + 4 = 7 plums. After giving 2 away she has "
        "7 - 2 = 5 plums. The answer is $\\boxed{5}$.",
        "Eli starts with 4 kites. The bags hold 2 \\times 3 = 6 kites, so Eli has 4 + 6 = 10 kites. "
        "The answer is $\\boxed{10}$.",
        "Uma starts with 5 rings. Doubling gives 2 \\times 5 = 10 rings. Losing 3 leaves 10 - 3 = 7 rings. "
        "The answer is $\\boxed{7}$.",
    ],
    "think": [
        "<think>\nStart with 3. Buying 4 makes 7. Giving 2 away leaves 5.\n</think>\n3 + 4 - 2 = 5. The answer is $\\boxed{5}$.",
        "<think>\nTwo bags of 3 is 6. 4 and 6 make 10.\n</think>\n4 + 2 \\times 3 = 10. The answer is $\\boxed{10}$.",
        "<think>\nDouble 5 is 10. Take away 3, that is 7.\n</think>\n2 \\times 5 - 3 = 7. The answer is $\\boxed{7}$.",
    ],
}


def fewshot_messages(n: int, style: str = "terse") -> list[dict]:
    """The first n worked examples in `style` as alternating user/assistant turns."""
    if style not in FEWSHOT:
        raise ConfigError(f"fewshot_style: {style!r} is not a multistep style; allowed: {sorted(FEWSHOT)}")
    if n > len(DEMO_QUESTIONS):
        raise ConfigError(f"fewshot={n}: the multistep task has {len(DEMO_QUESTIONS)} worked examples")
    msgs: list[dict] = []
    for q, a in zip(DEMO_QUESTIONS[:n], FEWSHOT[style][:n]):
        msgs += [{"role": "user", "content": q}, {"role": "assistant", "content": a}]
    return msgs


def build(pool_size: int, eval_size: int, levels: list[int], seed: int) -> tuple[list[Question], list[Question]]:
    """Return (train pool, held-out eval split), disjoint and deterministic in `seed`."""
    bad = [lv for lv in levels if lv not in LEVELS]
    if bad:
        raise ConfigError(f"corpus.levels: unknown level(s) {bad} for task=multistep; allowed: {sorted(LEVELS)}")
    demos = set(DEMO_QUESTIONS)
    held_out = draw(eval_size, levels, seed * 1_000_003 + 1, demos, "eval.size", make_question)
    pool = draw(pool_size, levels, seed * 1_000_003 + 2, demos | {q.text for q in held_out}, "corpus.pool_size", make_question)
    for i, q in enumerate(held_out):
        q.id = f"multi-eval-{i}"
    for i, q in enumerate(pool):
        q.id = f"multi-{i}"
    return pool, held_out


@TASKS.register("multistep")
def task(corpus, eval_size: int) -> tuple[list[Question], list[Question]]:
    """The seeded multi-step word problems at ``corpus.levels``."""
    return build(corpus.pool_size, eval_size, list(corpus.levels), corpus.seed)


WORKED_EXAMPLES.register("multistep", WorkedExamples(fewshot_messages, styles=tuple(FEWSHOT)))
SOLVERS.register("multistep", Solver(fixed=lambda text, reference: solve(text),  # read back from its text: no reference needed
                                     varied=lambda text, reference, rng: solve_varied(text, rng)))
