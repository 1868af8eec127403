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
    (honouring Retry-After); other errors (400, 401, 404) fail at once, naming the endpoint and
    the model. After a failure no new request starts, the ones in flight finish and are saved,
    then the error is raised: a rerun generates only what is missing.
  * Reasoning delivered separately (``reasoning_content`` / ``reasoning``) is kept with the
    answer as ``<think>...</think>`` (ded/generation/text.py).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import queue
import random
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

from ded.config import PromptedModelConfig, _check, one_of
from ded.generation import Backend, Completion, Request
from ded.generation.backends import register_backend
from ded.generation.factory import HINT, label, labelled, model_identity
from ded.generation.text import join_reasoning, normalize_think
from ded.models import ModelNotAvailable, local_checkpoint, resolve

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
    max_retries: int = 8  # per request, on 429, 5xx, timeouts and connection errors
    backoff: float = 1.0  # seconds before the first retry; doubles each time (with jitter)
    max_backoff: float = 60.0  # seconds, the cap on one wait
    n_per_request: bool = False  # one request asks for all n samples of a question (falls back to seeds)
    extra_body: dict[str, Any] = field(default_factory=dict)  # server-specific request fields (top_k, ...); enters the cache key
    launch: str = "none"  # none | vllm | transformers | llama_cpp: start this server for the run and stop it after
    launch_args: list[str] = field(default_factory=list)  # extra command-line arguments for the launched server
    port: int = 0  # launched server's port; 0 = a free one
    startup_timeout: float = 1800.0  # seconds to wait for the launched server's health check
    tensor_parallel_size: int = 1  # launch=vllm: GPUs per server replica
    data_parallel_size: int = 1  # launch=vllm: server replicas

    def __post_init__(self):
        one_of(self.api, ("chat", "completions"), "endpoint.api")
        one_of(self.launch, LAUNCH, "endpoint.launch")
        _check(self.concurrency > 0, "endpoint.concurrency", f"must be > 0, got {self.concurrency}")
        _check(self.timeout > 0, "endpoint.timeout", f"must be > 0, got {self.timeout}")
        _check(self.max_retries >= 0, "endpoint.max_retries", f"must be >= 0, got {self.max_retries}")
        _check(self.backoff >= 0, "endpoint.backoff", f"must be >= 0, got {self.backoff}")
        _check(self.tensor_parallel_size > 0, "endpoint.tensor_parallel_size", f"must be > 0, got {self.tensor_parallel_size}")
        _check(self.data_parallel_size > 0, "endpoint.data_parallel_size", f"must be > 0, got {self.data_parallel_size}")


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
                         n_per_request=e.n_per_request, extra_body=extra_body, server=server, tokenizer_loader=tokenizer,
                         label=who, hint=hint, model_check=model_check)  # fmt: skip


def launched_server(mcfg, cache_root, path, who, checkpoint, identity: dict, ident: dict, extra_body: dict, served):
    """(the Server the harness starts, what it serves, the served model name); fills the identity."""
    from ded.generation.server import Server

    e = mcfg.endpoint
    identity["launch"] = e.launch  # a launched engine is known: llama.cpp's GGUF is not vLLM's bf16
    if e.launch == "llama_cpp":
        def location() -> str:
            r = resolve(path)
            if r.kind != "gguf":
                raise ModelNotAvailable(f"{who}: endpoint.launch=llama_cpp serves GGUF files; {path!r} is a {r.kind} model. {HINT}")
            return r.location
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
                    data_parallel_size=e.data_parallel_size)  # fmt: skip
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


def _retryable(e: Exception) -> bool:
    import openai

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
            from ded.generation.server import INSTALL, missing_modules

            missing = missing_modules(self.server.kind)
            if missing:
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
        try:
            await asyncio.gather(*(worker() for _ in range(self.concurrency)), return_exceptions=True)
        finally:
            await client.close()
            out.put(_DONE)

    async def _call(self, client, group: list[Request], sampling: dict) -> list[Completion]:
        r0 = group[0]
        for attempt in range(self.max_retries + 1):
            try:
                return await self._request(client, group, sampling)
            except Exception as e:
                where = f"endpoint {self.base_url}, model {self.model!r}, question {r0.qhash} sample {r0.index}"
                if not _retryable(e):
                    raise EndpointError(f"{where}: {type(e).__name__}: {e}") from e
                if attempt == self.max_retries:
                    raise EndpointError(f"{where}: failed after {attempt + 1} attempts (endpoint.max_retries={self.max_retries}): {type(e).__name__}: {e}") from e
                wait = _retry_after(e) or min(self.max_backoff, self.backoff * 2**attempt) * random.uniform(0.5, 1.0)
                log.warning("%s: %s, retry %d/%d in %.1f s", where, type(e).__name__, attempt + 1, self.max_retries, wait)
                await asyncio.sleep(wait)
        raise AssertionError("unreachable")

    async def _request(self, client, group: list[Request], sampling: dict) -> list[Completion]:
        n = len(group) if self._n_supported else 1
        r0 = group[0]
        kw = dict(model=self.model, max_tokens=int(sampling["max_new_tokens"]), temperature=float(sampling.get("temperature", 1.0)),
                  top_p=float(sampling.get("top_p", 1.0)), seed=r0.seed, extra_body=self.extra_body or None)  # fmt: skip
        if n > 1:
            kw["n"] = n
        if self.api == "chat":
            resp = await client.chat.completions.create(messages=r0.messages, **kw)
            texts = [join_reasoning(_reasoning(c.message), c.message.content) for c in resp.choices]
        else:
            prompt = self._tok.apply_chat_template(r0.messages, tokenize=False, add_generation_prompt=True)
            resp = await client.completions.create(prompt=prompt, **kw)
            texts = [normalize_think(c.text or "") for c in resp.choices]
        choices = sorted(zip(resp.choices, texts), key=lambda ct: ct[0].index or 0)[: len(group)]
        usage = resp.usage
        done = self._completions(group[: len(choices)], choices, usage)
        rest = group[len(choices) :]
        if rest:  # the server ignored n: ask for the others one by one, each with its own seed
            if self._n_supported and n > 1:
                log.info("endpoint %s returned %d of %d choices: sending one request per sample from now on", self.base_url, len(choices), n)
                self._n_supported = False
            for r in rest:
                done += await self._call(client, [r], sampling)
        return done

    def _completions(self, group, choices, usage) -> list[Completion]:
        total = getattr(usage, "completion_tokens", None)
        if total is None:
            counts = [0] * len(choices)
        elif len(choices) == 1:
            counts = [int(total)]
        else:  # usage covers all choices together: share it out by length
            lens = [max(len(t), 1) for _, t in choices]
            counts = [round(total * n / sum(lens)) for n in lens]
        out = []
        for k, (r, (choice, text), n_tok) in enumerate(zip(group, choices, counts)):
            extra = {}
            if k == 0 and getattr(usage, "prompt_tokens", None) is not None:
                extra["prompt_tokens"] = int(usage.prompt_tokens)  # once per request
            out.append(Completion(r, text, n_tok, choice.finish_reason or "stop", extra))
        return out

    def close(self) -> None:
        if self.server is not None:
            self.server.stop()  # a later generate() starts it again


def _reasoning(message) -> str | None:
    extra = getattr(message, "model_extra", None) or {}
    return extra.get("reasoning_content") or extra.get("reasoning") or getattr(message, "reasoning_content", None)


_DONE = object()
