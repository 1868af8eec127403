"""The ``openai`` backend: any OpenAI-compatible endpoint (vLLM, SGLang, transformers serve,
llama.cpp, hosted APIs), asynchronous with a bounded number of requests in flight.

Why it is built this way:
  * The stages iterate ``generate()`` and persist every batch it yields, so the asyncio loop
    runs in a helper thread and hands finished samples over a queue; they are yielded at least
    every second. A crash or a dead server loses only the requests in flight.
  * A fixed pool of ``concurrency`` workers pulls requests from one iterator: memory stays flat
    however many requests there are (no task per request is created up front).
  * Each sample is its own request with its own seed by default: exact per-sample token usage,
    reproducible samples where the server honours seeds, and vLLM's prefix cache makes n
    requests of one prompt about as cheap as one request with n. ``n_per_request`` asks for the
    n samples of a question in one request instead (hosted APIs bill the prompt once); when the
    server returns fewer choices than asked (llama.cpp, transformers serve ignore ``n``), the
    rest are requested one by one with their own seeds and later requests do the same.
  * 429, 5xx, timeouts and connection errors are retried with exponential backoff and jitter
    (honouring Retry-After; tenacity); other errors (400, 401, 404) fail at once, naming the endpoint and
    the model. After a failure no new request starts, the ones in flight finish and are saved,
    then the error is raised: a rerun generates only what is missing.
  * A 200 reply is a sample only once checked (``_parse``): the body is read as JSON here, not
    by the SDK, and a reply that is not JSON, has the wrong shape, no choices, a choice with
    neither content nor reasoning, or a finish other than stop/length is *unusable*: it counts
    against the same ``max_retries`` with the same backoff, and is never cached. When the
    retries are spent the error is one line: endpoint, model, question, sample, last reason
    (shortened; the API key is masked).
  * Reasoning delivered separately (``reasoning_content`` / ``reasoning``) is kept with the
    answer as ``<think>...</think>`` (ded/core/reasoning.py).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import queue
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

from ded.config import PromptedModelConfig, check, one_of
from ded.core.models import ModelNotAvailable, gguf_file, local_checkpoint, resolve
from ded.core.reasoning import join_reasoning, normalize_think
from ded.generation import Backend, Completion, Request
from ded.generation.backends import register_backend
from ded.generation.identity import HINT, label, labelled, model_identity

log = logging.getLogger(__name__)

LAUNCH = ("none", "vllm", "transformers", "llama_cpp")  # none: an external server at base_url


@dataclass
class EndpointConfig:
    base_url: Optional[str] = None  # e.g. http://host:8000/v1; null: read base_url_env
    base_url_env: Optional[str] = "OPENAI_BASE_URL"  # environment variable holding the URL
    api_key_env: Optional[str] = "OPENAI_API_KEY"  # environment variable holding the key (never the key in config)
    model: Optional[str] = None  # served model name sent in requests; null: the model's path
    api: str = "chat"  # chat (messages) or completions (prompt via the chat template)
    concurrency: int = 8  # requests in flight
    timeout: float = 3600.0  # seconds per request (long reasoning traces take minutes)
    max_retries: int = 8  # per request, on 429, 5xx, timeouts, connection errors and unusable replies (no choices, null content, not JSON)
    backoff: float = 1.0  # seconds before the first retry; doubles each time (with jitter)
    max_backoff: float = 60.0  # seconds, the cap on one wait (Retry-After included)
    n_per_request: bool = False  # one request asks for all n samples of a question (falls back to seeds)
    extra_body: dict[str, Any] = field(default_factory=dict)  # server-specific request fields (top_k, ...); enters the cache key
    launch: str = "none"  # none | vllm | transformers | llama_cpp: start this server for the run and stop it after
    launch_args: list[str] = field(default_factory=list)  # extra command-line arguments for the launched server
    # the server command before its arguments, e.g. [/opt/vllm/bin/vllm, serve]; [] = this environment's
    launch_command: list[str] = field(default_factory=list)
    port: int = 0  # launched server's port; 0 = a free one
    startup_timeout: float = 1800.0  # seconds to wait for the launched server's health check
    max_restarts: int = 1  # a launched server that dies mid-run is started again this many times per run
    tensor_parallel_size: int = 1  # launch=vllm: GPUs per server replica
    data_parallel_size: int = 1  # launch=vllm: server replicas

    def __post_init__(self):  # keys relative to this node (teacher.endpoint / teacher.vllm, student's alike)
        one_of(self.api, ("chat", "completions"), "api")
        one_of(self.launch, LAUNCH, "launch")
        check(self.concurrency > 0, "concurrency", f"must be > 0, got {self.concurrency}")
        check(self.timeout > 0, "timeout", f"must be > 0, got {self.timeout}")
        check(self.max_retries >= 0, "max_retries", f"must be >= 0, got {self.max_retries}")
        check(self.backoff >= 0, "backoff", f"must be >= 0, got {self.backoff}")
        check(self.max_restarts >= 0, "max_restarts", f"must be >= 0, got {self.max_restarts}")
        check(self.tensor_parallel_size > 0, "tensor_parallel_size", f"must be > 0, got {self.tensor_parallel_size}")
        check(self.data_parallel_size > 0, "data_parallel_size", f"must be > 0, got {self.data_parallel_size}")


@dataclass
class OpenAIModelConfig(PromptedModelConfig):
    """An OpenAI-compatible server, external or launched by the harness; ``dtype`` is what a
    launched vllm/transformers server loads (an external server decides for itself)."""
    backend: str = "openai"
    endpoint: EndpointConfig = field(default_factory=EndpointConfig)


@register_backend("openai", OpenAIModelConfig)
def build(mcfg: OpenAIModelConfig, cache_root: str, role: str, path: str, identity: dict | None) -> "OpenAIBackend":
    e = mcfg.endpoint
    who = label(role, mcfg, path)
    checkpoint = labelled(lambda: local_checkpoint(path, cache_root, mcfg.revision), who)
    trained = identity is not None  # a trained checkpoint (evaluation): the served model must be it, not e.model
    if trained and e.launch == "none":
        raise ModelNotAvailable(f"{who}: an external endpoint (endpoint.launch=none) serves its own model, not the trained "
                                f"checkpoint; let the harness launch one (endpoint.launch=vllm|transformers|llama_cpp) or use backend hf")  # fmt: skip
    ident = identity or model_identity(mcfg)
    hint = HINT
    served = path if trained else e.model or path
    extra_body = dict(e.extra_body or {})
    identity = {"model": ident["model"] if trained else e.model or ident["model"], "revision": ident.get("revision"), "api": e.api}
    if extra_body:
        identity["extra_body"] = extra_body
    server = model_check = base_url = None
    if e.launch != "none":
        server, model_check, served = launched_server(mcfg, cache_root, path, who, checkpoint, identity, ident, extra_body, served)
    else:
        base_url, hint = external_url(e, role, hint)
    api_key = os.environ.get(e.api_key_env) if e.api_key_env else None

    def tokenizer():
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(checkpoint())

    return OpenAIBackend(model=served, identity=identity, base_url=base_url, api_key=api_key, api=e.api, concurrency=e.concurrency,
                         timeout=e.timeout, max_retries=e.max_retries, backoff=e.backoff, max_backoff=e.max_backoff,
                         n_per_request=e.n_per_request, extra_body=extra_body, server=server, max_restarts=e.max_restarts, tokenizer_loader=tokenizer,
                         label=who, hint=hint, model_check=model_check)  # fmt: skip


def launched_server(mcfg, cache_root, path, who, checkpoint, identity: dict, ident: dict, extra_body: dict, served):
    """(the Server the harness starts, what it serves, the served model name); fills the identity."""
    from ded.generation.server import Server  # httpx: loaded only when a run launches a server (backend discovery stays light)

    e = mcfg.endpoint
    identity["launch"] = e.launch  # a launched engine is known: llama.cpp's GGUF is not vLLM's bf16
    if e.launch == "llama_cpp":
        def location() -> str:
            r = resolve(path)
            if r.kind != "gguf":
                raise ModelNotAvailable(f"{who}: endpoint.launch=llama_cpp serves GGUF files; {path!r} is a {r.kind} model. {HINT}")
            return gguf_file(r, cache_root)  # one a package ships in parts: assembled into the cache once
    else:
        identity["dtype"] = ident.get("dtype")
        location = checkpoint  # a local directory (a GGUF converted once) or a cached hub id
    args = list(e.launch_args)
    if e.launch == "vllm":
        args = ["--dtype", mcfg.dtype, *args]
    if e.launch == "transformers":
        served = None  # transformers serve names the model by the path it was given: set at start
        # transformers serve (5.x) samples only if the generation config says do_sample; the
        # request's temperature alone leaves it greedy (temperature 0 still turns it off).
        extra_body.setdefault("generation_config", json.dumps({"do_sample": True}))
    server = Server(e.launch, location, served, port=e.port, args=args, log_dir=Path(cache_root) / "servers",
                    startup_timeout=e.startup_timeout, tensor_parallel_size=e.tensor_parallel_size,
                    data_parallel_size=e.data_parallel_size, head=e.launch_command or None)  # fmt: skip
    return server, location, served


def external_url(e: EndpointConfig, role: str, hint: str) -> tuple[str | None, str]:
    """The external endpoint's URL (config, else its environment variable) and the hint shown when it has none."""
    base_url = e.base_url or (os.environ.get(e.base_url_env) if e.base_url_env else None)
    if not base_url:
        env = f" (or the environment variable {e.base_url_env})" if e.base_url_env else ""
        hint = (
            f"Set {role}.endpoint.base_url=http://HOST:PORT/v1{env}"
            + (f" and the API key in ${e.api_key_env}" if e.api_key_env else "")
            + f", or let the harness start a server ({role}.endpoint.launch=vllm|transformers|llama_cpp). {hint}"
        )
    return base_url, hint


class EndpointError(RuntimeError):
    """A request the endpoint refused or that kept failing after every retry."""


REAP_GRACE_STEPS = 20  # x 0.05 s: how long an error from a launched server waits to see whether it died


class UnusableReply(Exception):
    """A 200 reply that is not a sample (not JSON, wrong shape, no choices, no content, odd finish)."""


# finish_reason values that end a usable sample, and what they are stored as (filters read
# "length" as truncated); anything else (content_filter, abort, error, tool_calls) is unusable.
FINISH = {None: "stop", "stop": "stop", "eos": "stop", "eos_token": "stop", "stop_sequence": "stop", "end_turn": "stop",
          "length": "length", "max_tokens": "length"}  # fmt: skip
REASON_CHARS = 300  # the most of a server's reply an error message quotes


def _retryable(e: Exception) -> bool:
    import openai

    if isinstance(e, UnusableReply):
        return True
    if isinstance(e, (openai.APIConnectionError, openai.APITimeoutError)):  # refused, reset, timed out
        return True
    if isinstance(e, openai.APIStatusError):
        return e.status_code in (408, 409, 429) or e.status_code >= 500
    return False


def _retry_after(e: Exception) -> float | None:
    resp = getattr(e, "response", None)
    try:
        return float(resp.headers.get("retry-after")) if resp is not None else None
    except (TypeError, ValueError):
        return None


class OpenAIBackend(Backend):
    def __init__(
        self,
        *,
        model: str | None,
        identity: dict,
        base_url: str | None,
        api_key: str | None,
        api: str = "chat",
        concurrency: int = 8,
        timeout: float = 600.0,
        max_retries: int = 8,
        backoff: float = 1.0,
        max_backoff: float = 60.0,
        n_per_request: bool = False,
        extra_body: dict | None = None,
        server=None,
        max_restarts: int = 1,
        tokenizer_loader: Callable | None = None,
        label: str = "model",
        hint: str = "",
        model_check: Callable | None = None,
    ):
        """``model``: the served model name sent in requests. ``server``: a server.Server to
        start on first use (else ``base_url`` must answer). ``tokenizer_loader``: for
        api=completions, returns the tokenizer whose chat template builds the prompt."""
        self.model = model  # None: the launched server's name for it (known once it started)
        self.identity = {"backend": "openai", **identity}
        self.base_url = base_url.rstrip("/") if base_url else None
        self.api_key = api_key
        self.api = api
        self.concurrency = concurrency
        self.timeout = timeout
        self.max_retries = max_retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.n_per_request = n_per_request
        self.extra_body = dict(extra_body or {})
        self.server = server
        self.max_restarts, self._restarts, self._restart_lock = max_restarts, 0, None
        self._tokenizer_loader = tokenizer_loader
        self._tok = None
        self._n_supported = True
        self._loop = None
        self.label, self.hint = label, hint
        self._model_check = model_check
        self.chunk_size = max(1024, concurrency * 64)
        self.flush_seconds = 1.0

    # ── availability ──────────────────────────────────────────────────────────────────────
    def check(self) -> None:
        if self.server is not None:
            from ded.generation.server import INSTALL, install_problems, missing_modules  # httpx: only with a launched server

            if self.server.head:  # another environment's server command: it brings its own modules
                pass
            elif self.server.kind == "vllm" and (problems := install_problems()):
                raise ModelNotAvailable(f"{self.label}: endpoint.launch=vllm cannot start here: {'; '.join(problems)}. {self.hint}")
            elif missing := missing_modules(self.server.kind):
                raise ModelNotAvailable(
                    f"{self.label}: endpoint.launch={self.server.kind} needs the Python module(s) {missing}: {INSTALL[self.server.kind]}. {self.hint}"
                )
            if self._model_check is not None:
                self._model_check()
            return
        if not self.base_url:
            raise ModelNotAvailable(f"{self.label}: backend=openai has no endpoint. {self.hint}")
        import httpx

        try:
            r = httpx.get(f"{self.base_url}/models", headers=self._headers(), timeout=15.0)
        except httpx.HTTPError as e:
            raise ModelNotAvailable(f"{self.label}: endpoint {self.base_url} is not reachable ({type(e).__name__}: {e}). {self.hint}") from None
        if r.status_code in (401, 403):
            raise ModelNotAvailable(f"{self.label}: endpoint {self.base_url} refused the API key (HTTP {r.status_code}). {self.hint}")
        if r.status_code == 200:
            try:
                served = [m["id"] for m in r.json().get("data", [])]
            except (ValueError, KeyError, TypeError, AttributeError):
                served = []
            if served and self.model not in served:
                raise ModelNotAvailable(
                    f"{self.label}: endpoint {self.base_url} does not serve model {self.model!r}; it serves {served[:20]}. "
                    "Set endpoint.model to one of them."
                )

    def _headers(self) -> dict:
        return {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}

    # ── generation ────────────────────────────────────────────────────────────────────────
    def generate(self, requests: list[Request], sampling: dict) -> Iterator[list[Completion]]:
        if self.server is not None:
            self.base_url = self.server.start()
            self.model = self.server.served_name
        if not self.base_url:
            raise ModelNotAvailable(f"{self.label}: backend=openai has no endpoint. {self.hint}")
        if self.api == "completions" and self._tok is None:
            self._tok = self._tokenizer_loader()
        groups = self._groups(requests)
        out: queue.Queue = queue.Queue()
        stop = threading.Event()
        def loop_thread():
            try:
                asyncio.run(self._run(groups, sampling, out, stop))
            except asyncio.CancelledError:  # abandoned by the consumer: nothing to report
                pass

        thread = threading.Thread(target=loop_thread, name="ded-openai", daemon=True)
        thread.start()
        pending: list[Completion] = []
        errors: list[BaseException] = []
        last = time.monotonic()
        finished = False
        try:
            while True:
                try:
                    item = out.get(timeout=0.2)
                except queue.Empty:
                    item = None
                done = item is _DONE
                if isinstance(item, BaseException):
                    errors.append(item)
                elif isinstance(item, list):
                    pending += item
                if pending and (done or time.monotonic() - last >= self.flush_seconds or len(pending) >= 256):
                    yield pending
                    pending, last = [], time.monotonic()
                if done:
                    finished = True
                    break
        finally:
            stop.set()  # start nothing new
            if not finished:  # the consumer stopped early or failed: abandon the requests in flight
                loop = self._loop
                if loop is not None and not loop.is_closed():
                    try:
                        loop.call_soon_threadsafe(lambda: [t.cancel() for t in asyncio.all_tasks(loop)])
                    except RuntimeError:  # the loop closed meanwhile
                        pass
            thread.join()
        if errors:
            raise errors[0]

    def _groups(self, requests: list[Request]) -> list[list[Request]]:
        if not self.n_per_request:
            return [[r] for r in requests]
        by_q: dict[str, list[Request]] = {}
        for r in requests:
            by_q.setdefault(r.qhash, []).append(r)
        return list(by_q.values())

    async def _run(self, groups, sampling, out: queue.Queue, stop: threading.Event) -> None:
        import openai

        # The SDK's own retries are off: ours back off longer and report what failed.
        client = openai.AsyncOpenAI(base_url=self.base_url, api_key=self.api_key or "EMPTY", max_retries=0, timeout=self.timeout)
        it = iter(groups)
        failed = threading.Event()

        async def worker():
            for group in it:  # one shared iterator: each worker takes the next group
                if stop.is_set() or failed.is_set():
                    return
                try:
                    out.put(await self._call(client, group, sampling))
                except Exception as e:  # noqa: BLE001 - handed to the consuming thread
                    failed.set()
                    out.put(e)
                    return

        self._loop = asyncio.get_running_loop()
        self._restart_lock = asyncio.Lock()
        try:
            await asyncio.gather(*(worker() for _ in range(self.concurrency)), return_exceptions=True)
        finally:
            await client.close()
            out.put(_DONE)

    async def _revive(self, where: str) -> bool:
        """True when the server the harness launched had died and runs again (endpoint.max_restarts);
        an EndpointError naming its exit code and log once the restarts are spent."""
        s = self.server
        if s is None:
            return False
        for _ in range(REAP_GRACE_STEPS):  # a killed server drops its sockets a moment before it can be reaped: wait for that
            if s.exit_code() is not None or self._restart_lock.locked():
                break
            await asyncio.sleep(0.05)
        else:
            return False  # still running, and no restart under way: the error is the server's reply, not its death
        async with self._restart_lock:  # one worker restarts it; the others find it running
            if (rc := s.exit_code()) is None:
                return True
            if self._restarts >= self.max_restarts:
                raise EndpointError(f"{where}: the {s.kind} server launched for this run exited with code {rc} and endpoint.max_restarts="
                                    f"{self.max_restarts} restart(s) are spent; every sample received so far is saved and a rerun generates "
                                    f"only the rest. {s.log_path}:\n{s.log_tail()}")  # fmt: skip
            self._restarts += 1
            log.warning("%s: the %s server exited with code %s; starting it again (%d/%d)", where, s.kind, rc, self._restarts, self.max_restarts)
            s.stop()
            await asyncio.get_running_loop().run_in_executor(None, s.start)
            return True

    async def _call(self, client, group: list[Request], sampling: dict) -> list[Completion]:
        """The group's completions; each request (and each fallback request) has its own
        ``max_retries`` budget, spent on errors and unusable replies alike (tenacity)."""
        from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt, wait_exponential, wait_random_exponential

        r0 = group[0]
        where = f"endpoint {self.base_url}, model {self.model!r}, question {r0.qhash} sample {r0.index}"
        half = dict(multiplier=self.backoff / 2, max=self.max_backoff / 2)  # fixed half + jittered half: min(max_backoff, backoff * 2^i) * U(0.5, 1)
        backoff = wait_exponential(**half) + wait_random_exponential(**half)

        def wait(state) -> float:  # the server's Retry-After (capped at max_backoff) where it sends one
            after = _retry_after(state.outcome.exception())
            return min(self.max_backoff, after) if after is not None else backoff(state)

        def warn(state) -> None:
            log.warning("%s: %s, retry %d/%d in %.1f s", where, self._reason(state.outcome.exception()), state.attempt_number,
                        self.max_retries, state.next_action.sleep)  # fmt: skip

        retrying = AsyncRetrying(stop=stop_after_attempt(self.max_retries + 1), wait=wait, retry=retry_if_exception(_retryable),
                                 before_sleep=warn, reraise=True)  # fmt: skip
        try:
            done = await retrying(self._attempt, client, group, sampling, where)
        except EndpointError:  # the launched server's restarts are spent: its own message, with its log
            raise
        except Exception as e:
            if not _retryable(e):
                raise EndpointError(f"{where}: {self._reason(e)}") from None
            raise EndpointError(f"{where}: failed after {self.max_retries + 1} attempts (endpoint.max_retries={self.max_retries}); "
                                f"last: {self._reason(e)}") from None  # fmt: skip
        rest = group[len(done) :]
        if rest:  # the server ignored n: ask for the others one by one, each with its own seed
            if self._n_supported and len(group) > 1:
                log.info("endpoint %s returned %d of %d choices: sending one request per sample from now on", self.base_url, len(done), len(group))
                self._n_supported = False
            for r in rest:
                done += await self._call(client, [r], sampling)
        return done

    async def _attempt(self, client, group: list[Request], sampling: dict, where: str) -> list[Completion]:
        """One try of `_request`. A launched server that had died is started again (endpoint.max_restarts)
        and asked at once: a restart spends no retry (`_revive` raises once the restarts are spent)."""
        while True:
            try:
                return await self._request(client, group, sampling)
            except Exception:
                if not await self._revive(where):
                    raise

    def _reason(self, e: Exception) -> str:
        """What went wrong, in one short line, without the API key."""
        import openai

        if isinstance(e, UnusableReply):
            text = f"unusable reply: {e}"
        elif isinstance(e, openai.APIStatusError):
            text = f"{type(e).__name__} (HTTP {e.status_code}): {e.message}"
        else:
            text = f"{type(e).__name__}: {e}"
        text = " ".join(str(text).split())
        if self.api_key:
            text = text.replace(self.api_key, "***")
        return text if len(text) <= REASON_CHARS else text[:REASON_CHARS] + f"... ({len(text)} chars)"

    async def _request(self, client, group: list[Request], sampling: dict) -> list[Completion]:
        """One request for the group (n choices, or one where the server ignores n); the
        completions of the first choices it returned, or UnusableReply."""
        n = len(group) if self._n_supported else 1
        r0 = group[0]
        kw = dict(model=self.model, max_tokens=int(sampling["max_new_tokens"]), temperature=float(sampling.get("temperature", 1.0)),
                  top_p=float(sampling.get("top_p", 1.0)), seed=r0.seed, extra_body=self.extra_body or None)  # fmt: skip
        if n > 1:
            kw["n"] = n
        if self.api == "chat":
            raw = await client.chat.completions.with_raw_response.create(messages=r0.messages, **kw)
        else:
            prompt = self._tok.apply_chat_template(r0.messages, tokenize=False, add_generation_prompt=True)
            raw = await client.completions.with_raw_response.create(prompt=prompt, **kw)
        choices, usage = _parse(raw.text, self.api)
        choices = choices[: len(group)]
        return self._completions(group[: len(choices)], choices, usage)

    def _completions(self, group, choices: list[tuple[str, str]], usage: dict) -> list[Completion]:
        total = usage.get("completion_tokens")
        if total is None:
            counts = [0] * len(choices)
        elif len(choices) == 1:
            counts = [total]
        else:  # usage covers all choices together: share it out by length
            lens = [max(len(t), 1) for t, _ in choices]
            counts = [round(total * n / sum(lens)) for n in lens]
        out = []
        for k, (r, (text, finish), n_tok) in enumerate(zip(group, choices, counts)):
            extra = {}
            if k == 0 and usage.get("prompt_tokens") is not None:
                extra["prompt_tokens"] = usage["prompt_tokens"]  # once per request
            out.append(Completion(r, text, n_tok, finish, extra))
        return out

    def close(self) -> None:
        if self.server is not None:
            self.server.stop()  # a later generate() starts it again


def _short(v) -> str:
    r = repr(v)
    return r if len(r) <= 80 else r[:80] + "..."


def _parse(body: str, api: str) -> tuple[list[tuple[str, str]], dict]:
    """([(text, finish)] in choice order, usage {prompt_tokens, completion_tokens}) of a 200
    reply's body; UnusableReply, saying why, unless every choice is a sample."""
    try:
        data = json.loads(body)
    except ValueError:
        raise UnusableReply(f"the body is not JSON: {_short(body)}") from None
    if not isinstance(data, dict):
        raise UnusableReply(f"the body is a JSON {type(data).__name__}, not an object: {_short(data)}")
    if data.get("error"):  # some servers answer 200 with an error object
        raise UnusableReply(f"error in a 200 reply: {_short(data['error'])}")
    raw = data.get("choices")
    if not isinstance(raw, list):
        raise UnusableReply(f"'choices' is {_short(raw)}, not a list")
    if not raw:
        raise UnusableReply("no choices")
    out = sorted((_choice(c, pos, api) for pos, c in enumerate(raw)), key=lambda x: x[0])
    usage = data.get("usage")
    counts = {}
    if isinstance(usage, dict):  # token counts are bookkeeping: a missing or odd one is unknown, not an error
        for k in ("prompt_tokens", "completion_tokens"):
            v = usage.get(k)
            if isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 0:
                counts[k] = int(v)
    return [(t, f) for _, t, f in out], counts


def _choice(c, pos: int, api: str) -> tuple[int, str, str]:
    """(index, text, finish) of one choice of a reply; UnusableReply unless it is a sample."""
    if not isinstance(c, dict):
        raise UnusableReply(f"choice {pos} is {_short(c)}, not an object")
    index = c.get("index", pos)
    if index is None:
        index = pos
    if not isinstance(index, int) or isinstance(index, bool):
        raise UnusableReply(f"choice {pos} has index {_short(index)}")
    if api == "chat":
        m = c.get("message")
        if not isinstance(m, dict):
            raise UnusableReply(f"choice {index} has message {_short(m)}, not an object")
        content = m.get("content")
        reasoning = m.get("reasoning_content") or m.get("reasoning")
        if content is not None and not isinstance(content, str):
            raise UnusableReply(f"choice {index} has content {_short(content)}, not a string")
        if reasoning is not None and not isinstance(reasoning, str):
            raise UnusableReply(f"choice {index} has reasoning {_short(reasoning)}, not a string")
        if content is None and not reasoning:
            raise UnusableReply(f"choice {index} has no content (content: null) and no reasoning")
        text = join_reasoning(reasoning, content)
    else:
        t = c.get("text")
        if not isinstance(t, str):
            raise UnusableReply(f"choice {index} has text {_short(t)}, not a string")
        text = normalize_think(t)
    finish = c.get("finish_reason")
    if not isinstance(finish, (str, type(None))) or finish not in FINISH:
        raise UnusableReply(f"choice {index} finished with {_short(finish)}, not stop or length")
    return index, text, FINISH[finish]


_DONE = object()
