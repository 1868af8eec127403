"""Tasks and their worked examples: the plug-in points a source of questions fills.

A task (``corpus.task``, an entry of ``TASKS``) is a function ``(corpus, eval_size) -> (train
pool, held-out split)`` taking the ``corpus`` config section and the held-out size
(``eval.size``); the two lists never share a question. Its worked examples (``WORKED_EXAMPLES``,
named by a model's ``fewshot_task``) are chat turns a model is shown before every question.
A task module registers both (ded/data/arithmetic.py is the shortest); ded.plugins imports it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from ded.core.registry import ConfigError, Registry
from ded.data import Question

Task = Callable[..., tuple[list[Question], list[Question]]]
TASKS: Registry[Task] = Registry("corpus.task")


@dataclass(frozen=True)
class WorkedExamples:
    turns: Callable[[int, str], list[dict]]  # (n, style) -> 2n chat turns, user then assistant
    styles: tuple[str, ...] = ("terse",)  # the fewshot_style values it has


WORKED_EXAMPLES: Registry[WorkedExamples] = Registry("fewshot_task")
DEFAULT_EXAMPLES = "arithmetic"  # what a task without its own gets: what they teach a small model is the answer format (\boxed{})


def load_task(corpus, eval_size: int) -> tuple[list[Question], list[Question]]:
    """(train pool, held-out split) of the task ``corpus.task``."""
    return TASKS[corpus.task](corpus, eval_size)


def worked_examples(task: str | None, n: int, style: str = "terse") -> list[dict]:
    """`n` worked examples of `task` in `style` as chat turns; a task without its own (pools) gets
    the arithmetic ones."""
    examples = WORKED_EXAMPLES[task if task in WORKED_EXAMPLES else DEFAULT_EXAMPLES]
    if style not in examples.styles:
        raise ConfigError(f"fewshot_style={style!r}: the {task or DEFAULT_EXAMPLES} task's worked examples are {list(examples.styles)}")
    return examples.turns(n, style)
