"""Questions, the unit every stage works on, and the tasks that supply them.

A task (``corpus.task``, an entry of ``TASKS``) is a function ``(corpus, eval_size) -> (train
pool, held-out split)`` taking the ``corpus`` config section and the held-out size
(``eval.size``); the two lists never share a question.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from ded.core.registry import ConfigError, Registry


@dataclass
class Question:
    id: str
    text: str  # exactly what the model is asked (the user turn)
    answer: str  # gold answer, as its answer kind reads it
    level: int = 0  # difficulty level where the source has one (0 = unknown)
    domain: str = "math"  # subject area (math, arithmetic, stem, ...)
    kind: str = "math"  # answer kind, how answers are checked: a ded.grading.answers.ANSWER_KINDS name
    source: str = ""  # where it was read ("file:line", "dataset[split]: row i"): errors about it name it
    reference: str = ""  # a correct solution where the source has one (HumanEval, MBPP): what the code solver teacher answers


Task = Callable[..., tuple[list[Question], list[Question]]]
TASKS: Registry[Task] = Registry("corpus.task")


@TASKS.register("arithmetic")
def arithmetic_task(corpus, eval_size: int) -> tuple[list[Question], list[Question]]:
    """The built-in seeded arithmetic questions at ``corpus.levels`` (ded/data/arithmetic.py)."""
    from ded.data import arithmetic

    return arithmetic.build(corpus.pool_size, eval_size, list(corpus.levels), corpus.seed)


@TASKS.register("multistep")
def multistep_task(corpus, eval_size: int) -> tuple[list[Question], list[Question]]:
    """The built-in seeded multi-step word problems at ``corpus.levels`` (ded/data/multistep.py)."""
    from ded.data import multistep

    return multistep.build(corpus.pool_size, eval_size, list(corpus.levels), corpus.seed)


@TASKS.register("pool")
def pool_task(corpus, eval_size: int) -> tuple[list[Question], list[Question]]:
    """Questions from ``corpus.pools`` (ded/data/pools.py), mixed by their weights.

    One seeded mix of pool_size + eval_size questions: the last eval_size are held out, so the
    held-out split never overlaps the train pool and growing the pool keeps its prefix stable.
    """
    from ded.data.pools import load_pools

    questions, _ = load_pools(list(corpus.pools), size=corpus.pool_size + eval_size, seed=corpus.seed)
    return questions[: corpus.pool_size], questions[corpus.pool_size :]


def load_task(corpus, eval_size: int) -> tuple[list[Question], list[Question]]:
    """(train pool, held-out split) of the task ``corpus.task``."""
    return TASKS[corpus.task](corpus, eval_size)


def worked_examples(task: str | None, n: int, style: str = "terse") -> list[dict]:
    """`n` worked examples of `task` in `style` as chat turns. A task without its own (pools)
    gets the arithmetic ones: what they teach a small model is the answer format (\\boxed{})."""
    if task == "multistep":
        from ded.data.multistep import fewshot_messages

        return fewshot_messages(n, style)
    if task == "code":
        from ded.data.code import fewshot_messages

        if style != "terse":
            raise ConfigError(f"fewshot_style={style!r}: the code task has only terse worked examples")
        return fewshot_messages(n)
    from ded.data.arithmetic import fewshot_messages

    if style != "terse":
        raise ConfigError(f"fewshot_style={style!r}: the {task or 'arithmetic'} task has only terse worked examples")
    return fewshot_messages(n)
