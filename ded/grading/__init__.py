"""Grading: the answer kinds (answers.py: math, gsm8k, choice; code.py: code, its tests run by
driver.py in the sandbox).

Both modules are imported here, so importing anything of ``ded.grading`` registers every kind in
``ANSWER_KINDS``; code.py imports answers.py and answers.py nothing of this package, so no cycle.
"""

from ded.grading import answers, code  # noqa: F401 - registers every answer kind
