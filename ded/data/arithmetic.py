"""A built-in, seeded, verifiable arithmetic task with graded difficulty.

Why arithmetic: the embedded default must run with no network, and the 135M models need a
task they solve sometimes but not always. Levels go from one-digit sums (the few-shot teacher
solves these nearly always) to two-digit sums (it rarely does), so the pass-rate filter and the
correctness filter have something to filter. Level sizes are finite (level 1 has 81 distinct
questions): a pool that asks for more than a level holds fails with a clear error.

The train pool and the held-out evaluation split are disjoint by construction: every
question is identified by its text, and the eval split is drawn first and its texts are
excluded from the pool.
"""

from __future__ import annotations

import random
import re

from ded.core.registry import ConfigError
from ded.data import Question
from ded.data.solvers import SOLVERS, Solver
from ded.data.tasks import TASKS, WORKED_EXAMPLES, WorkedExamples

# Each level is a function rng -> (expression, value), ordered by how often the few-shot
# SmolLM2-135M teacher solves it (measured: ~96%, ~100%, ~50%, ~29%, ~12% at temperature 0.5).
# The expression is shown as LaTeX, unambiguous under normal operator precedence.


def _l1(r: random.Random):  # one-digit sum
    a, b = r.randint(1, 9), r.randint(1, 9)
    return f"{a} + {b}", a + b


def _l2(r: random.Random):  # one-digit product
    a, b = r.randint(2, 9), r.randint(2, 9)
    return f"{a} \\times {b}", a * b


def _l3(r: random.Random):  # successor of a two-digit number
    a = r.randint(10, 98)
    return f"{a} + 1", a + 1


def _l4(r: random.Random):  # two-digit plus one-digit
    a, b = r.randint(10, 99), r.randint(2, 9)
    return f"{a} + {b}", a + b


def _l5(r: random.Random):  # two-digit sum
    a, b = r.randint(10, 99), r.randint(10, 99)
    return f"{a} + {b}", a + b


LEVELS = {1: _l1, 2: _l2, 3: _l3, 4: _l4, 5: _l5}

PROMPT = "What is ${expr}$?"

# Worked examples a model config can prepend as chat turns (``fewshot: n``). None of them can
# be drawn as a question at the levels above with these exact texts except by chance; the
# builder excludes them from both splits anyway.
FEWSHOT = [
    ("What is $3 + 5$?", "$3 + 5 = 8$. The answer is $\\boxed{8}$."),
    ("What is $4 \\times 3$?", "$4 \\times 3 = 12$. The answer is $\\boxed{12}$."),
    ("What is $27 + 1$?", "$27 + 1 = 28$. The answer is $\\boxed{28}$."),
]


def make_question(level: int, rng: random.Random) -> Question:
    expr, value = LEVELS[level](rng)
    text = PROMPT.format(expr=expr)
    return Question(id="", text=text, answer=str(value), level=level, domain="arithmetic")


def draw(n: int, levels: list[int], seed: int, exclude: set[str], key: str, make=None) -> list[Question]:
    """n distinct questions cycling through `levels` (``make(level, rng)``, default this task's),
    none of whose text is in `exclude`; `key` names the config value that asked for n (the error a
    too-small level set gives)."""
    make = make or make_question
    rng = random.Random(seed)
    out: list[Question] = []
    seen = set(exclude)
    attempts = 0
    while len(out) < n:
        attempts += 1
        if attempts > 100 * n + 1000:
            raise ConfigError(f"{key}: cannot draw {n} distinct questions at corpus.levels={levels} "
                              f"(found {len(out)}); lower {key} or add levels")  # fmt: skip
        q = make(levels[len(out) % len(levels)], rng)
        if q.text in seen:
            continue
        seen.add(q.text)
        out.append(q)
    return out


def build(pool_size: int, eval_size: int, levels: list[int], seed: int) -> tuple[list[Question], list[Question]]:
    """Return (train pool, held-out eval split), disjoint and deterministic in `seed`."""
    bad = [lv for lv in levels if lv not in LEVELS]
    if bad:
        raise ConfigError(f"corpus.levels: unknown level(s) {bad}; allowed: {sorted(LEVELS)}")
    # The eval split is drawn from its own seed stream so growing the pool never changes it,
    # and growing the pool only appends questions (a prefix of a larger pool is the smaller pool).
    demos = {q for q, _ in FEWSHOT}
    held_out = draw(eval_size, levels, seed * 1_000_003 + 1, demos, "eval.size")
    pool = draw(pool_size, levels, seed * 1_000_003 + 2, demos | {q.text for q in held_out}, "corpus.pool_size")
    for i, q in enumerate(held_out):
        q.id = f"arith-eval-{i}"
    for i, q in enumerate(pool):
        q.id = f"arith-{i}"
    return pool, held_out


def fewshot_messages(n: int) -> list[dict]:
    """The first n worked examples as alternating user/assistant turns."""
    if n > len(FEWSHOT):
        raise ValueError(f"fewshot={n}: the arithmetic task has {len(FEWSHOT)} worked examples")
    msgs: list[dict] = []
    for q, a in FEWSHOT[:n]:
        msgs += [{"role": "user", "content": q}, {"role": "assistant", "content": a}]
    return msgs


@TASKS.register("arithmetic")
def task(corpus, eval_size: int) -> tuple[list[Question], list[Question]]:
    """The seeded arithmetic questions at ``corpus.levels``."""
    return build(corpus.pool_size, eval_size, list(corpus.levels), corpus.seed)


WORKED_EXAMPLES.register("arithmetic", WorkedExamples(lambda n, style: fewshot_messages(n)))


# The solver teacher on this task (``teacher=solver_varied teacher.task=arithmetic``): reads the
# expression back from the question; never wrong, and in the varied style worded anew per sample.
_EXPR = re.compile(r"^What is \$(\d+) (\+|\\times) (\d+)\$\?$")
_SAY = {"+": ["${a} + {b} = {v}$.", "Adding {a} and {b} gives {v}.", "{a} plus {b} is {v}.", "Start at {a} and count on {b}: {v}."],
        "\\times": ["${a} \\times {b} = {v}$.", "{a} times {b} is {v}.", "{a} groups of {b} make {v}.",
                    "Multiplying {a} by {b} gives {v}."]}
_CLOSE = ["The answer is $\\boxed{{{v}}}$.", "Answer: $\\boxed{{{v}}}$", "$\\boxed{{{v}}}$", "So the result is $\\boxed{{{v}}}$."]


def read(text: str) -> tuple[int, str, int, int]:
    """(a, op, b, value) of a question's text; ValueError if it is not one of this task's questions."""
    m = _EXPR.match(text.strip())
    if not m:
        raise ValueError(f"not an arithmetic question: {text[:60]!r}")
    a, op, b = int(m[1]), m[2], int(m[3])
    return a, op, b, a + b if op == "+" else a * b


def solve(text: str) -> str:
    a, op, b, v = read(text)
    return _SAY[op][0].format(a=a, b=b, v=v) + " " + _CLOSE[0].format(v=v)  # the worked examples' own form


def solve_varied(text: str, rng: random.Random) -> str:
    a, op, b, v = read(text)
    return rng.choice(_SAY[op]).format(a=a, b=b, v=v) + rng.choice([" ", "\n"]) + rng.choice(_CLOSE).format(v=v)


SOLVERS.register("arithmetic", Solver(fixed=lambda text, reference: solve(text),
                                      varied=lambda text, reference, rng: solve_varied(text, rng)))
