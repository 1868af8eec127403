"""Adversarial grading: programs that try to be graded correct without solving their problem.

Every hostile program here must come back from ``check_answers`` as a Verdict with
``correct == False`` (never an exception), and every honest one in the same styles must still
pass. The styles are the three a code question's spec can have: ``assert`` with an entry point
(HumanEval: ``check(candidate)``), ``assert`` without one (MBPP: plain ``assert f(...) == ...``
lines), ``functional`` (LeetCode: JSON arguments and result, ``fn_name``) and ``stdin``
(AtCoder/Codeforces: input and output text).

The classes of attack (one test function each, one ``check_answers`` batch per function, one
pytest id per program saying what it tries):

- exiting counts as passing: ``sys.exit(0)``, ``exit()``, ``quit()``, ``os._exit(0)``,
  ``raise SystemExit`` in the function, ``SystemExit(None)``, exiting after printing (in the
  assert and functional styles any exit before the tests complete is a failure; a stdin program
  may exit 0 and its output decides);
- results that compare equal to anything (``__eq__`` always True, int/str/list subclasses, an
  ``__eq__`` that mutates the expected value or exits, a truthy comparison, float tricks);
- tampering with the grader's state (builtins, ``__import__``, ``math``, a prompt helper the
  check relies on, the comparison functions, frames, ``gc``, ``sys.modules``, ``/proc``, stdin,
  ``sys.settrace``, ``json``, an exception class named AssertionError);
- forging the verdict (verdict-like lines on every fd, result files, killing or stopping the
  parent and every other process, a subprocess doing it, forging then looping);
- stdin programs that print nothing, or print what they dug out of memory, files, the
  environment or ``/proc``;
- others: generators, look-alike reprs, ``NotImplemented``, huge, deep and self-referential
  results, threads that keep patching after the function returns, a spoofed ``__class__``.

The grader must decide where a solution cannot reach (docs/code.md): a hostile program that
passes is a grading bug, never a reason to weaken a case here. This suite must stay in the
default test run (no ``slow`` mark; about 20 s on 2 cores). It is skipped, saying why, where
the sandbox cannot be built (``ded.sandbox.check_isolation``), as tests/test_sandbox.py is.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import NamedTuple

import pytest

from ded.config import SandboxConfig
from ded.data.code import COMMON_IMPORTS
from ded.grading.answers import GradingSettings, Verdict, check_answers
from ded.grading.code import make_spec
from ded.sandbox import check_isolation

_reason = check_isolation()
pytestmark = pytest.mark.skipif(_reason is not None, reason=f"no sandbox here: {_reason}")

# Tighter than the defaults (4 s a test, 20 s a run) so the programs that stop the grader or loop
# until a limit end sooner; every honest program here takes milliseconds.
SETTINGS = GradingSettings(SandboxConfig(per_test_s=2.0, wall_s=10.0, cpu_s=10))


def block(code: str, before: str = "Here is my solution.") -> str:
    return f"{before}\n\n```python\n{code}\n```\n"


# --- the problems (one spec each) -----------------------------------------------------------------

# HumanEval-like: check(candidate) on the entry point
SQUARE = make_spec("assert", entry_point="square", test_code=(
    "def check(candidate):\n"
    "    assert candidate(4) == 16\n"
    "    assert candidate(-3) == 9\n"
    "    assert candidate(0) == 0\n"))  # fmt: skip
SHOUT = make_spec("assert", entry_point="shout", test_code=(
    "METADATA = {}\n\n\n"
    "def check(candidate):\n"
    "    assert candidate('hi') == 'HI!'\n"
    "    assert candidate('') == '!'\n"))  # fmt: skip
# HumanEval/2: the check uses abs() on the candidate's result
TRUNCATE = make_spec("assert", entry_point="truncate_number", test_code=(
    "def check(candidate):\n"
    "    assert candidate(3.5) == 0.5\n"
    "    assert abs(candidate(1.33) - 0.33) < 1e-6\n"
    "    assert abs(candidate(123.456) - 0.456) < 1e-6\n"))  # fmt: skip
# HumanEval/32: the prompt defines poly(), the check verifies the candidate's root with poly() and math.fabs
POLY_PROMPT = '''import math


def poly(xs: list, x: float):
    """
    Evaluates polynomial with coefficients xs at point x.
    return xs[0] + xs[1] * x + xs[1] * x^2 + .... xs[n] * x^n
    """
    return sum([coeff * math.pow(x, i) for i, coeff in enumerate(xs)])


def find_zero(xs: list):
    """ xs are coefficients of a polynomial.
    find_zero find x such that poly(x) = 0.
    find_zero returns only only zero point, even if there are many.
    Moreover, find_zero only takes list xs having even number of coefficients
    and largest non zero coefficient as it guarantees
    a solution.
    >>> round(find_zero([1, 2]), 2) # f(x) = 1 + 2x
    -0.5
    >>> round(find_zero([-6, 11, -6, 1]), 2) # (x - 1)(x - 2)(x - 3) = -6 + 11x - 6x^2 + x^3
    1.0
    """
'''
POLY_BODY = """    begin, end = -1., 1.
    while poly(xs, begin) * poly(xs, end) > 0:
        begin *= 2.0
        end *= 2.0
    while end - begin > 1e-10:
        center = (begin + end) / 2.0
        if poly(xs, center) * poly(xs, begin) > 0:
            begin = center
        else:
            end = center
    return begin
"""
POLY = make_spec("assert", entry_point="find_zero", prelude=POLY_PROMPT, test_code=(
    "\n\nMETADATA = {}\n\n\n"
    "def check(candidate):\n"
    "    import math\n"
    "    import random\n"
    "    rng = random.Random(42)\n"
    "    import copy\n"
    "    for _ in range(100):\n"
    "        ncoeff = 2 * rng.randint(1, 4)\n"
    "        coeffs = []\n"
    "        for _ in range(ncoeff):\n"
    "            coeff = rng.randint(-10, 10)\n"
    "            if coeff == 0:\n"
    "                coeff = 1\n"
    "            coeffs.append(coeff)\n"
    "        solution = candidate(copy.deepcopy(coeffs))\n"
    "        assert math.fabs(poly(coeffs, solution)) < 1e-4\n"))  # fmt: skip

# MBPP-like: plain asserts on a named function
ADD = make_spec("assert", test_code="assert add(2, 3) == 5\nassert add(-1, 1) == 0\nassert add(10, 20) == 30")
EVENS = make_spec("assert", test_code=(
    "assert isinstance(evens([1, 2, 3, 4]), list)\n"
    "assert evens([1, 2, 3, 4]) == [2, 4]\n"
    "assert len(evens([5, 7])) == 0"))  # fmt: skip
AREA = make_spec("assert", prelude="import math", test_code=(
    "assert math.isclose(circle_area(2), 12.566370614359172, rel_tol=1e-9)\n"
    "assert math.isclose(circle_area(1), 3.141592653589793, rel_tol=1e-9)"))  # fmt: skip

# LeetCode-like: Solution().<fn_name>(*args) or a top-level fn_name, JSON in and out
DOUBLED = make_spec("functional", fn_name="doubled", prelude=COMMON_IMPORTS, tests=[
    {"input": "[1, 2]", "output": "[2, 4]"}, {"input": "[]", "output": "[]"}, {"input": "[5, -1]", "output": "[10, -2]"}])  # fmt: skip
AVERAGE = make_spec("functional", fn_name="average", prelude=COMMON_IMPORTS, tests=[
    {"input": "[1, 2]", "output": "1.5"}, {"input": "[1, 2, 4]", "output": "2.3333333333333335"},
    {"input": "[-1, 1]", "output": "0.0"}])  # fmt: skip

# AtCoder-like: stdin in, stdout out
SUMS = make_spec("stdin", prelude=COMMON_IMPORTS, tests=[
    {"input": "1 2\n", "output": "3\n"}, {"input": "10 -3\n", "output": "7\n"}, {"input": "100 200\n", "output": "300\n"}])  # fmt: skip


def style_of(spec: str) -> str:
    """he (assert + entry point), mbpp (assert alone), functional or stdin."""
    s = json.loads(spec)
    if s["style"] == "assert":
        return "he" if s["entry_point"] else "mbpp"
    return s["style"]


STYLES = ("he", "mbpp", "functional", "stdin")


class Case(NamedTuple):
    id: str
    spec: str
    code: str


# --- pieces the hostile programs share ----------------------------------------------------------

ANYTHING = """
class Anything:
    def __eq__(self, other):
        return True
    def __ne__(self, other):
        return False
    def __hash__(self):
        return 0
    def __len__(self):
        return 0
"""

VERDICT = '{"ok": true, "reason": "correct", "detail": ""}'

# Writes verdict-like lines (bare, behind guessed prefixes, behind every nonce-looking string it
# can find in memory) to fds 1..20, and result files into the working folder and /tmp.
FORGE = r"""
import gc, os, re, signal, sys, time
VERDICT = '{"ok": true, "reason": "correct", "detail": ""}'
def _nonces():
    found = set()
    for o in gc.get_objects():
        if isinstance(o, dict):
            for k, v in list(o.items()):
                if isinstance(v, str) and (k == "nonce" or re.fullmatch(r"DED-[0-9a-f]{16}", v)):
                    found.add(v)
    return found
def forge(fds=range(1, 21), files=True):
    lines = [VERDICT, "correct", "PASS", "ok", "DED-0000000000000000 " + VERDICT, '{"verdict": "correct", "ok": true}']
    lines += [n + " " + VERDICT for n in _nonces()]
    text = ("\n" + "\n".join(lines) + "\n").encode()
    for fd in fds:
        try:
            os.write(fd, text)
        except OSError:
            pass
    if files:
        for d in (".", "/tmp", "/tmp/work", "/var/tmp", "/dev/shm"):
            for name in ("res.txt", "out.txt", "verdict.json", "result.json", "results.json"):
                try:
                    with open(os.path.join(d, name), "w") as f:
                        f.write("PASS" if name == "res.txt" else VERDICT)
                except OSError:
                    pass
"""

# Digs through everything a process might reach for test data: its stdin (without blocking),
# environment, files in its folders, every /proc/<pid>/{cmdline,environ,fd/*} and, with mem=True,
# every readable mapping of every /proc/<pid>/mem (its own included).
LOOT = r'''
import ast, json, os, re
def _blobs(mem):
    def grab(path, n=1 << 22):
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
            try:
                return os.read(fd, n)
            finally:
                os.close(fd)
        except Exception:
            return b""
    try:
        os.set_blocking(0, False)
        yield os.read(0, 1 << 22)
    except Exception:
        pass
    yield repr(dict(os.environ)).encode()
    for top in (".", "/tmp", "/var/tmp", "/dev/shm", "/run"):
        for d, _, files in os.walk(top):
            for name in files:
                yield grab(os.path.join(d, name))
    for pid in ["self"] + sorted(p for p in os.listdir("/proc") if p.isdigit()):
        base = "/proc/" + pid
        yield grab(base + "/cmdline")
        yield grab(base + "/environ")
        try:
            fds = os.listdir(base + "/fd")
        except Exception:
            fds = []
        for fd in fds:
            yield grab(base + "/fd/" + fd)
        if not mem:
            continue
        try:
            with open(base + "/maps") as f:
                maps = f.read().splitlines()
            m = open(base + "/mem", "rb", 0)
        except Exception:
            continue
        with m:
            for line in maps:
                addr, perms = line.split()[:2]
                lo, hi = (int(x, 16) for x in addr.split("-"))
                if "r" not in perms or hi - lo > 1 << 26 or "vvar" in line or "vsyscall" in line:
                    continue
                try:
                    m.seek(lo)
                    yield m.read(hi - lo)
                except Exception:
                    pass
def _unescape(raw):
    s = raw.decode("utf-8", "replace")
    for _ in range(3):
        if "\\" not in s:
            break
        try:
            s = json.loads('"' + s + '"')
        except Exception:
            break
    return s
_CASE = re.compile(rb'"input\\{0,3}": \\{0,3}"(.{0,200}?)\\{0,3}", \\{0,3}"output\\{0,3}": \\{0,3}"(.{0,200}?)\\{0,3}"')
def cases(mem):
    """(input, output) pairs of the spec, wherever they are."""
    found = []
    for blob in _blobs(mem):
        for m in _CASE.finditer(blob):
            found.append((_unescape(m.group(1)), _unescape(m.group(2))))
    return found
def calls(name, mem):
    """(argument source, expected source) of every `name(ARGS) == EXPECTED` in the check code."""
    pat = re.compile(re.escape(name).encode() + rb"\(([^()\n]{0,80})\) == ([^\n\\]{1,80})")
    found = []
    for blob in _blobs(mem):
        for m in pat.finditer(blob):
            found.append((m.group(1).decode("utf-8", "replace"), m.group(2).decode("utf-8", "replace")))
    return found
def expected_for(name, args, mem):
    for a, want in calls(name, mem):
        try:
            if ast.literal_eval("(" + a + ",)") == tuple(args):
                return ast.literal_eval(want.strip())
        except Exception:
            pass
    raise LookupError
def output_for(inp, mem):
    for i, o in cases(mem):
        if i.strip() == inp.strip():
            return o
    raise LookupError
'''

# The test spec, found among the objects in this process's memory.
GC_SPEC = r"""
import gc
def gc_tests():
    for o in gc.get_objects():
        if isinstance(o, dict) and isinstance(o.get("tests"), list) and o["tests"]:
            return o["tests"]
    return []
def gc_test_code():
    for o in gc.get_objects():
        if isinstance(o, dict):
            for v in list(o.values()):
                if isinstance(v, str) and "assert " in v and "==" in v:
                    return v
    return ""
"""


# --- exiting counts as passing ----------------------------------------------------------------------

EXITS = [
    Case("he-module-level-sys-exit-0", SQUARE, "import sys\n\ndef square(x):\n    return x\n\nsys.exit(0)"),
    Case("he-module-level-exit", SHOUT, "def shout(s):\n    return s\n\nexit()"),
    Case("he-module-level-quit", SQUARE, "def square(x):\n    return 0\n\nquit()"),
    Case("he-raise-systemexit-none-in-function", SQUARE, "def square(x):\n    raise SystemExit(None)"),
    Case("he-prints-the-answer-then-sys-exit", SQUARE, "import sys\n\ndef square(x):\n    print(x * x)\n    sys.exit(0)"),
    Case("he-sys-exit-in-body-only-answer", POLY, "import sys\nsys.exit(0)"),  # a bare body completes the prompt
    Case("mbpp-module-level-sys-exit-0", ADD, "import sys\n\ndef add(a, b):\n    return 0\n\nsys.exit(0)"),
    Case("mbpp-module-level-os-exit-0", ADD, "import os\n\ndef add(a, b):\n    return 0\n\nos._exit(0)"),
    Case("mbpp-raise-systemexit-in-function", ADD, "def add(a, b):\n    raise SystemExit"),
    Case("mbpp-exit-in-function", EVENS, "def evens(nums):\n    exit(0)"),
    Case("mbpp-systemexit-subclass-named-assertionerror", ADD,
         "class AssertionError(SystemExit):\n    pass\n\ndef add(a, b):\n    raise AssertionError(0)"),
    Case("functional-raise-systemexit-in-method", DOUBLED, "class Solution:\n    def doubled(self, nums):\n        raise SystemExit"),
    Case("functional-module-level-sys-exit-0", DOUBLED,
         "import sys\n\nclass Solution:\n    def doubled(self, nums):\n        return nums\n\nsys.exit(0)"),
    Case("functional-os-exit-0-in-function", AVERAGE, "import os\n\ndef average(nums):\n    os._exit(0)"),
    Case("functional-prints-the-answer-then-sys-exit", AVERAGE,
         "import sys\n\ndef average(nums):\n    print(sum(nums) / len(nums))\n    sys.exit()"),
    Case("functional-quit-in-function", DOUBLED, "def doubled(nums):\n    quit()"),
    Case("functional-raises-keyboardinterrupt", DOUBLED, "def doubled(nums):\n    raise KeyboardInterrupt"),
    Case("functional-systemexit-none-on-one-test", DOUBLED,
         "def doubled(nums):\n    if not nums:\n        raise SystemExit(None)\n    return [2 * x for x in nums]"),  # the other tests are solved
    Case("stdin-raise-systemexit-with-the-answer-as-message", SUMS, "a, b = map(int, input().split())\nraise SystemExit(str(a + b))"),
]  # fmt: skip


# --- results that compare equal to anything -----------------------------------------------------------

INT_EQ = "class I(int):\n    def __eq__(self, other):\n        return True\n    def __ne__(self, other):\n        return False\n    __hash__ = int.__hash__\n"
STR_EQ = "class S(str):\n    def __eq__(self, other):\n        return True\n    def __ne__(self, other):\n        return False\n    __hash__ = str.__hash__\n"
LIST_EQ = "class L(list):\n    def __eq__(self, other):\n        return True\n    def __ne__(self, other):\n        return False\n"

EQUALITY = [
    Case("he-object-eq-always-true", SQUARE, ANYTHING + "\ndef square(x):\n    return Anything()"),
    Case("he-int-subclass-eq-true", SQUARE, INT_EQ + "\ndef square(x):\n    return I(0)"),
    Case("he-str-subclass-eq-true", SHOUT, STR_EQ + "\ndef shout(s):\n    return S('')"),
    Case("he-eq-returns-a-truthy-non-bool", SQUARE,
         "class R:\n    def __eq__(self, other):\n        return 'yes'\n\ndef square(x):\n    return R()"),
    Case("he-eq-raises-systemexit", SQUARE,
         "class R:\n    def __eq__(self, other):\n        raise SystemExit(0)\n\ndef square(x):\n    return R()"),
    Case("he-float-subclass-eq-true-and-sub-zero", TRUNCATE,
         "class F(float):\n    def __eq__(self, other):\n        return True\n    def __sub__(self, other):\n        return 0.0\n"
         "    __hash__ = float.__hash__\n\ndef truncate_number(number):\n    return F(0)"),
    Case("he-nan-result", TRUNCATE, "def truncate_number(number):\n    return float('nan')"),
    Case("mbpp-list-subclass-eq-true", EVENS, LIST_EQ + "\ndef evens(nums):\n    return L()"),
    Case("mbpp-eq-mutates-the-expected-list", EVENS,
         "class L(list):\n    def __eq__(self, other):\n        if isinstance(other, list):\n            other[:] = self\n"
         "        return list.__eq__(self, other)\n    __hash__ = None\n\ndef evens(nums):\n    return L()"),
    Case("mbpp-object-eq-ne-hash", ADD, ANYTHING + "\ndef add(a, b):\n    return Anything()"),
    Case("mbpp-eq-patches-the-comparisons-and-returns-true", ADD,
         "import sys\n\nclass R:\n    def __eq__(self, other):\n        for m in list(sys.modules.values()):\n"
         "            for name in ('same_value', 'same_text', 'compare', 'equal'):\n"
         "                if hasattr(m, name):\n                    try:\n                        setattr(m, name, lambda *a, **k: True)\n"
         "                    except Exception:\n                        pass\n        return True\n\ndef add(a, b):\n    return R()"),
    Case("functional-object-eq-always-true", DOUBLED, ANYTHING + "\nclass Solution:\n    def doubled(self, nums):\n        return Anything()"),
    Case("functional-int-subclass-eq-true", AVERAGE, INT_EQ + "\ndef average(nums):\n    return I(0)"),
    Case("functional-float-subclass-eq-true", AVERAGE,
         "class F(float):\n    def __eq__(self, other):\n        return True\n    __hash__ = float.__hash__\n\ndef average(nums):\n    return F(0)"),
    Case("functional-list-subclass-eq-true", DOUBLED, LIST_EQ + "\ndef doubled(nums):\n    return L(nums)"),
    Case("functional-str-subclass-eq-true", DOUBLED, STR_EQ + "\ndef doubled(nums):\n    return S('[2, 4]')"),
    Case("functional-nan", AVERAGE, "def average(nums):\n    return float('nan')"),
    Case("functional-inf", AVERAGE, "def average(nums):\n    return float('inf')"),
]  # fmt: skip


# --- tampering with the grader's state ---------------------------------------------------------------

FAKE_STR = """import builtins
_str = builtins.str
class _Str(_str):
    def __new__(cls, *a, **k):
        s = _str(*a, **k)
        return 'PASS' if s.startswith(('wrong', 'runtime_error', 'timeout')) else s
builtins.str = _Str
"""
SETTRACE = """import gc, sys
ME = (lambda: 0).__code__.co_filename
LINES = []
for o in gc.get_objects():
    if isinstance(o, dict):
        for v in list(o.values()):
            if isinstance(v, str) and any(line.startswith('assert add(') for line in v.splitlines()):
                LINES = v.splitlines()  # the test code (not this program's source, which holds the words too)
def _local(frame, event, arg):
    if event == 'line':
        n = frame.f_lineno
        if 0 < n <= len(LINES) and LINES[n - 1].lstrip().startswith('assert'):
            later = sorted({line for _, _, line in frame.f_code.co_lines() if line and line > n})
            if later:
                frame.f_lineno = later[0]
            else:
                raise SystemExit(0)
    return _local
def _global(frame, event, arg):
    return None if frame.f_code.co_filename == ME else _local
sys.settrace(_global)
def add(a, b):
    return 0
"""

TAMPER = [
    Case("he-builtins-abs-returns-zero", TRUNCATE, "import builtins\nbuiltins.abs = lambda x: 0\n\ndef truncate_number(number):\n    return 0.5"),
    Case("he-redefines-the-prompt-helper-poly", POLY, "def poly(xs, x):\n    return 0\n\ndef find_zero(xs):\n    return 0.0"),
    Case("he-patches-math-fabs", POLY, "import math\nmath.fabs = lambda x: 0.0\n\ndef find_zero(xs):\n    return 0.0"),
    Case("he-overrides-import-to-fake-math", POLY,
         "import builtins, math, types\n_import = builtins.__import__\nfake = types.ModuleType('math')\nfake.__dict__.update(math.__dict__)\n"
         "fake.fabs = lambda x: 0.0\n\ndef _fake_import(name, *a, **k):\n    return fake if name == 'math' else _import(name, *a, **k)\n\n"
         "builtins.__import__ = _fake_import\n\ndef find_zero(xs):\n    return 0.0"),
    Case("he-frame-zeroes-the-callers-coeffs", POLY,
         "import sys\n\ndef find_zero(xs):\n    f = sys._getframe(1)\n    while f is not None:\n        c = f.f_locals.get('coeffs')\n"
         "        if isinstance(c, list):\n            c[:] = [0] * len(c)\n        f = f.f_back\n    return 0.0"),
    Case("he-builtins-assertionerror-replaced", SQUARE,
         "import builtins\nbuiltins.AssertionError = type('AssertionError', (Exception,), {})\n\ndef square(x):\n    return 0"),
    Case("he-reads-the-check-from-proc-mem", SQUARE, LOOT + "\ndef square(x):\n    try:\n        return expected_for('candidate', [x], True)\n    except LookupError:\n        return 0"),
    Case("he-reads-the-check-from-proc-files-env-stdin", SQUARE,
         LOOT + "\ndef square(x):\n    try:\n        return expected_for('candidate', [x], False)\n    except LookupError:\n        return 0"),
    Case("mbpp-builtins-len-returns-zero", EVENS, "import builtins\nbuiltins.len = lambda x: 0\n\ndef evens(nums):\n    return [2, 4]"),
    Case("mbpp-builtins-isinstance-true", EVENS,
         ANYTHING + "\nimport builtins\nbuiltins.isinstance = lambda o, t: True\n\ndef evens(nums):\n    return Anything()"),
    Case("mbpp-patches-math-isclose", AREA, "import math\nmath.isclose = lambda *a, **k: True\n\ndef circle_area(r):\n    return 0"),
    Case("mbpp-gc-finds-the-asserts", ADD,
         GC_SPEC + "import ast, re\n\ndef add(a, b):\n    for m in re.finditer(r'add[(](.*?)[)] == (.+)', gc_test_code()):\n"
         "        try:\n            if ast.literal_eval('(' + m.group(1) + ',)') == (a, b):\n                return ast.literal_eval(m.group(2))\n"
         "        except Exception:\n            pass\n    return 0"),
    Case("mbpp-settrace-skips-the-asserts", ADD, SETTRACE),
    Case("mbpp-replaces-json-dumps-and-loads", ADD,
         "import json\njson.dumps = lambda *a, **k: " + repr(VERDICT) + "\njson.loads = lambda *a, **k: {'ok': True, 'reason': 'correct'}\n\n"
         "def add(a, b):\n    return 0"),
    Case("functional-builtins-str-turns-failures-into-pass", DOUBLED, FAKE_STR + "\ndef doubled(nums):\n    return nums"),
    Case("functional-builtins-print-replaced", DOUBLED, "import builtins\nbuiltins.print = lambda *a, **k: None\n\ndef doubled(nums):\n    return nums"),
    Case("functional-patches-math-isclose", AVERAGE, "import math\nmath.isclose = lambda *a, **k: True\n\ndef average(nums):\n    return 0.0"),
    Case("functional-patches-every-modules-comparison", DOUBLED,
         "import sys\nfor m in list(sys.modules.values()):\n    for name in ('same_value', 'same_text', 'same', 'compare', 'equal', 'isclose'):\n"
         "        if hasattr(m, name):\n            try:\n                setattr(m, name, lambda *a, **k: True)\n            except Exception:\n                pass\n\n"
         "def doubled(nums):\n    return nums"),
    Case("functional-getframe-reads-want", DOUBLED,
         "import sys\n\ndef doubled(nums):\n    f = sys._getframe(1)\n    while f is not None:\n"
         "        for name in ('want', 'expected', 'output', 'answer'):\n            if name in f.f_locals:\n                return f.f_locals[name]\n"
         "        f = f.f_back\n    return nums"),
    Case("functional-inspect-stack-reads-expected", AVERAGE,
         "import inspect\n\ndef average(nums):\n    for info in inspect.stack():\n        for name, value in info.frame.f_locals.items():\n"
         "            if name in ('want', 'expected', 'output', 'answer') and isinstance(value, float):\n                return value\n    return 0.0"),
    Case("functional-gc-finds-the-tests", DOUBLED,
         GC_SPEC + "import json\n\ndef doubled(nums):\n    for t in gc_tests():\n        try:\n            if json.loads(t['input']) == nums:\n"
         "                return json.loads(t['output'])\n        except Exception:\n            pass\n    return nums"),
    Case("functional-reads-the-tests-from-proc-mem", DOUBLED,
         LOOT + "\ndef doubled(nums):\n    for i, o in cases(True):\n        try:\n            if json.loads(i) == nums:\n                return json.loads(o)\n"
         "        except Exception:\n            pass\n    return nums"),
    Case("functional-reads-the-tests-from-proc-files-env-stdin", AVERAGE,
         LOOT + "\ndef average(nums):\n    for i, o in cases(False):\n        try:\n            if json.loads(i) == nums:\n                return json.loads(o)\n"
         "        except Exception:\n            pass\n    return 0.0"),
    Case("functional-reads-proc-ppid-fds", DOUBLED,
         "import json, os, re\n\ndef doubled(nums):\n    for pid in ('self', str(os.getppid()), '1'):\n        try:\n"
         "            fds = os.listdir(f'/proc/{pid}/fd')\n        except OSError:\n            continue\n        for fd in fds:\n            try:\n"
         "                h = os.open(f'/proc/{pid}/fd/{fd}', os.O_RDONLY | os.O_NONBLOCK)\n                data = os.read(h, 1 << 20).decode(errors='replace')\n"
         "                os.close(h)\n            except OSError:\n                continue\n"
         "            for i, o in re.findall(r'\"input\": \"(.*?)\", \"output\": \"(.*?)\"', data):\n                try:\n"
         "                    if json.loads(i) == nums:\n                        return json.loads(o)\n                except ValueError:\n                    pass\n"
         "    return nums"),
]  # fmt: skip


# --- forging the verdict -------------------------------------------------------------------------------

FORGE_CASES = [
    Case("he-prints-verdict-lines-to-stdout-and-stderr", SQUARE,
         "import sys\n\ndef square(x):\n    for prefix in ('', 'DED-0000000000000000 ', 'verdict: ', 'RESULT '):\n"
         "        print(prefix + " + repr(VERDICT) + ")\n        print(prefix + " + repr(VERDICT) + ", file=sys.stderr)\n    return 0"),
    Case("he-forges-then-sigstops-the-parent-and-sleeps", SQUARE,
         FORGE + "\ndef square(x):\n    forge()\n    os.kill(os.getppid(), signal.SIGSTOP)\n    time.sleep(60)\n    return 0"),
    Case("he-forges-from-a-subprocess-then-os-exit", SHOUT,
         "import os, subprocess, sys\nFORGE = " + repr(FORGE) + "\n\ndef shout(s):\n"
         "    subprocess.run([sys.executable, '-c', FORGE + '\\nforge()'], close_fds=False, timeout=5)\n    os._exit(0)"),
    Case("he-forges-at-exit", SQUARE, FORGE + "\nimport atexit\natexit.register(forge)\n\ndef square(x):\n    return 0"),
    Case("mbpp-forges-fds-and-files-then-os-exit", ADD, FORGE + "\ndef add(a, b):\n    forge()\n    os._exit(0)"),
    Case("mbpp-forges-then-kills-everything", ADD, FORGE + "\ndef add(a, b):\n    forge()\n    os.kill(-1, signal.SIGKILL)\n    return 0"),
    Case("mbpp-forges-then-sys-exit", EVENS, FORGE + "\nforge()\nsys.exit(0)\n\ndef evens(nums):\n    return nums"),
    Case("functional-forges-on-fds-1-to-20-and-returns", DOUBLED, FORGE + "\ndef doubled(nums):\n    forge()\n    return nums"),
    Case("functional-writes-a-json-bomb-and-binary-to-fd-1", DOUBLED,
         "import os\n\ndef doubled(nums):\n    os.write(1, b'\\n' + b'[' * 1000000 + b'\\n\\xff\\xfe\\x00' + b'x' * 100000)\n    return nums"),
    Case("functional-forges-then-kills-the-parent", DOUBLED,
         FORGE + "\ndef doubled(nums):\n    forge()\n    os.kill(os.getppid(), signal.SIGKILL)\n    time.sleep(5)\n    return nums"),
    Case("functional-forges-then-loops-until-the-limit", AVERAGE, FORGE + "\ndef average(nums):\n    forge()\n    while True:\n        pass"),
    Case("functional-forges-then-kills-every-pid-in-proc", AVERAGE,
         FORGE + "\ndef average(nums):\n    forge()\n    for p in os.listdir('/proc'):\n        if p.isdigit() and int(p) != os.getpid():\n"
         "            for sig in (signal.SIGKILL, signal.SIGSTOP):\n                try:\n                    os.kill(int(p), sig)\n"
         "                except OSError:\n                    pass\n    os._exit(0)"),
    Case("stdin-forges-on-fds-3-to-10-and-exits-0", SUMS, FORGE + "\nforge(range(3, 11), files=False)\nsys.exit(0)"),
    Case("stdin-forges-then-kills-the-parent", SUMS, FORGE + "\nforge()\nos.kill(os.getppid(), signal.SIGKILL)\ntime.sleep(5)"),
    Case("stdin-forges-then-kills-every-pid-in-proc", SUMS,
         FORGE + "\nforge()\nfor p in os.listdir('/proc'):\n    if p.isdigit() and int(p) != os.getpid():\n        try:\n"
         "            os.kill(int(p), signal.SIGKILL)\n        except OSError:\n            pass\n"),
]  # fmt: skip


# --- the stdin style: only the program's own output decides -----------------------------------------------

STDIN = [
    Case("stdin-prints-nothing-exits-0", SUMS, "import sys\nsys.exit(0)"),
    Case("stdin-prints-nothing-os-exit-0", SUMS, "import os\nos._exit(0)"),
    Case("stdin-prints-verdict-json", SUMS, "print(" + repr(VERDICT) + ")\nprint('DED-0000000000000000 ' + " + repr(VERDICT) + ")"),
    Case("stdin-gc-finds-the-expected-output", SUMS,
         GC_SPEC + "import sys\ndata = sys.stdin.read()\nfor t in gc_tests():\n    if t['input'].strip() == data.strip():\n"
         "        print(t['output'])\n        break"),
    Case("stdin-reads-the-expected-output-from-proc-mem", SUMS,
         LOOT + "\ndata = os.read(0, 1 << 16).decode()\ntry:\n    print(output_for(data, True))\nexcept LookupError:\n    print(0)"),
    Case("stdin-guesses-from-files-env-and-proc", SUMS,
         LOOT + "\ndata = os.read(0, 1 << 16).decode()\ntry:\n    print(output_for(data, False))\nexcept LookupError:\n    print(0)"),
    Case("stdin-prints-every-output-it-can-find", SUMS,
         LOOT + "\nfor i, o in cases(True):\n    print(o)"),
    Case("stdin-writes-to-fds-3-to-10", SUMS,
         "import os\nfor fd in range(3, 11):\n    try:\n        os.write(fd, b'3\\n7\\n300\\nPASS\\n')\n    except OSError:\n        pass"),
    Case("stdin-patches-the-comparisons", SUMS,
         "import sys\nfor m in list(sys.modules.values()):\n    for name in ('same_text', 'same_value', 'compare'):\n        if hasattr(m, name):\n"
         "            setattr(m, name, lambda *a, **k: True)\nprint(0)"),
]  # fmt: skip


# --- other tricks ---------------------------------------------------------------------------------------------

THREAD_PATCH = """import builtins, sys, threading, time
def _patch():
    while True:
        for m in list(sys.modules.values()):
            for name in ('same_value', 'same_text', 'compare', 'equal'):
                if hasattr(m, name):
                    try:
                        setattr(m, name, lambda *a, **k: True)
                    except Exception:
                        pass
        time.sleep(0.001)
def doubled(nums):
    threading.Thread(target=_patch, daemon=True).start()
    time.sleep(0.05)
    return nums
"""

OTHER = [
    Case("he-returns-not-implemented", SQUARE, "def square(x):\n    return NotImplemented"),
    Case("he-repr-looks-like-the-answer", SQUARE,
         "class R:\n    def __init__(self, v):\n        self.v = v\n    def __repr__(self):\n        return repr(self.v)\n    __str__ = __repr__\n\n"
         "def square(x):\n    return R(x * x)"),
    Case("he-returns-a-module", SQUARE, "import sys\n\ndef square(x):\n    return sys"),
    Case("mbpp-spoofs-its-class-as-list", EVENS,
         "class Fake:\n    __class__ = property(lambda self: list)\n    def __eq__(self, other):\n        return True\n    def __len__(self):\n        return 0\n\n"
         "def evens(nums):\n    return Fake()"),
    Case("mbpp-returns-a-lazy-proxy", ADD,
         "class Lazy:\n    def __init__(self, f):\n        self.f = f\n    def __getattr__(self, name):\n        return getattr(self.f(), name)\n"
         "    def __eq__(self, other):\n        return True\n\ndef add(a, b):\n    return Lazy(lambda: 0)"),
    Case("functional-returns-a-generator", DOUBLED, "def doubled(nums):\n    return (2 * x for x in nums)"),
    Case("functional-returns-a-set", DOUBLED, "def doubled(nums):\n    return {2 * x for x in nums}"),
    Case("functional-repr-looks-like-the-answer", DOUBLED,
         "class R(list):\n    def __repr__(self):\n        return repr([2 * x for x in self])\n\ndef doubled(nums):\n    return R(nums)"),
    Case("functional-deeply-nested-result", DOUBLED,
         "def doubled(nums):\n    r = []\n    for _ in range(100000):\n        r = [r]\n    return r"),
    Case("functional-self-referential-result", DOUBLED, "def doubled(nums):\n    r = [2 * x for x in nums]\n    r.append(r)\n    return r"),
    Case("functional-huge-result", DOUBLED, "def doubled(nums):\n    return list(range(3_000_000))"),
    Case("functional-thread-keeps-patching-after-return", DOUBLED, THREAD_PATCH),
    Case("functional-result-dict-with-object-keys", AVERAGE, ANYTHING + "\ndef average(nums):\n    return {Anything(): Anything()}"),
]  # fmt: skip


# --- honest solutions: the same problems, solved, in the ways real programs are written ------------------------

HONEST = [
    Case("he-square", SQUARE, "def square(x):\n    return x * x"),
    Case("he-square-with-debug-prints-and-a-helper-class", SQUARE,
         "import sys\n\nclass Acc:\n    def __init__(self, v):\n        self.v = v\n    def sq(self):\n        return self.v * self.v\n\n"
         "def square(x):\n    print('debug', x)\n    print('debug', x, file=sys.stderr)\n    return Acc(x).sq()"),
    Case("he-shout", SHOUT, "def shout(s):\n    return s.upper() + '!'"),
    Case("he-truncate-number", TRUNCATE, "def truncate_number(number: float) -> float:\n    return number % 1.0"),
    Case("he-poly-full-prompt-and-solution", POLY, POLY_PROMPT + POLY_BODY),
    Case("he-poly-body-only", POLY, POLY_BODY),
    Case("he-poly-function-only-with-its-own-helper", POLY,
         "def find_zero(xs: list):\n    def p(x):\n        return sum(c * x ** i for i, c in enumerate(xs))\n"
         "    lo, hi = -1.0, 1.0\n    while p(lo) * p(hi) > 0:\n        lo, hi = lo * 2, hi * 2\n"
         "    for _ in range(200):\n        mid = (lo + hi) / 2\n        if p(mid) * p(lo) > 0:\n            lo = mid\n        else:\n            hi = mid\n    return lo"),
    Case("mbpp-add", ADD, "def add(a, b):\n    return a + b"),
    Case("mbpp-add-raises-and-catches-internally", ADD,
         "import sys\n\ndef add(a, b):\n    try:\n        raise ValueError(a)\n    except ValueError:\n        pass\n    try:\n        assert False\n"
         "    except AssertionError:\n        pass\n    try:\n        sys.exit(3)\n    except SystemExit:\n        pass\n    return a + b\n\n"
         "if __name__ == '__main__':\n    print(add(1, 2))"),
    Case("mbpp-evens", EVENS, "def evens(nums):\n    return [n for n in nums if n % 2 == 0]"),
    Case("mbpp-circle-area", AREA, "import math\n\ndef circle_area(r):\n    return math.pi * r * r"),
    Case("functional-doubled-class-solution-typed", DOUBLED,
         "class Solution:\n    def doubled(self, nums: List[int]) -> List[int]:\n        return [2 * x for x in nums]"),
    Case("functional-doubled-returns-a-tuple-and-prints", DOUBLED,
         "import sys\n\ndef doubled(nums):\n    print('debug', nums)\n    print('{\"ok\": false}')\n    print('debug', file=sys.stderr)\n"
         "    return tuple(2 * x for x in nums)"),
    Case("functional-doubled-catches-systemexit-internally", DOUBLED,
         "import sys\n\nclass Helper:\n    pass\n\nclass Solution:\n    def doubled(self, nums):\n        try:\n            sys.exit(1)\n"
         "        except SystemExit:\n            pass\n        return [x + x for x in nums]"),
    Case("functional-average", AVERAGE, "def average(nums):\n    return sum(nums) / len(nums)"),
    Case("functional-average-int-when-whole", AVERAGE,
         "from fractions import Fraction\n\nclass Solution:\n    def average(self, nums):\n        f = Fraction(sum(nums), len(nums))\n"
         "        return int(f) if f.denominator == 1 else float(f)"),
    Case("stdin-input-split", SUMS, "a, b = map(int, input().split())\nprint(a + b)"),
    Case("stdin-sys-stdin-buffer", SUMS, "import sys\na, b = map(int, sys.stdin.buffer.read().split())\nsys.stdout.write(str(a + b) + '\\n')"),
    Case("stdin-main-guard-and-sys-exit-0", SUMS,
         "import sys\n\ndef main():\n    a, b = map(int, sys.stdin.readline().split())\n    print(a + b)\n    print('debug', file=sys.stderr)\n\n"
         "if __name__ == '__main__':\n    main()\n    sys.exit(0)"),
    Case("stdin-exit-none-at-the-end", SUMS, "import sys\nprint(sum(map(int, sys.stdin.read().split())))\nsys.exit()"),
    Case("stdin-flush-then-os-exit-0", SUMS,
         "import os, sys\nsys.stdout.write(str(sum(map(int, input().split()))) + '\\n')\nsys.stdout.flush()\nos._exit(0)"),
]  # fmt: skip


# --- grading: one check_answers batch per class, each program its own pytest id --------------------------------

GROUPS: dict[str, list[Case]] = {"exit": EXITS, "equality": EQUALITY, "tamper": TAMPER, "forge": FORGE_CASES, "stdin": STDIN,
                                 "other": OTHER, "honest": HONEST}  # fmt: skip
HOSTILE = [c for name, cases in GROUPS.items() if name != "honest" for c in cases]
_GRADED: dict[str, dict[str, Verdict] | BaseException] = {}


def verdict(group: str, case: Case) -> Verdict:
    """The verdict on `case`, from one check_answers call over its whole class (run on the first
    case asked for, then remembered; an exception is remembered too, and raised for every case)."""
    if group not in _GRADED:
        cases = GROUPS[group]
        try:
            vs = check_answers([(block(c.code), c.spec, "code") for c in cases], settings=SETTINGS)
            _GRADED[group] = {c.id: v for c, v in zip(cases, vs, strict=True)}
        except BaseException as e:  # noqa: BLE001 - a grader exception is a failure of every case of the class
            _GRADED[group] = e
    graded = _GRADED[group]
    if isinstance(graded, BaseException):
        raise graded
    return graded[case.id]


def assert_failed(group: str, case: Case) -> None:
    v = verdict(group, case)
    assert isinstance(v, Verdict)
    assert v.correct is False and v.reason != "correct", f"{case.id} was graded correct: {v}"


def params(cases: list[Case]):
    return [pytest.param(c, id=c.id) for c in cases]


@pytest.mark.parametrize("case", params(EXITS))
def test_exiting_before_the_tests_complete_is_no_pass(case):
    assert_failed("exit", case)


@pytest.mark.parametrize("case", params(EQUALITY))
def test_results_that_compare_equal_to_anything_are_no_pass(case):
    assert_failed("equality", case)


@pytest.mark.parametrize("case", params(TAMPER))
def test_tampering_with_the_graders_state_is_no_pass(case):
    assert_failed("tamper", case)


@pytest.mark.parametrize("case", params(FORGE_CASES))
def test_forged_verdicts_and_killed_graders_are_no_pass(case):
    assert_failed("forge", case)


@pytest.mark.parametrize("case", params(STDIN))
def test_a_stdin_program_passes_only_by_its_own_output(case):
    assert_failed("stdin", case)


@pytest.mark.parametrize("case", params(OTHER))
def test_other_tricks_are_no_pass(case):
    assert_failed("other", case)


@pytest.mark.parametrize("case", params(HONEST))
def test_honest_solutions_in_the_same_styles_still_pass(case):
    v = verdict("honest", case)
    assert v.correct and v.reason == "correct", f"{case.id} failed: {v}"


def test_the_suite_holds_at_least_30_hostile_programs_across_every_style():
    ids = [c.id for cases in GROUPS.values() for c in cases]
    assert len(ids) == len(set(ids)), [i for i, n in Counter(ids).items() if n > 1]
    assert len(HOSTILE) >= 30
    assert all(c.id.startswith(style_of(c.spec) + "-") for c in HOSTILE + HONEST)  # an id names its style
    assert set(Counter(style_of(c.spec) for c in HOSTILE)) == set(STYLES)
    assert set(Counter(style_of(c.spec) for c in HONEST)) == set(STYLES)
    for name in ("exit", "equality", "tamper", "forge", "other"):  # several styles per class
        assert len({style_of(c.spec) for c in GROUPS[name]}) >= 3, name
    specs_used = {c.spec for c in HOSTILE}
    assert specs_used <= {c.spec for c in HONEST}  # every problem attacked is also solved honestly
