"""The judge and the runner (ded/grading/judge.py, ded/grading/runner.py) on their own: the
comparisons imported directly, and the judge run as a plain subprocess (no sandbox: it then starts
the runner itself) with its parameters as JSON on stdin, per style. What the sandbox adds (another
uid, another PID namespace) is tested with the adversarial suite, tests/grading/test_adversarial.py."""

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

from ded.grading import judge, runner
from ded.grading.code import make_spec
from ded.grading.judge import same_text, same_value

JUDGE = Path(judge.__file__)


def grade(tmp_path: Path, spec: str, code: str, per_test_s: float = 2.0) -> dict:
    """The judge's verdict on `code` against `spec` (make_spec's JSON), run without a sandbox;
    `-I`: its own folder (ded/grading, with a code.py) is not on sys.path."""
    params = {"spec": json.loads(spec), "code": code, "per_test_s": per_test_s, "out": 1 << 20}
    p = subprocess.run([sys.executable, "-I", str(JUDGE)], input=json.dumps(params), capture_output=True, text=True,
                       cwd=tmp_path, timeout=60)  # fmt: skip
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    assert len(lines) == 1, p.stdout  # one verdict line, nothing else
    return json.loads(lines[0])


ASSERT = make_spec("assert", test_code="assert add(2, 3) == 5\nassert add(-1, 1) == 0")
HUMANEVAL = make_spec("assert", test_code="def check(f):\n    assert f(4) == 16", entry_point="square")
STDIN = make_spec("stdin", tests=[{"input": "1 2\n", "output": "3\n"}, {"input": "10 -3\n", "output": "7\n"}])
FUNCTIONAL = make_spec("functional", tests=[{"input": "[1, 2]", "output": "[2, 4]"}, {"input": "[]", "output": "[]"}], fn_name="doubled")


@pytest.mark.parametrize("module", [judge, runner])
def test_the_judge_and_the_runner_import_only_the_standard_library(module):
    tree = ast.parse(Path(module.__file__).read_text())
    imported = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    imported |= {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    assert imported and imported <= set(sys.stdlib_module_names), imported - set(sys.stdlib_module_names)


def test_same_text_compares_lines_tokens_and_numbers_as_a_judge_does():
    assert same_text("3 4  \n5\n\n", "3 4\n5")  # trailing spaces and blank lines at the ends do not count
    assert same_text("1  2", "1 2")  # nor the spacing between tokens
    assert same_text("0.30000000001", "0.3") and not same_text("0.31", "0.3")  # floats within 1e-6
    assert same_text("+7", "7") and not same_text("998244352", "998244353")  # integers exactly, however large
    assert not same_text("1 2", "1 2 3") and not same_text("1\n2", "1 2")  # token and line counts must agree
    assert not same_text("yes", "YES") and not same_text("nan", "1")


def test_same_value_compares_json_values_with_tuples_as_lists_and_floats_within_1e_6():
    assert same_value((1, [2, 3]), [1, [2, 3]]) and same_value({"a": 0.1 + 0.2}, {"a": 0.3})
    assert not same_value([1, 2], [1, 2, 3]) and not same_value({"a": 1}, {"b": 1})
    assert same_value(False, False) and not same_value(True, False) and not same_value(True, 1.0000001)  # a bool compares exactly
    assert same_value(2, 2.0000000001) and not same_value("2", 2) and not same_value(None, 0)
    assert not same_value(float("inf"), "x")  # an uncomparable pair is unequal, not an error


@pytest.mark.parametrize("spec, code", [
    (ASSERT, "def add(a, b):\n    return a + b"),
    (HUMANEVAL, "def square(x):\n    print('noise')\n    return x * x"),
    (STDIN, "a, b = map(int, input().split())\nprint(a + b)"),
    (FUNCTIONAL, "class Solution:\n    def doubled(self, nums):\n        return [2 * x for x in nums]"),
    (FUNCTIONAL, "from __future__ import annotations\ndef doubled(nums: list[int]):\n    return tuple(2 * x for x in nums)"),
])  # fmt: skip
def test_a_correct_solution_passes_in_every_style(tmp_path, spec, code):
    assert grade(tmp_path, spec, code) == {"ok": True, "reason": "correct", "detail": ""}


@pytest.mark.parametrize("spec, code, detail", [
    (ASSERT, "def add(a, b):\n    return a - b", "AssertionError"),
    (HUMANEVAL, "def square(x):\n    return x + x", "AssertionError"),
    (STDIN, "a, b = map(int, input().split())\nprint(a + abs(b))", "test 1: expected '7\\n', got '13\\n'"),  # the first test passes
    (FUNCTIONAL, "def doubled(nums):\n    return nums", "test 0: expected [2, 4], got [1, 2]"),
])  # fmt: skip
def test_a_wrong_solution_fails_naming_the_test(tmp_path, spec, code, detail):
    v = grade(tmp_path, spec, code)
    assert v["ok"] is False and v["reason"] == "wrong" and detail in v["detail"], v


@pytest.mark.parametrize("spec", [ASSERT, STDIN, FUNCTIONAL])
def test_a_syntax_error_is_unparsable_before_any_test_runs(tmp_path, spec):
    v = grade(tmp_path, spec, "def f(:\n    return")
    assert v["ok"] is False and v["reason"] == "unparsable" and "SyntaxError" in v["detail"]


def test_a_prelude_that_does_not_compile_is_unparsable_too(tmp_path):
    spec = make_spec("assert", test_code="assert True", prelude="import (")
    assert grade(tmp_path, spec, "x = 1")["reason"] == "unparsable"


@pytest.mark.parametrize("spec, code, limit", [
    (ASSERT, "def add(a, b):\n    while True:\n        pass", 1.5),  # the assert style's one run gets three test limits
    (STDIN, "import time\nwhile True:\n    try:\n        time.sleep(1)\n    except BaseException:\n        pass", 0.5),
    (FUNCTIONAL, "def doubled(nums):\n    while True:\n        pass", 0.5),
])  # fmt: skip
def test_a_solution_past_its_time_limit_times_out_even_if_it_catches_everything(tmp_path, spec, code, limit):
    v = grade(tmp_path, spec, code, per_test_s=0.5)
    assert v == {"ok": False, "reason": "timeout", "detail": f"test 0 ran past {limit}s"}


@pytest.mark.parametrize("spec", [ASSERT, FUNCTIONAL])
def test_an_early_exit_with_status_0_is_no_pass(tmp_path, spec):
    v = grade(tmp_path, spec, "import os\nos._exit(0)")
    assert v["ok"] is False and v["reason"] == "runtime_error"
    assert v["detail"] == "test 0: the program ended itself (status 0) before its result"


def test_sys_exit_ends_a_stdin_program_as_a_judge_allows_and_a_nonzero_status_fails(tmp_path):
    assert grade(tmp_path, STDIN, "a, b = map(int, input().split())\nprint(a + b)\nexit()")["reason"] == "correct"
    v = grade(tmp_path, STDIN, "import sys\nsys.exit(3)")
    assert v["reason"] == "runtime_error" and "exit status 3" in v["detail"]


def test_a_stdin_program_may_flush_and_os_exit_then_its_output_decides(tmp_path):
    flushed = "import os, sys\na, b = map(int, sys.stdin.read().split())\nsys.stdout.write(str(a + b))\nsys.stdout.flush()\nos._exit(0)"
    assert grade(tmp_path, STDIN, flushed)["reason"] == "correct"
    v = grade(tmp_path, STDIN, "import os\nprint(3)\nos._exit(0)")  # unflushed: the print was lost with the buffer
    assert v["reason"] == "wrong" and "got ''" in v["detail"]
    assert grade(tmp_path, STDIN, "import os\nos._exit(1)")["reason"] == "runtime_error"


def test_stdin_output_is_compared_line_by_line_with_numbers_as_numbers(tmp_path):
    spec = make_spec("stdin", tests=[{"input": "", "output": "998244352 0.30000000\nYES\n"}])
    assert grade(tmp_path, spec, "print(998244352, 0.1 + 0.2, ' ')\nprint('YES')\nprint()")["reason"] == "correct"
    assert grade(tmp_path, spec, "print(998244353, 0.3)\nprint('YES')")["reason"] == "wrong"
    assert grade(tmp_path, spec, "print(998244352, 0.3)\nprint('NO')")["reason"] == "wrong"
    assert grade(tmp_path, spec, "print(998244352, 0.3, 'YES')")["reason"] == "wrong"  # the lines must match too


def test_a_test_reads_only_its_own_input_never_the_drivers_parameters(tmp_path):
    """The parameters (spec, code, nonce) came on the driver's stdin: a test's fd 0 holds its input alone."""
    echo = make_spec("stdin", tests=[{"input": "only this\n", "output": "only this\n"}])
    assert grade(tmp_path, echo, "import sys\nsys.stdout.write(sys.stdin.read())")["reason"] == "correct"
    nothing = make_spec("functional", tests=[{"input": "0", "output": '""'}], fn_name="peek")
    assert grade(tmp_path, nothing, "import sys\ndef peek(_):\n    return sys.stdin.read()")["reason"] == "correct"


def test_a_runtime_error_and_a_missing_function_are_named(tmp_path):
    v = grade(tmp_path, FUNCTIONAL, "def doubled(nums):\n    return 1 / 0")
    assert v["reason"] == "runtime_error" and "ZeroDivisionError" in v["detail"]
    v = grade(tmp_path, FUNCTIONAL, "def tripled(nums):\n    return nums")
    assert v["reason"] == "runtime_error" and "no Solution.doubled or doubled" in v["detail"]
    assert "no 'square'" in grade(tmp_path, HUMANEVAL, "def cube(x):\n    return x ** 3")["detail"]


def test_a_functional_test_whose_json_does_not_parse_is_a_bad_gold(tmp_path):
    spec = make_spec("functional", tests=[{"input": "[1,", "output": "[]"}], fn_name="doubled")
    v = grade(tmp_path, spec, "def doubled(nums):\n    return nums")
    assert v["reason"] == "bad_gold" and v["detail"].startswith("test 0:")
