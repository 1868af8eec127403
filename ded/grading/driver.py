"""The grading driver: runs one solution against its test spec and reports one verdict line.

ded.grading.code runs this file's source as a sandbox's program (ded/sandbox.py) and sends its
parameters as one JSON object on stdin, read to its end before anything else::

    {"spec": <a test spec, ded.grading.code.make_spec>, "code": <the solution's source>,
     "nonce": <the tag of the verdict line>, "per_test_s": <each test's time limit>}

Each test runs in a forked child with its own fds 0 and 1 (stdin from the test's in.txt, stdout to
out.txt, both in the working directory) and is killed past its limit by the parent, so a solution
that closes or replaces its streams, exits with os._exit after flushing, or catches everything
around a slow loop is graded as a judge would. The child reports through res.txt, so an early exit
is no pass. The verdict is one line on the real stdout: the nonce, a space, then
``{"ok", "reason", "detail"}`` as JSON; no such line (a crash, a kill) is a failure.

It imports only the standard library: it runs in the sandbox's bare interpreter (``python -I -S``).
By hand: ``python ded/grading/driver.py < params.json`` in a scratch folder.
"""

import json
import math
import os
import re
import signal
import sys
import time
import traceback


def read_params():
    """The parameters: all of stdin, read from fd 0 itself, so sys.stdin buffers nothing that a
    test's child (which reads its own input on fd 0) would see."""
    chunks = []
    while True:
        chunk = os.read(0, 1 << 20)
        if not chunk:
            return json.loads(b"".join(chunks))
        chunks.append(chunk)


def solution_loader(code, prelude):
    """A function (module name -> a fresh namespace holding the prelude and the solution); raises
    SyntaxError or ValueError when either does not compile."""
    compiled = compile(code, "solution.py", "exec")  # alone: a solution may start with "from __future__ import ..."
    before = compile(prelude, "prelude.py", "exec") if prelude else None

    def namespace(name):
        ns = {"__name__": name}
        if before is not None:
            exec(before, ns)  # noqa: S102 - the prompt's imports and helpers, or the usual competitive-programming imports
        exec(compiled, ns)  # noqa: S102 - the solution: running it is the point (in a child, in the sandbox)
        return ns

    return namespace


def same_text(got, want):
    """Outputs equal line by line: whitespace at line ends and between tokens aside, integers
    exactly, other numbers within 1e-6."""
    g = [line.rstrip() for line in got.strip().splitlines()]
    w = [line.rstrip() for line in want.strip().splitlines()]
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
    """Run body() in a forked child with the test's stdin on fd 0 and fd 1 in out.txt; the
    child's verdict is the file res.txt ("PASS" or a reason line), so an early os._exit(0) is
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
            for target, path, flags in ((0, "in.txt", os.O_RDONLY), (1, "out.txt", os.O_WRONLY | os.O_CREAT | os.O_TRUNC),
                                        (2, os.devnull, os.O_WRONLY)):  # fmt: skip
                fd = os.open(path, flags)
                os.dup2(fd, target)
                os.close(fd)
            res = os.open("res.txt", os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
            try:
                outcome = body()
            except SystemExit as e:
                outcome = "PASS" if e.code in (None, 0) else f"runtime_error exit status {e.code!r}"
            except AssertionError:
                outcome = "wrong " + traceback.format_exc(limit=-2)
            except BaseException as e:  # noqa: BLE001 - whatever the solution raises is its verdict
                outcome = "runtime_error " + "".join(traceback.format_exception_only(type(e), e)).strip()
            try:
                sys.stdout.flush()
            except BaseException:  # noqa: BLE001, S110 - a solution may have closed or replaced its stdout
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
            return "timeout", f"test {i} ran past {limit_s}s", ""
        time.sleep(0.002)
    got, res = read_text("out.txt"), read_text("res.txt")
    if res == "PASS":
        return None, "", got
    if not res and exit_ok and os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0:
        return None, "", got  # stdin style: flushed and os._exit(0) (fast-IO templates); its output decides
    if not res:
        how = f"signal {-os.WTERMSIG(status)}" if os.WIFSIGNALED(status) else f"status {os.WEXITSTATUS(status)}"
        return "runtime_error", f"test {i}: the program ended itself ({how}) before its result", got
    reason, _, detail = res.partition(" ")
    return reason, f"test {i}: {detail}", got


def read_text(name):
    """A file a test's child wrote; "" if it wrote none."""
    if not os.path.exists(name):
        return ""
    with open(name, errors="replace") as f:
        return f.read()


# --- the three styles: (spec, namespace, per_test_s) -> (reason, detail) of the first failure, or None


def run_assert(spec, namespace, per_test_s):
    """The solution as a module, the spec's test code after it in the same namespace (HumanEval's
    ``check(entry_point)`` then called); one child for all of it, three times a test's limit."""

    def body():
        os.dup2(os.open(os.devnull, os.O_WRONLY), 1)  # prints of the solution do not count against the output limit
        ns = namespace("solution")
        exec(compile(spec["test_code"], "tests.py", "exec"), ns)  # noqa: S102 - the gold's tests
        if spec["entry_point"]:
            if spec["entry_point"] not in ns:
                raise NameError(f"the solution defines no {spec['entry_point']!r}")
            ns["check"](ns[spec["entry_point"]])
        return "PASS"

    reason, detail, _ = in_child(0, body, "", per_test_s * 3)
    return (reason, detail) if reason else None


def run_stdin(spec, namespace, per_test_s):
    """The solution as ``__main__`` once per test, the test's input on stdin; its stdout must match (``same_text``)."""

    def run_main():
        namespace("__main__")
        return "PASS"

    for i, t in enumerate(spec["tests"]):
        reason, detail, got = in_child(i, run_main, t["input"], per_test_s, exit_ok=True)
        if reason:
            return reason, detail
        if not same_text(got, t["output"]):
            return "wrong", f"test {i}: expected {t['output'][:100]!r}, got {got[:100]!r}"
    return None


def run_functional(spec, namespace, per_test_s):
    """``Solution().<fn_name>`` (or a top-level ``fn_name``) on each test's JSON arguments, one a
    line; the result must equal the JSON output (``same_value``)."""
    name = spec["fn_name"]
    for i, t in enumerate(spec["tests"]):
        try:
            args = [json.loads(line) for line in t["input"].split("\n") if line.strip()]
            want = json.loads(t["output"])
        except ValueError as e:
            return "bad_gold", f"test {i}: {e!r}"

        def call(args=args, want=want):  # this test's arguments, bound now
            os.dup2(os.open(os.devnull, os.O_WRONLY), 1)
            ns = namespace("solution")
            if "Solution" in ns and hasattr(ns["Solution"], name):
                fn = getattr(ns["Solution"](), name)
            elif name in ns:
                fn = ns[name]
            else:
                raise NameError(f"the solution defines no Solution.{name} or {name}")
            got = fn(*args)
            if not same_value(got, want):
                return f"wrong expected {want!r}, got {got!r}"
            return "PASS"

        reason, detail, _ = in_child(i, call, "", per_test_s)
        if reason:
            return reason, detail
    return None


STYLES = {"assert": run_assert, "stdin": run_stdin, "functional": run_functional}


def main():
    params = read_params()
    out = os.dup(1)  # the real stdout, kept for the verdict line; each test runs in a child with its own fds
    spec = params["spec"]
    try:
        namespace = solution_loader(params["code"], spec["prelude"])
    except (SyntaxError, ValueError) as e:
        failure = ("unparsable", repr(e))
    else:
        failure = STYLES[spec["style"]](spec, namespace, float(params["per_test_s"]))
    reason, detail = failure or ("correct", "")
    line = json.dumps({"ok": failure is None, "reason": reason, "detail": str(detail)[-400:]})
    os.write(out, ("\n" + params["nonce"] + " " + line + "\n").encode())


if __name__ == "__main__":
    main()
