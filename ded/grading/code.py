"""The code answer kind: the final code block of a response, test specs, and grading by running tests.

A code question's gold answer (``Question.answer``, kind ``code``) is a JSON *test spec* (``make_spec``):
``assert`` (HumanEval, MBPP), ``stdin`` (LiveCodeBench, Codeforces-style) or ``functional``
(LiveCodeBench, LeetCode-style). Grading runs two programs in the
sandbox (ded/sandbox.py): the judge (ded/grading/judge.py) holds the spec and decides, the runner
(ded/grading/runner.py) runs the solution out of its reach; see docs/code.md for the rules a verdict
follows. Limits, workers and hidden folders come with each check (``GradingSettings``).
"""

from __future__ import annotations

import json
import re
import textwrap
from dataclasses import asdict
from pathlib import Path

from ded.config import SandboxConfig
from ded.core.cache import short_hash
from ded.core.reasoning import split_reasoning
from ded.grading.answers import ANSWER_KINDS, AnswerKind, GoldError, GradingSettings, Verdict
from ded.sandbox import Limits, run_many

CODE_INSTRUCTION = (
    "\n\nThink it through, then give your complete solution in Python as one ```python code block at the end."
)
STYLES = ("assert", "stdin", "functional")


# --- the final code block of a response ------------------------------------------------------

_FENCE = re.compile(r"^[ \t]*```[ \t]*([A-Za-z0-9_+-]*)[ \t]*$", re.MULTILINE)
_PY = {"", "python", "py", "python3", "py3"}


def extract_code(response: str) -> str | None:
    """The last complete fenced Python block of `response` (after any reasoning), or None.

    One pass over the fence lines (linear in the response): fences pair up in order, opening
    ones may name a language, and a block in another language (```bash) does not count.
    """
    _, answer = split_reasoning(response)
    blocks, start, lang = [], None, ""
    for m in _FENCE.finditer(answer):
        if start is None:
            start, lang = m.end(), m.group(1).lower()
        else:
            if lang in _PY:
                blocks.append(answer[start : m.start()].strip("\n"))
            start = None
    code = textwrap.dedent(blocks[-1]) if blocks else None  # a block indented under a list item is still the program
    return code if code and code.strip() else None


# --- test specs ----------------------------------------------------------------------------------


def make_spec(style: str, *, tests: list[dict] | None = None, test_code: str = "", entry_point: str | None = None,
              fn_name: str | None = None, prelude: str = "") -> str:  # fmt: skip
    """A test spec as the gold string of a code question; GoldError if it cannot grade anything."""
    if style not in STYLES:
        raise GoldError(f"unknown test style {style!r}; allowed: {list(STYLES)}", "bad_tests")
    tests = list(tests or [])
    if style == "assert" and not test_code.strip():
        raise GoldError("no test code", "no_tests")
    if style in ("stdin", "functional"):
        if not tests:
            raise GoldError("no test cases", "no_tests")
        for i, t in enumerate(tests):
            if not isinstance(t, dict) or "input" not in t or "output" not in t:
                raise GoldError(f"test {i} needs 'input' and 'output', got {str(t):.80}", "bad_tests")
    if style == "functional" and not fn_name:
        raise GoldError("a functional test needs the function name (metadata func_name)", "bad_tests")
    spec = {"style": style, "tests": [{"input": str(t["input"]), "output": str(t["output"])} for t in tests],
            "test_code": test_code, "entry_point": entry_point, "fn_name": fn_name, "prelude": prelude}  # fmt: skip
    return json.dumps(spec, sort_keys=True)


def read_spec(gold: str) -> dict:
    spec = json.loads(gold)
    if not isinstance(spec, dict) or spec.get("style") not in STYLES:
        raise ValueError("not a test spec")
    return spec


# --- running: the judge and the runner, their limits, many checks in parallel ------------------------------

JUDGE = Path(__file__).with_name("judge.py").read_text()  # decides; its parameters come on stdin
RUNNER = Path(__file__).with_name("runner.py").read_text()  # runs the solution, out of the judge's way


def _job(response: str, gold: str, per_test_s: float, out_bytes: int) -> tuple[Verdict | None, str | None]:
    """(a verdict already known, or None; the judge's stdin)."""
    try:
        spec = read_spec(gold)
    except (ValueError, TypeError):
        return Verdict(False, "bad_gold"), None
    code = extract_code(response)
    if code is None:
        return Verdict(False, "no_answer"), None
    entry = spec.get("entry_point")
    if entry and spec.get("prelude") and not re.search(rf"^\s*(async\s+)?def\s+{re.escape(entry)}\b", code, re.MULTILINE):
        code = spec["prelude"].rstrip("\n") + "\n" + textwrap.indent(code, "    ")  # only the body: it completes the prompt
    params = {"spec": spec, "code": code, "per_test_s": float(per_test_s), "out": int(out_bytes), "runner": "fds"}
    return None, json.dumps(params)


def _verdict(result) -> Verdict:
    """The judge's verdict, accepted only from a run that ended normally with exactly one verdict line."""
    lines = result.stdout.splitlines()
    if result.status == "ok" and len(lines) == 1:
        try:
            v = json.loads(lines[0])
            return Verdict(v["ok"] is True, str(v["reason"]), str(v.get("detail") or "") or None)
        except (ValueError, TypeError, KeyError):
            pass
    # no verdict: the sandbox stopped the judge (the whole run's time or output) or it failed
    reason = result.status if result.status in ("timeout", "output_limit") else "runtime_error"
    return Verdict(False, reason, (result.stderr or result.status)[-400:])


def _limits(sb: SandboxConfig) -> Limits:
    """The limits of one sandbox (one response's whole run) from the ``sandbox`` config section."""
    return Limits(wall_s=float(sb.wall_s), cpu_s=int(sb.cpu_s), memory_mb=int(sb.memory_mb), nproc=int(sb.nproc),
                  output_bytes=int(sb.output_bytes), disk_mb=int(sb.disk_mb))  # fmt: skip


MEMO_SIZE = 200_000  # verdicts remembered (a filter chain re-checks pairs graded in a batch before), then forgotten at once
_MEMO: dict[str, Verdict] = {}  # key: all that changes a verdict (answer part, spec, per_test_s, limits, hidden paths)


def _memo_key(response: str, gold: str, per_test_s: float, limits: Limits, hide: tuple[str, ...]) -> str:
    return short_hash(split_reasoning(response)[1], gold, per_test_s, asdict(limits), list(hide), n=64)


class CodeAnswer(AnswerKind):
    """Answer kind ``code``: the gold is a test spec (``make_spec``), the answer the final
    ```python block, the verdict whether every test passes in the sandbox."""

    instruction = CODE_INSTRUCTION

    def gold(self, value, n_choices=None) -> str:
        try:
            read_spec(str(value))
        except (ValueError, TypeError):
            raise GoldError(f"not a code test spec: {str(value):.80}", "bad_tests") from None
        return str(value)

    def extract(self, response, n_choices=None):
        return extract_code(response)

    def check(self, response, gold, timeout_s=5, n_choices=None, settings=None) -> Verdict:
        return self.check_many([(response, str(gold))], settings or GradingSettings())[0]

    def check_many(self, items, settings, progress=False) -> list[Verdict]:
        """Verdicts for (response, gold spec) pairs: the judge and runner run in parallel sandboxes
        (``sandbox.workers`` at once); a pair checked before under the same limits runs nothing."""
        limits, per_test_s, workers = _limits(settings.sandbox), float(settings.sandbox.per_test_s), int(settings.sandbox.workers)
        keys = [_memo_key(r, str(g), per_test_s, limits, settings.hide) for r, g in items]
        jobs = [(_MEMO[k], None) if k in _MEMO else _job(r, str(g), per_test_s, limits.output_bytes)
                for k, (r, g) in zip(keys, items)]  # fmt: skip
        todo = [i for i, (v, _) in enumerate(jobs) if v is None]
        results = run_many([(JUDGE, jobs[i][1]) for i in todo], limits, workers=workers or None, progress=progress,
                           hide=settings.hide, partner=RUNNER) if todo else []  # fmt: skip
        out = [v for v, _ in jobs]
        for i, res in zip(todo, results):
            out[i] = _verdict(res)
        if len(_MEMO) > MEMO_SIZE:
            _MEMO.clear()
        _MEMO.update(zip(keys, out))
        return out


ANSWER_KINDS.register("code", CodeAnswer())
