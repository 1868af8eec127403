"""The ``solver`` backend: a programmatic teacher that reads each question back from its text
and writes a worked solution in one fixed, terse style of its own (the ``teacher.task`` entry of
``ded.data.solvers.SOLVERS``: multistep reads the arithmetic from the text, code answers with
the question's reference solution, ``Request.reference``).

With ``style: fixed`` it is never wrong and never varies: every sample of a question is the
same text. With ``style: varied`` each sample is worded anew from its seed (same arithmetic,
different phrasing, order of lines and length): an always-correct teacher whose samples differ,
which gives diversity selection something to choose from on CPU.
That is the point of it in a teacher line-up: a teacher whose accuracy is perfect but whose
style is unlike the student's own, so "does the most accurate teacher make the best student?"
can be asked on CPU. A question the solver cannot read comes back as ``finish="missing"`` with
no text (counted and filtered like any unusable trajectory), never as a guess.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Iterator

from ded.config import ModelConfig, one_of
from ded.data.solvers import SOLVERS
from ded.generation import Backend, Completion, Request
from ded.generation.backends import register_backend


@dataclass
class SolverModelConfig(ModelConfig):
    backend: str = "solver"
    path: str = "solver"  # a label: there are no weights
    task: str = "multistep"  # the ded.data.solvers.SOLVERS entry that writes the solutions
    style: str = "fixed"  # fixed: one text per question | varied: each sample worded anew (seeded), same arithmetic

    def __post_init__(self):
        # task: name checked by the plug-in loader
        one_of(self.style, ["fixed", "varied"], "style")


@register_backend("solver", SolverModelConfig)
def build(mcfg: SolverModelConfig, cache_root: str, role: str, path: str, identity: dict | None) -> "SolverBackend":
    return SolverBackend(mcfg.task, mcfg.style)


class SolverBackend(Backend):
    def __init__(self, task: str, style: str = "fixed"):
        self.solver = SOLVERS[task]
        self.style = style
        self.identity = {"solver": task, "style": style, "version": 1}  # a change to the solver's wording bumps the version

    def generate(self, requests: list[Request], sampling: dict) -> Iterator[list[Completion]]:
        out = []
        for r in requests:
            question = r.messages[-1]["content"]
            try:
                if self.style == "fixed":
                    text, finish = self.solver.fixed(question, r.reference), "stop"
                else:  # one stream per (seed, question, sample): the same request always gets the same words
                    text, finish = self.solver.varied(question, r.reference, random.Random(f"{r.seed}:{r.qhash}:{r.index}")), "stop"
            except ValueError:  # not a question of its task: no guess
                text, finish = "", "missing"
            out.append(Completion(r, text, 0, finish))  # no tokenizer: 0 = unknown, as in replay
        yield out
