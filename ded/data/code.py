"""The code domain: code questions, the final code block of a response, and grading by running tests.

A code question's gold answer (``Question.answer``, kind ``code``) is a JSON *test spec*: how the
tests run and what they are. Three styles cover the benchmarks:

- ``assert`` (HumanEval, MBPP): the solution is a module; ``test_code`` runs after it in the same
  namespace (HumanEval's ``check`` is then called on ``entry_point``; MBPP's asserts run as is).
- ``stdin`` (LiveCodeBench, Codeforces-style): the program runs as ``__main__`` once per test
  with the test's ``input`` on stdin; its stdout must match ``output`` line by line (whitespace
  at line ends ignored, numbers within 1e-6).
- ``functional`` (LiveCodeBench, LeetCode-style): ``Solution().<fn_name>(*args)`` (or a top-level
  ``fn_name``) on each test's JSON arguments, one per line, must equal the JSON ``output``.

Grading (ded/grading/code.py) runs one *driver* program (ded/grading/driver.py, the solution and
the spec on its stdin) in the sandbox (ded/sandbox.py: an unprivileged process in its own
namespaces, limits on time, memory, processes and output). The driver runs each test in a forked
child with fresh fds 0 and 1 (stdin from the test, stdout to a file) and kills it past
``per_test_s``, so a solution that closes or replaces its streams, exits with os._exit after
flushing, or catches everything around a slow loop is graded as a judge would; the child reports
through a result file, so an early exit is no pass. The driver reports on the real stdout one line
tagged with a per-run nonce; no such line (a crash, a kill, a timeout) is a failure. As in every
execution-based grader, a program could lie about its own tests (it runs in the driver's process
tree); it cannot get out of the sandbox. Verdict reasons: correct, wrong (a test failed), no_answer
(no code block), unparsable (a syntax error), runtime_error, timeout, output_limit, bad_gold.

The sandbox limits and workers (the ``sandbox`` config section) come with each check
(``ded.grading.answers.GradingSettings``); ``check_answers`` grades many (response, spec) pairs in
parallel across cores.

Readers (pool formats ``humaneval``, ``mbpp``, ``livecodebench``, also used by the evaluation sets
of the same names) turn a source row into (question text, spec, reference solution). A question is
the task text plus ``CODE_INSTRUCTION``; HumanEval's is its function header and docstring to
complete. LiveCodeBench rows carry their release date (``contest_date``): pools and evaluation take
a date window, so a student is scored only on problems published after what it was trained on. Its
private tests come as JSON or, in the later releases, as base64(zlib(pickle(JSON string))): they
are unpickled with a loader that admits no class at all (a string needs none).

Reference solutions (HumanEval's canonical solution, MBPP's code) travel on the question
(``Question.reference``) to the ``solver`` teacher (``teacher.task=code``): an always-correct code
teacher for CPU runs.
"""

from __future__ import annotations

import base64
import io
import json
import pickle
import random
import zlib

from ded.data.pools import RowError, pool_format, question_text
from ded.data.solvers import SOLVERS, Solver
from ded.data.tasks import WORKED_EXAMPLES, WorkedExamples
from ded.grading.answers import GoldError
from ded.grading.code import CODE_INSTRUCTION, make_spec

# What LeetCode and contest judges provide without an import (LeetCode's typing names, the usual
# modules): a solution that copies `List[int]` from the starter code is not failed for its import.
COMMON_IMPORTS = "\n".join([
    "import bisect, collections, functools, heapq, itertools, math, operator, random, re, string, sys",
    "from bisect import bisect_left, bisect_right, insort",
    "from collections import Counter, defaultdict, deque, OrderedDict",
    "from functools import cache, lru_cache, reduce",
    "from heapq import heapify, heappop, heappush",
    "from itertools import accumulate, combinations, permutations, product",
    "from math import ceil, floor, gcd, inf, isqrt, log2, sqrt",
    "from typing import *",
])  # fmt: skip


# --- readers: a source row -> (question text, test spec, reference solution) ---------------------


def humaneval_row(row: dict) -> tuple[str, str, str]:
    """(question, spec, reference solution) of a HumanEval row: complete the given function."""
    prompt, entry = str(row["prompt"]), str(row["entry_point"])
    text = f"Complete the following Python function.\n\n```python\n{prompt.strip()}\n```" + CODE_INSTRUCTION
    spec = make_spec("assert", test_code=str(row["test"]), entry_point=entry, prelude=prompt)  # its imports and helpers (encode_cyclic...)
    reference = prompt + str(row.get("canonical_solution") or "")
    return text, spec, reference


def mbpp_row(row: dict) -> tuple[str, str, str]:
    """(question, spec, reference) of an MBPP row: its task text, asserts and code."""
    tests = list(row.get("test_list") or [])
    if not tests:
        raise GoldError("no test_list", "no_tests")
    text = f"{str(row.get('text') or row.get('prompt')).strip()}\nYour code should pass this test:\n```python\n{tests[0]}\n```" + CODE_INSTRUCTION
    setup = str(row.get("test_setup_code") or "")
    imports = "\n".join(str(x) for x in row.get("test_imports") or [])  # sanitized MBPP: what its asserts import
    spec = make_spec("assert", test_code="\n".join([setup, *tests]), prelude=imports)
    return text, spec, str(row.get("code") or "")


class _NoClasses(pickle.Unpickler):
    def find_class(self, module, name):  # a pickled string needs no class; anything else is refused
        raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a test-case field")


def lcb_tests(value) -> list[dict]:
    """LiveCodeBench test cases from a JSON list, or base64(zlib(pickle(JSON string)))."""
    if isinstance(value, list):
        return value
    text = str(value or "").strip()
    if not text:
        return []
    try:
        return json.loads(text)
    except ValueError:
        pass
    try:
        inner = _NoClasses(io.BytesIO(zlib.decompress(base64.b64decode(text)))).load()
        return json.loads(inner)
    except Exception as e:  # noqa: BLE001 - any undecodable field is a bad row, named by its caller
        raise GoldError(f"test cases are neither JSON nor base64(zlib(pickle(JSON))) ({type(e).__name__})", "bad_tests") from None


def lcb_row(row: dict) -> tuple[str, str, str]:
    """(question, spec, no reference) of a LiveCodeBench code_generation_lite row."""
    tests = lcb_tests(row.get("public_test_cases")) + lcb_tests(row.get("private_test_cases"))
    if not tests:
        raise GoldError("no test cases", "no_tests")
    meta = row.get("metadata") or {}
    meta = json.loads(meta) if isinstance(meta, str) and meta.strip() else (meta if isinstance(meta, dict) else {})
    styles = {t.get("testtype", "stdin") for t in tests}
    if len(styles) > 1:
        raise GoldError(f"mixed test types {sorted(styles)}", "bad_tests")
    style = styles.pop()
    starter = str(row.get("starter_code") or "").strip()
    text = str(row["question_content"]).strip()
    if style == "functional":
        text += f"\n\nComplete this starter code:\n```python\n{starter}\n```"
        spec = make_spec("functional", tests=tests, fn_name=meta.get("func_name"), prelude=COMMON_IMPORTS)
    else:
        text += "\n\nRead the input from standard input and write the answer to standard output."
        spec = make_spec("stdin", tests=tests, prelude=COMMON_IMPORTS)
    return text + CODE_INSTRUCTION, spec, ""


def _register(name: str, reader, **fields: tuple[str, ...]) -> None:
    """`reader` as the pool format `name` (also what an evaluation set of that format reads)."""

    @pool_format(name, "code", "code", **fields)
    def read(row, keys):
        question_text(row, keys)  # a missing or empty question field is named as for every format
        try:
            return reader(row)  # (text, spec, reference solution)
        except KeyError as e:
            raise RowError(f"missing key {e.args[0]!r} ({name} row); the row has {sorted(row)}", "missing_key") from None


# `columns`: what the reader needs besides the named fields, so a .parquet or hub source reads those columns too
_register("humaneval", humaneval_row, question=("prompt",), id=("task_id",), columns=("entry_point", "canonical_solution", "test"))
_register("mbpp", mbpp_row, question=("text", "prompt"), id=("task_id",), columns=("code", "test_list", "test_setup_code", "test_imports"))
_register("livecodebench", lcb_row, question=("question_content",), id=("question_id",), date=("contest_date",),
          columns=("starter_code", "public_test_cases", "private_test_cases", "metadata", "platform", "difficulty"))  # fmt: skip


# --- worked examples and the code solver teacher -------------------------------------------------

_EXAMPLES = [
    ("Write a Python function `add(a, b)` that returns the sum of two numbers.",
     "The sum is a + b.\n\n```python\ndef add(a, b):\n    return a + b\n```"),
    ("Write a Python function `is_even(n)` that returns True when n is even.",
     "n is even when n % 2 is 0.\n\n```python\ndef is_even(n):\n    return n % 2 == 0\n```"),
    ("Write a Python function `largest(xs)` that returns the largest number of a non-empty list.",
     "Keep the best value seen so far.\n\n```python\ndef largest(xs):\n    best = xs[0]\n    for x in xs[1:]:\n        if x > best:\n            best = x\n    return best\n```"),
]  # fmt: skip


def fewshot_messages(n: int) -> list[dict]:
    """`n` worked code examples as chat turns (what they teach: reason briefly, end with a block)."""
    out = []
    for q, a in _EXAMPLES[:n]:
        out += [{"role": "user", "content": q + CODE_INSTRUCTION}, {"role": "assistant", "content": a}]
    return out


WORKED_EXAMPLES.register("code", WorkedExamples(lambda n, style: fewshot_messages(n)))  # fewshot_task=code; terse only


_OPENERS = ["Let me work through this.", "I'll plan the function first.", "We need to implement this carefully.",
            "First, what is asked?", "Let's reason about the cases."]  # fmt: skip
_MIDDLES = ["The reference approach handles every case the docstring lists.", "Edge cases: empty inputs and single items.",
            "A direct implementation is fast enough here.", "I'll check the examples against the plan.",
            "Iterating once over the input is enough."]  # fmt: skip
_CLOSERS = ["Here is the complete solution.", "Final code:", "Putting it together:", "The solution:"]


def solve(question: str, reference: str) -> str:
    """A code question's reference solution (``Question.reference``) as one fixed response."""
    if not reference.strip():
        raise ValueError("no reference solution for this question")
    return f"{_OPENERS[0]}\n\n{_CLOSERS[0]}\n\n```python\n{reference.strip()}\n```"


def solve_varied(question: str, reference: str, rng: random.Random) -> str:
    """The reference solution with its reasoning worded anew from `rng`: correct, yet each sample differs."""
    if not reference.strip():
        raise ValueError("no reference solution for this question")
    lines = [rng.choice(_OPENERS), *rng.sample(_MIDDLES, rng.randint(1, 3)), rng.choice(_CLOSERS)]
    return "\n\n".join(lines) + f"\n\n```python\n{reference.strip()}\n```"


SOLVERS.register("code", Solver(fixed=solve, varied=solve_varied))
