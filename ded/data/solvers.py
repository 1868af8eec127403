"""Programmatic solvers: tasks whose questions a program answers, for the ``solver`` teacher
(ded/generation/backends/solver.py, ``teacher.task``).

A solver writes a worked solution from a question's text and, where the source has one, its
reference solution (``Question.reference``); a question it cannot answer raises ValueError (the
teacher then returns no text, never a guess). A task registers its solver where it is defined::

    SOLVERS.register("multistep", Solver(fixed=..., varied=...))
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Callable

from ded.core.registry import Registry


@dataclass(frozen=True)
class Solver:
    fixed: Callable[[str, str], str]  # (question text, reference) -> one worked solution, the same every time
    varied: Callable[[str, str, random.Random], str]  # (question text, reference, rng) -> a correct solution worded anew from rng


SOLVERS: Registry[Solver] = Registry("teacher.task")
