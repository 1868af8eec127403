"""The code answer kind: the final code block of a response, test specs, and grading by running tests.

A code question's gold answer (``Question.answer``, kind ``code``) is a JSON *test spec* (``make_spec``):
``assert`` (HumanEval, MBPP), ``stdin`` (LiveCodeBench, Codeforces-style) or ``functional``
(LiveCodeBench, LeetCode-style). Grading runs the driver program with the solution and its spec
in the sandbox (ded/sandbox.py); see docs/code.md for the rules a verdict follows.
"""

from __future__ import annotations

import json
import re
import secrets
import textwrap
from dataclasses import dataclass

from ded.grading.answers import ANSWER_KINDS, AnswerKind, GoldError, Verdict

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
    from ded.core.reasoning import split_reasoning

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


# --- the driver: one program that runs a solution against its spec ------------------------------

_DRIVER = r'''
import json, math, os, re, signal, sys, time, traceback
SPEC = json.loads(__SPEC__)
CODE = __CODE__
NONCE = __NONCE__
PER_TEST_S = __PER_TEST_S__
_out = os.dup(1)  # the real stdout, kept for the verdict line; each test runs in a child with its own fds

def verdict(ok, reason, detail=""):
    os.write(_out, ("\n" + NONCE + " " + json.dumps({"ok": ok, "reason": reason, "detail": str(detail)[-400:]}) + "\n").encode())
    os._exit(0)

try:
    compiled = compile(CODE, "solution.py", "exec")  # alone: a solution may start with "from __future__ import ..."
    prelude = compile(SPEC["prelude"], "prelude.py", "exec") if SPEC["prelude"] else None
except (SyntaxError, ValueError) as e:
    verdict(False, "unparsable", repr(e))

def solution_namespace(name):
    ns = {"__name__": name}
    if prelude is not None:
        exec(prelude, ns)  # the prompt's imports and helpers, or the usual competitive-programming imports
    exec(compiled, ns)
    return ns

def same_text(got, want):
    g = [l.rstrip() for l in got.strip().splitlines()]
    w = [l.rstrip() for l in want.strip().splitlines()]
    if g == w:
        return True
    if len(g) != len(w):
        return False
    for a, b in zip(g, w):
        ta, tb = a.split(), b.split()
        if len(ta) != len(tb):
            return False
        for x, y in zip(ta, tb):
            if x == y:
                continue
            if re.fullmatch(r"[-+]?\d+", x) and re.fullmatch(r"[-+]?\d+", y):
                if int(x) != int(y):  # integers exactly (answers mod 998244353 differ in the last digits)
                    return False
                continue
            try:
                if not math.isclose(float(x), float(y), rel_tol=1e-6, abs_tol=1e-6):
                    return False
            except ValueError:
                return False
    return True

def same_value(got, want):
    """JSON-equal, tuples as lists, floats within 1e-6 (0.1 + 0.2 is 0.3)."""
    if isinstance(got, bool) or isinstance(want, bool):
        return got == want
    if isinstance(got, float) or isinstance(want, float):
        try:
            return math.isclose(float(got), float(want), rel_tol=1e-6, abs_tol=1e-6)
        except (TypeError, ValueError, OverflowError):
            return False
    if isinstance(got, (list, tuple)) and isinstance(want, (list, tuple)):
        return len(got) == len(want) and all(same_value(a, b) for a, b in zip(got, want))
    if isinstance(got, dict) and isinstance(want, dict):
        return got.keys() == want.keys() and all(same_value(got[k], want[k]) for k in got)
    return got == want

def in_child(i, body, stdin_text, limit_s, exit_ok=False):
    """Run body() in a forked child with the test's stdin on fd 0 and fd 1 in out<i>.txt; the
    child's verdict is the file res<i>.txt ("PASS" or a reason line), so an early os._exit(0) is
    no pass. Returns (reason or None, detail, stdout text). The parent enforces the time limit:
    a solution cannot catch it."""
    with open("in.txt", "w") as f:
        f.write(stdin_text)
    for name in ("out.txt", "res.txt", "err.txt"):
        if os.path.exists(name):
            os.remove(name)
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        try:
            os.setpgid(0, 0)
            fd = os.open("in.txt", os.O_RDONLY); os.dup2(fd, 0); os.close(fd)
            fd = os.open("out.txt", os.O_WRONLY | os.O_CREAT | os.O_TRUNC); os.dup2(fd, 1); os.close(fd)
            fd = os.open(os.devnull, os.O_WRONLY); os.dup2(fd, 2); os.close(fd)
            res = os.open("res.txt", os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
            try:
                outcome = body()
            except SystemExit as e:
                outcome = "PASS" if e.code in (None, 0) else "runtime_error exit status %r" % (e.code,)
            except AssertionError:
                outcome = "wrong " + traceback.format_exc(limit=-2)
            except BaseException as e:
                outcome = "runtime_error " + "".join(traceback.format_exception_only(type(e), e)).strip()
            try:
                sys.stdout.flush()
            except BaseException:
                pass
            os.write(res, str(outcome).encode(errors="replace")[:2000])
        finally:
            os._exit(0)
    t0 = time.monotonic()
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if time.monotonic() - t0 > limit_s:
            try:
                os.killpg(pid, signal.SIGKILL)
            except OSError:
                os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            return "timeout", "test %d ran past %ss" % (i, limit_s), ""
        time.sleep(0.002)
    got = open("out.txt", errors="replace").read() if os.path.exists("out.txt") else ""
    res = open("res.txt", errors="replace").read() if os.path.exists("res.txt") else ""
    if res == "PASS":
        return None, "", got
    if not res and exit_ok and os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0:
        return None, "", got  # stdin style: flushed and os._exit(0) (fast-IO templates); its output decides
    if not res:
        how = "signal %d" % -os.WTERMSIG(status) if os.WIFSIGNALED(status) else "status %d" % os.WEXITSTATUS(status)
        return "runtime_error", "test %d: the program ended itself (%s) before its result" % (i, how), got
    reason, _, detail = res.partition(" ")
    return reason, "test %d: %s" % (i, detail), got

style = SPEC["style"]
if style == "assert":
    def body():
        os.dup2(os.open(os.devnull, os.O_WRONLY), 1)  # prints of the solution do not count against the output limit
        ns = solution_namespace("solution")
        exec(compile(SPEC["test_code"], "tests.py", "exec"), ns)
        if SPEC["entry_point"]:
            if SPEC["entry_point"] not in ns:
                raise NameError("the solution defines no %r" % SPEC["entry_point"])
            ns["check"](ns[SPEC["entry_point"]])
        return "PASS"
    reason, detail, _ = in_child(0, body, "", PER_TEST_S * 3)
    if reason:
        verdict(False, reason, detail)
elif style == "stdin":
    def run_main():
        solution_namespace("__main__")
        return "PASS"
    for i, t in enumerate(SPEC["tests"]):
        reason, detail, got = in_child(i, run_main, t["input"], PER_TEST_S, exit_ok=True)
        if reason:
            verdict(False, reason, detail)
        if not same_text(got, t["output"]):
            verdict(False, "wrong", "test %d: expected %r, got %r" % (i, t["output"][:100], got[:100]))
elif style == "functional":
    name = SPEC["fn_name"]
    for i, t in enumerate(SPEC["tests"]):
        try:
            args = [json.loads(line) for line in t["input"].split("\n") if line.strip()]
            want = json.loads(t["output"])
        except ValueError as e:
            verdict(False, "bad_gold", "test %d: %r" % (i, e))
        def call():
            os.dup2(os.open(os.devnull, os.O_WRONLY), 1)
            ns = solution_namespace("solution")
            if "Solution" in ns and hasattr(ns["Solution"], name):
                fn = getattr(ns["Solution"](), name)
            elif name in ns:
                fn = ns[name]
            else:
                raise NameError("the solution defines no Solution.%s or %s" % (name, name))
            got = fn(*args)
            if not same_value(got, want):
                return "wrong expected %r, got %r" % (want, got)
            return "PASS"
        reason, detail, _ = in_child(i, call, "", PER_TEST_S)
        if reason:
            verdict(False, reason, detail)
verdict(True, "correct")
'''


def driver(code: str, spec: dict, per_test_s: float, nonce: str) -> str:
    """The program that grades `code` against `spec` and reports on one line tagged `nonce`."""
    return (_DRIVER.replace("__SPEC__", repr(json.dumps(spec))).replace("__CODE__", repr(code))
            .replace("__NONCE__", repr(nonce)).replace("__PER_TEST_S__", repr(float(per_test_s))))  # fmt: skip


# --- running: limits, one check, many checks in parallel ----------------------------------------


@dataclass
class Settings:
    per_test_s: float = 4.0  # each test (a call, a stdin run); the whole run also has the sandbox's wall_s
    workers: int = 0  # sandboxes at once; 0 = every core
    limits: object = None  # ded.sandbox.Limits; None = its defaults
    hide: tuple[str, ...] = ()  # more paths the programs must not see (the run's cache and output folders)


SETTINGS = Settings()


def configure(cfg, hide: tuple[str, ...] = ()) -> None:
    """Take the ``sandbox`` config section (ded.config.SandboxConfig) for every later check;
    `hide`: folders the programs must not see besides the repository, home and data folder."""
    from ded.sandbox import Limits

    SETTINGS.per_test_s, SETTINGS.workers, SETTINGS.hide = float(cfg.per_test_s), int(cfg.workers), tuple(str(h) for h in hide)
    SETTINGS.limits = Limits(wall_s=float(cfg.wall_s), cpu_s=int(cfg.cpu_s), memory_mb=int(cfg.memory_mb), nproc=int(cfg.nproc),
                             output_bytes=int(cfg.output_bytes), disk_mb=int(cfg.disk_mb))  # fmt: skip


def _job(response: str, gold: str) -> tuple[Verdict | None, str | None, str | None]:
    """(a verdict already known, or None; the program to run; its nonce)."""
    try:
        spec = read_spec(gold)
    except (ValueError, TypeError):
        return Verdict(False, "bad_gold"), None, None
    code = extract_code(response)
    if code is None:
        return Verdict(False, "no_answer"), None, None
    entry = spec.get("entry_point")
    if entry and spec.get("prelude") and not re.search(rf"^\s*(async\s+)?def\s+{re.escape(entry)}\b", code, re.MULTILINE):
        code = spec["prelude"].rstrip("\n") + "\n" + textwrap.indent(code, "    ")  # only the body: it completes the prompt
    nonce = "DED-" + secrets.token_hex(8)
    return None, driver(code, spec, SETTINGS.per_test_s, nonce), nonce


def _verdict(result, nonce: str) -> Verdict:
    for line in reversed(result.stdout.splitlines()):
        if line.startswith(nonce + " "):
            try:
                v = json.loads(line[len(nonce) + 1 :])
            except ValueError:
                break
            return Verdict(bool(v["ok"]), v["reason"], v.get("detail") or None)
    # no verdict line: the sandbox stopped the program (time, output) or it ended itself early
    reason = result.status if result.status in ("timeout", "output_limit") else "runtime_error"
    return Verdict(False, reason, (result.stderr or result.status)[-400:])


def _limits():
    from ded.sandbox import Limits

    return SETTINGS.limits or Limits()


_MEMO: dict[str, Verdict] = {}  # verdicts of check_many, so a later check of the same pair (a filter chain) runs nothing


def _memo_key(response: str, gold: str) -> str:
    import hashlib

    from ded.core.reasoning import split_reasoning

    return hashlib.sha256(f"{split_reasoning(response)[1]}\0{gold}".encode()).hexdigest()


def check_many(pairs: list[tuple[str, str]], progress: bool = False) -> list[Verdict]:
    """Verdicts for (response, gold spec) pairs, the programs run in parallel sandboxes
    (``sandbox.workers`` at once); each verdict is remembered for later checks of the same pair."""
    from ded.sandbox import run_many

    keys = [_memo_key(r, g) for r, g in pairs]
    jobs = [(_MEMO[k], None, None) if k in _MEMO else _job(r, g) for k, (r, g) in zip(keys, pairs)]
    todo = [i for i, (v, _, _) in enumerate(jobs) if v is None]
    results = run_many([(jobs[i][1], "") for i in todo], _limits(), workers=SETTINGS.workers or None, progress=progress,
                       hide=SETTINGS.hide) if todo else []  # fmt: skip
    out = [v for v, _, _ in jobs]
    for i, res in zip(todo, results):
        out[i] = _verdict(res, jobs[i][2])
    if len(_MEMO) > 200_000:
        _MEMO.clear()
    _MEMO.update(zip(keys, out))
    return out


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

    def check(self, response, gold, timeout_s=5, n_choices=None) -> Verdict:
        return check_many([(response, str(gold))])[0]  # remembered: a pair checked in a batch before runs nothing


ANSWER_KINDS.register("code", CodeAnswer())


