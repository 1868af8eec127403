"""The solution's side of a code check: runs the solution and sends back only what it produced.

The judge (ded/grading/judge.py) holds the tests, the expected values and the verdict; this
program runs beside it as the sandbox's partner (ded/sandbox.py ``run(judge, partner=runner)``):
its own uid, its own PID namespace, holding nothing but two pipes to the judge (fd 0 requests, fd 1
replies). Nothing this process or its children send is trusted: the judge decodes every reply as
plain data and compares it itself, so a solution that rewrites this program's code or forges its
messages only changes its own answer.

Messages are frames (4-byte big-endian length, then UTF-8 JSON). Requests and replies:

    {"op": "load", "code", "prelude"}     -> {"ev": "loaded"} | {"ev": "unparsable", "detail"}
    {"op": "run", "stdin"}                -> a fresh process runs prelude + code as __main__ with
                                             `stdin` on fd 0: {"ev": "ended", "stdout", "over",
                                             "outcome", "status"} (see run_program)
    {"op": "open"}                        -> a fresh process runs prelude + code as module
                                             "solution": {"ev": "ready", "names"} | "raised" | "exited";
                                             then it serves, until "close" or end of input,
                                             and {"ev": "gone", "status"} follows its end:
    {"op": "call", "f", "args", "kwargs"} -> {"ev": "returned", "value", "args"} | "raised" | "exited"
    {"op": "getattr", "obj", "name"}      -> {"ev": "returned", "value"} | "raised"
    {"op": "iter", "obj"}                 -> {"ev": "returned", "value": a list} | "raised"

Values are tagged so that the judge rebuilds exactly the built-in types (``encode``): a function,
a class or any other object is a handle the judge can call or pass back, never a value it compares.

It imports only the standard library: it runs in the sandbox's bare interpreter.
"""

import json
import os
import struct
import sys
import traceback

MAX_FRAME = 64 << 20  # a request bigger than this is the judge's bug; replies are capped by the judge
MAX_DEPTH = 100  # nesting of an encoded value
DETAIL = 2000  # characters of a traceback sent back


# --- frames -------------------------------------------------------------------------------------


def send(fd, message):
    data = json.dumps(message, separators=(",", ":")).encode("utf-8", "surrogatepass")
    data = struct.pack(">I", len(data)) + data
    while data:
        data = data[os.write(fd, data):]


def recv(fd):
    """The next message, or None at the end of input."""
    head = read_exact(fd, 4)
    if head is None:
        return None
    size = struct.unpack(">I", head)[0]
    if size > MAX_FRAME:
        raise ValueError(f"a request of {size} bytes")
    body = read_exact(fd, size)
    return None if body is None else json.loads(body)


def read_exact(fd, n):
    chunks, got = [], 0
    while got < n:
        chunk = os.read(fd, n - got)
        if not chunk:
            return None
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


# --- values -------------------------------------------------------------------------------------


class Handles:
    """Objects the judge may only refer to: functions, classes, instances of the solution's classes."""

    def __init__(self):
        self.objects = []

    def add(self, obj):
        self.objects.append(obj)
        return ["h", len(self.objects) - 1]

    def get(self, i):
        return self.objects[i]


def encode(x, handles, depth=0):
    """`x` as tagged JSON: exact built-in types by value (subclasses as their base type, numpy
    values through ``tolist``), anything else as a handle."""
    if depth > MAX_DEPTH:
        raise ValueError("the value is nested too deeply to send")
    t = type(x)
    if x is None:
        return ["n"]
    if t is bool:
        return ["b", x]
    if t is int:
        return ["i", format(x, "x")]  # hex: no 4300-digit limit when the judge reads it back
    if t is float:
        return ["f", repr(x)]
    if t is complex:
        return ["c", repr(x.real), repr(x.imag)]
    if t is str:
        return ["s", x]
    if t in (bytes, bytearray):
        return ["y" if t is bytes else "Y", bytes(x).hex()]
    if t in (list, tuple, set, frozenset):
        tag = {list: "l", tuple: "t", set: "S", frozenset: "F"}[t]
        return [tag, [encode(v, handles, depth + 1) for v in x]]
    if t is dict:
        return ["d", [[encode(k, handles, depth + 1), encode(v, handles, depth + 1)] for k, v in x.items()]]
    if getattr(t, "__module__", "").split(".")[0] == "numpy" and hasattr(x, "tolist"):
        return encode(x.tolist(), handles, depth + 1)
    for base in (bool, int, float, complex, str, bytes, list, tuple, dict, set, frozenset):
        if isinstance(x, base):  # a subclass: its plain value (its own __eq__ never reaches the judge)
            return encode(base(x), handles, depth + 1)
    return handles.add(x)


def decode(v, handles):
    tag = v[0]
    if tag == "h":
        return handles.get(v[1])
    if tag == "n":
        return None
    if tag == "b":
        return bool(v[1])
    if tag == "i":
        return int(v[1], 16)
    if tag == "f":
        return float(v[1])
    if tag == "c":
        return complex(float(v[1]), float(v[2]))
    if tag == "s":
        return v[1]
    if tag in ("y", "Y"):
        return (bytes if tag == "y" else bytearray)(bytes.fromhex(v[1]))
    if tag in ("l", "t", "S", "F"):
        items = [decode(x, handles) for x in v[1]]
        return {"l": list, "t": tuple, "S": set, "F": frozenset}[tag](items)
    if tag == "d":
        return {decode(k, handles): decode(x, handles) for k, x in v[1]}
    raise ValueError(f"unknown value tag {tag!r}")


def raised(e):
    """How an exception of the solution's is reported: its class name (the judge re-raises a
    built-in one by that name) and its text."""
    text = "".join(traceback.format_exception(type(e), e, e.__traceback__, limit=-3))
    return {"ev": "raised", "type": type(e).__name__, "detail": text[-DETAIL:]}


# --- one fresh process per program run or session --------------------------------------------


def redirect(stdin_path, stdout_path):
    for target, path, flags in ((0, stdin_path, os.O_RDONLY), (1, stdout_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC),
                                (2, os.devnull, os.O_WRONLY)):  # fmt: skip
        fd = os.open(path, flags, 0o600)
        os.dup2(fd, target)
        os.close(fd)


def execute(compiled, name):
    ns = {"__name__": name, "__builtins__": __builtins__}
    for code in compiled:
        exec(code, ns)  # noqa: S102 - the prelude, then the solution: running it is the point
    return ns


def run_program(compiled, stdin_text, out):
    """The program as __main__ in a child, the test's input on fd 0 and fd 1 in a file; the child
    says how it ended on a pipe (an early os._exit says nothing: its exit status and output decide)."""
    with open("in.txt", "w", encoding="utf-8", errors="surrogatepass") as f:
        f.write(stdin_text)
    status_r, status_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(status_r)
            redirect("in.txt", "out.txt")  # replaces fds 0 and 1: the child keeps no pipe to the judge
            try:
                execute(compiled, "__main__")
                outcome = ["ok"]
            except SystemExit as e:
                outcome = ["exit", e.code if e.code is None or isinstance(e.code, int) else str(e.code)]
            except BaseException as e:  # noqa: BLE001 - whatever the program raises is its outcome
                outcome = ["raised", raised(e)["detail"]]
            try:
                sys.stdout.flush()
            except BaseException:  # noqa: BLE001, S110 - the program may have closed or replaced its stdout
                pass
            os.write(status_w, json.dumps(outcome).encode()[:60000])
        finally:
            os._exit(0)
    os.close(status_w)
    _, status = os.waitpid(pid, 0)
    os.set_blocking(status_r, False)
    try:
        text = os.read(status_r, 65536)
    except BlockingIOError:
        text = b""
    os.close(status_r)
    with open("out.txt", "rb") as f:
        stdout = f.read(out + 1)
    send(1, {"ev": "ended", "stdout": stdout[:out].decode("utf-8", "replace"), "over": len(stdout) > out,
             "outcome": json.loads(text) if text else None, "status": ended(status)})  # fmt: skip


def ended(status):
    return ["signal", os.WTERMSIG(status)] if os.WIFSIGNALED(status) else ["status", os.WEXITSTATUS(status)]


def session(compiled):
    """The solution as module "solution" in a child that answers the judge's calls itself."""
    pid = os.fork()
    if pid:
        _, status = os.waitpid(pid, 0)
        send(1, {"ev": "gone", "status": ended(status)})  # after its last reply: the session is over
        return
    try:
        cin, cout = os.dup(0), os.dup(1)
        redirect(os.devnull, os.devnull)  # its stdin is empty; what it prints goes nowhere
        serve(compiled, cin, cout)
    finally:
        os._exit(0)


def serve(compiled, cin, cout):
    handles = Handles()
    try:
        ns = execute(compiled, "solution")
        names = {k: encode(v, handles) for k, v in ns.items()
                 if not k.startswith("__") and type(v).__name__ != "module"}  # fmt: skip
        reply = {"ev": "ready", "names": names}
    except SystemExit as e:
        reply = {"ev": "exited", "detail": repr(e.code)}
    except BaseException as e:  # noqa: BLE001
        reply = raised(e)
    send(cout, reply)
    if reply["ev"] != "ready":
        return
    while True:
        msg = recv(cin)
        if msg is None or msg["op"] == "close":
            return
        try:
            if msg["op"] == "call":
                args = [decode(a, handles) for a in msg["args"]]
                kwargs = {k: decode(a, handles) for k, a in msg["kwargs"].items()}
                value = decode(msg["f"], handles)(*args, **kwargs)
                reply = {"ev": "returned", "value": encode(value, handles),
                         "args": [encode(a, handles) for a in args]}  # fmt: skip  (arguments it may have changed in place)
            elif msg["op"] == "getattr":
                reply = {"ev": "returned", "value": encode(getattr(decode(msg["obj"], handles), msg["name"]), handles)}
            elif msg["op"] == "iter":
                reply = {"ev": "returned", "value": encode(list(decode(msg["obj"], handles)), handles)}
            else:
                raise ValueError(f"unknown request {msg['op']!r}")
        except SystemExit as e:
            reply = {"ev": "exited", "detail": repr(e.code)}
        except BaseException as e:  # noqa: BLE001
            reply = raised(e)
        send(cout, reply)
        if reply["ev"] == "exited":
            return


def main():
    compiled = None
    while True:
        msg = recv(0)
        if msg is None:
            return
        if msg["op"] == "load":
            try:  # the solution alone first: it may start with "from __future__ import ..."
                code = compile(msg["code"], "solution.py", "exec")
                compiled = [compile(msg["prelude"], "prelude.py", "exec"), code] if msg["prelude"] else [code]
                send(1, {"ev": "loaded"})
            except (SyntaxError, ValueError) as e:
                send(1, {"ev": "unparsable", "detail": repr(e)})
        elif msg["op"] == "run":
            run_program(compiled, msg["stdin"], int(msg["out"]))
        elif msg["op"] == "open":
            session(compiled)


if __name__ == "__main__":
    main()
