"""Questions, the unit every stage works on; the modules of this package supply them.

Tasks and worked examples: ded/data/tasks.py (arithmetic.py and multistep.py are built in,
pools.py reads files and hub datasets, code.py code datasets); evaluation sets: evalsets.py;
decontamination: decontam.py; programmatic teachers: solvers.py.
"""

from __future__ import annotations

from dataclasses import dataclass


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
