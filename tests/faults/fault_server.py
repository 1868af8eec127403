"""A small OpenAI-compatible server on 127.0.0.1 that misbehaves on purpose, for tests.

Each POST (chat or completions) takes the next action of a script; when the script is spent it
answers with ``then`` (a good reply by default). Actions:

    ok             a good reply (n choices, usage, reasoning_content when ``reasoning`` is set)
    429 / 500 / 503 / 400 / 401   that status with an OpenAI-style error body (401 echoes the key)
    hang           answer nothing for ``hang_s`` seconds (longer than the client's timeout), then a good reply
    malformed      status 200, content-type json, a body that is not JSON
    html           status 200, an HTML page
    zero_choices   status 200, ``choices: []``
    null_content   status 200, ``content: null`` and no reasoning
    no_message     status 200, a choice without ``message``
    wrong_shape    status 200, ``choices`` is a string
    list_body      status 200, the body is a JSON list
    bad_finish     status 200, ``finish_reason: "content_filter"``
    reasoning_only status 200, ``content: null`` with ``reasoning_content`` (a usable sample)
    one_choice     a good reply with one choice whatever ``n`` asks (servers that ignore n)

Bounded: it stops by itself after ``lifetime_s`` seconds, answers at most ``max_requests``
POSTs (later ones get a 400, which no client retries), and a hang ends early when it stops.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MODEL = "faulty"


def good_body(n: int, *, chat: bool = True, reasoning: str | None = None, finish: str = "stop") -> dict:
    if chat:
        msg = {"role": "assistant", "content": None}
        choices = []
        for k in range(n):
            m = dict(msg, content=f"The answer is {k}.")
            if reasoning:
                m["reasoning_content"] = reasoning
            choices.append({"index": k, "finish_reason": finish, "message": m})
        obj = "chat.completion"
    else:
        choices = [{"index": k, "finish_reason": finish, "text": f"The answer is {k}."} for k in range(n)]
        obj = "text_completion"
    return {"id": "x", "object": obj, "created": 0, "model": MODEL, "choices": choices,
            "usage": {"prompt_tokens": 7, "completion_tokens": 10 * n, "total_tokens": 7 + 10 * n}}  # fmt: skip


class FaultServer:
    def __init__(self, script=(), *, then: str = "ok", reasoning: str | None = None, hang_s: float = 3.0,
                 max_requests: int = 100, lifetime_s: float = 60.0):  # fmt: skip
        self.script = list(script)
        self.then = then
        self.reasoning = reasoning
        self.hang_s = hang_s
        self.max_requests = max_requests
        self.lifetime_s = lifetime_s
        self.calls: list[dict] = []  # request bodies, in arrival order
        self.auth: list[str | None] = []  # Authorization headers
        self.times: list[float] = []  # arrival times (monotonic)
        self.lock = threading.Lock()
        self.stopped = threading.Event()
        self._srv = None

    # ── lifecycle ──────────────────────────────────────────────────────────────────────────
    def __enter__(self) -> "FaultServer":
        server = self

        class Handler(_Handler):
            owner = server

        self._srv = _Server(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        self._timer = threading.Timer(self.lifetime_s, self.stop)  # stops by itself
        self._timer.daemon = True
        self._timer.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def stop(self) -> None:
        if not self.stopped.is_set():
            self.stopped.set()
            self._timer.cancel()
            self._srv.shutdown()
            self._srv.server_close()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._srv.server_address[1]}/v1"

    @property
    def posts(self) -> int:
        return len(self.calls)

    def next_action(self, body: dict, auth: str | None) -> str:
        with self.lock:
            self.calls.append(body)
            self.auth.append(auth)
            self.times.append(time.monotonic())
            if len(self.calls) > self.max_requests:
                return "over_budget"
            return self.script.pop(0) if self.script else self.then


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):  # a client that gave up (timed out) is expected
        import sys

        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    owner: FaultServer
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def _raw(self, code: int, data: bytes, ctype: str = "application/json", headers=()) -> None:
        self.send_response(code)
        self.send_header("content-type", ctype)
        self.send_header("content-length", str(len(data)))
        for k, v in headers:
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def _json(self, code: int, body, headers=()) -> None:
        self._raw(code, json.dumps(body).encode(), headers=headers)

    def do_GET(self):
        self._json(200, {"object": "list", "data": [{"id": MODEL, "object": "model"}]})

    def do_POST(self):
        raw = self.rfile.read(int(self.headers.get("content-length") or 0))
        try:
            body = json.loads(raw)
        except ValueError:
            body = {}
        auth = self.headers.get("authorization")
        o = self.owner
        action = o.next_action(body, auth)
        chat = self.path.rstrip("/").endswith("chat/completions")
        n = int(body.get("n") or 1)
        good = lambda: good_body(n, chat=chat, reasoning=o.reasoning)  # noqa: E731
        if action == "hang":
            o.stopped.wait(o.hang_s)
            action = "ok"
        if action == "ok":
            return self._json(200, good())
        if action == "one_choice":
            return self._json(200, good_body(1, chat=chat, reasoning=o.reasoning))
        if action == "over_budget":
            return self._json(400, {"error": {"message": "fault server: request budget exhausted"}})
        if action.isdigit():
            code = int(action)
            msg = f"scripted {code}"
            if code == 401:
                msg = f"Incorrect API key provided: {auth}"  # some servers echo the key
            if code == 500:
                msg += " " + "x" * 20000  # a large error page: the error raised must stay short
            return self._json(code, {"error": {"message": msg}}, [("retry-after", "0")] if code == 429 else [])
        b = good()
        if action == "malformed":
            return self._raw(200, b'{"id": "x", "choices": [{"index": 0, "mess')
        if action == "html":
            return self._raw(200, b"<html><body>Bad gateway</body></html>", ctype="text/html")
        if action == "list_body":
            return self._json(200, [b])
        if action == "zero_choices":
            b["choices"] = []
        elif action == "null_content":
            for c in b["choices"]:
                if chat:
                    c["message"]["content"] = None
                    c["message"].pop("reasoning_content", None)
                else:
                    c["text"] = None
        elif action == "reasoning_only":
            for c in b["choices"]:
                c["message"]["content"] = None
                c["message"]["reasoning_content"] = "Let me think."
                c["finish_reason"] = "length"
        elif action == "no_message":
            for c in b["choices"]:
                c.pop("message", None)
                c.pop("text", None)
        elif action == "wrong_shape":
            b["choices"] = "The answer is 0."
        elif action == "bad_finish":
            for c in b["choices"]:
                c["finish_reason"] = "content_filter"
        else:
            raise ValueError(f"fault server: unknown action {action!r}")
        return self._json(200, b)
