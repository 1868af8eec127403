"""In-process transformers backend, with two engines (``<role>.engine``):

- ``generate``: batched ``model.generate``, the CPU default. Requests are sorted by prompt
  length before batching (less left padding), and each batch is seeded from its first request
  so a fresh run reproduces the same samples.
- ``continuous``: transformers' continuous batching (paged KV cache, ``init_continuous_batching``),
  the GPU default. A finished sequence frees its slot at once and a waiting request takes it,
  so long chains of thought do not hold a whole batch hostage and no step is spent on padding.
  All requests of a chunk are queued before the loop starts and the generator is seeded from
  the chunk's first request, so the schedule, and with it every sample, is the same on a rerun
  on the same hardware. Finished samples are handed to the cache ``batch_size`` at a time,
  in order of completion, so a crash loses at most one such batch.

``auto`` (the config default) is resolved when the backend is built: continuous on a GPU, generate on CPU,
where the paged path is slower (benchmarks/generation_engines.py prints both). On a GPU with
flash-attn installed, transformers switches the paged path to flash attention; its samples can
then differ in the last bits from an sdpa machine's (same key: the cache does not tell them
apart). The engine enters the cache key when it is ``continuous``: its samples differ from
``generate``'s for the same seed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

from ded.config import PromptedModelConfig, check, one_of
from ded.core.models import check_available, load_model, local_checkpoint
from ded.core.reasoning import normalize_think
from ded.generation import Backend, Completion, Request
from ded.generation.backends import register_backend
from ded.generation.identity import label, labelled, model_identity

ENGINES = ("generate", "continuous")


@dataclass
class HFModelConfig(PromptedModelConfig):
    backend: str = "hf"
    batch_size: int = 32  # prompts per generate() call (continuous: samples per cache write)
    engine: str = "auto"  # generate | continuous | auto (continuous on a GPU, generate on CPU)

    def __post_init__(self):
        super().__post_init__()
        check(self.batch_size > 0, "batch_size", f"must be > 0, got {self.batch_size}")
        one_of(self.engine, ("auto", *ENGINES), "engine")


@register_backend("hf", HFModelConfig)
def build(mcfg: HFModelConfig, cache_root: str, role: str, path: str, identity: dict | None) -> "HFBackend":
    checkpoint = labelled(lambda: local_checkpoint(path, cache_root, mcfg.revision), label(role, mcfg, path))
    available = labelled(lambda: check_available(path, mcfg.revision), label(role, mcfg, path))  # converts nothing
    engine = mcfg.engine
    if engine == "auto":  # paged continuous batching pays off on a GPU; on CPU it is slower
        import torch

        engine = "continuous" if torch.cuda.is_available() else "generate"
    return HFBackend(lambda: load_model(checkpoint(), cache_root, dtype=mcfg.dtype, revision=mcfg.revision),
                     identity or model_identity(mcfg), mcfg.batch_size, check=available, engine=engine)  # fmt: skip


class HFBackend(Backend):
    def __init__(self, loader, identity: dict, batch_size: int, check=None, engine: str = "generate"):
        """``loader()`` returns (model, tokenizer); it is called only if something is missing.
        ``check()`` (optional) raises ModelNotAvailable when the model cannot be loaded here."""
        if engine not in ENGINES:
            raise ValueError(f"hf engine: {engine!r} is not one of {list(ENGINES)}")
        self._loader = loader
        self._check = check
        self._model = None
        self._tok = None
        self.engine = engine
        self.identity = {"backend": "hf", **identity, **({"engine": engine} if engine != "generate" else {})}
        self.batch_size = batch_size
        # generate: requests are sorted by prompt length within a chunk, so a large chunk pads less.
        # continuous: the scheduler sees a whole chunk at once; larger keeps the GPU fuller.
        self.chunk_size = max(batch_size * 32, 1024)

    def check(self) -> None:
        if self._check is not None:
            self._check()

    def _load(self):
        if self._model is None:
            self._model, self._tok = self._loader()
            self._tok.padding_side = "left"
        return self._model, self._tok

    def _prompts(self, tok, requests: list[Request]) -> list[str]:
        return [tok.apply_chat_template(r.messages, tokenize=False, add_generation_prompt=True) for r in requests]

    @staticmethod
    def _generation_kwargs(tok, s: dict) -> dict:
        """generate()'s settings (the same for GenerationConfig): sampling when temperature > 0,
        plain top-p (no top-k), else greedy."""
        kw = dict(max_new_tokens=s["max_new_tokens"], do_sample=s.get("temperature", 0.0) > 0, pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id)
        if kw["do_sample"]:
            kw.update(temperature=s["temperature"], top_p=s.get("top_p", 1.0), top_k=0)
        return kw

    def generate(self, requests: list[Request], sampling: dict) -> Iterator[list[Completion]]:
        import torch

        run = self._continuous if self.engine == "continuous" else self._generate
        yield from torch.inference_mode()(run)(requests, sampling)

    def _generate(self, requests: list[Request], sampling: dict) -> Iterator[list[Completion]]:
        import torch

        model, tok = self._load()
        prompts = self._prompts(tok, requests)
        lengths = [len(tok(p, add_special_tokens=False).input_ids) for p in prompts]
        order = sorted(range(len(requests)), key=lambda i: lengths[i])
        kwargs = self._generation_kwargs(tok, sampling)
        eos = tok.eos_token_id
        for start in range(0, len(order), self.batch_size):
            idx = order[start : start + self.batch_size]
            torch.manual_seed(requests[idx[0]].seed)
            enc = tok([prompts[i] for i in idx], return_tensors="pt", padding=True, add_special_tokens=False).to(model.device)
            out = model.generate(**enc, **kwargs)
            new = out[:, enc.input_ids.shape[1] :]
            batch = []
            for row, i in zip(new, idx):
                hits = (row == eos).nonzero()
                n_tok = int(hits[0]) + 1 if len(hits) else len(row)
                text = normalize_think(tok.decode(row[:n_tok], skip_special_tokens=True))
                batch.append(Completion(requests[i], text, n_tok, "stop" if len(hits) else "length"))
            yield batch

    def _continuous(self, requests: list[Request], sampling: dict) -> Iterator[list[Completion]]:
        import torch
        from transformers import ContinuousBatchingConfig, GenerationConfig
        from transformers.generation.continuous_batching.utils import WorkloadHints

        model, tok = self._load()
        ids = [tok(p, add_special_tokens=False).input_ids for p in self._prompts(tok, requests)]
        s = sampling
        eos = tok.eos_token_id
        gen = GenerationConfig(**self._generation_kwargs(tok, s))
        # An unsupported sampling option must fail here, not be silently dropped from the samples.
        cb = ContinuousBatchingConfig(drop_unsupported_processors=False)
        if model.device.type == "cpu":  # transformers 5.19 sizes the paged cache from free RAM (20 GB here): size it to the work
            cb.num_blocks = len(ids) * -(-(max(map(len, ids)) + s["max_new_tokens"]) // (cb.block_size or cb.page_size)) + 1
        hints = WorkloadHints(max_prompt_length=max(map(len, ids)), max_generated_length=s["max_new_tokens"], num_requests=len(ids))
        manager = model.init_continuous_batching(generation_config=gen, continuous_batching_config=cb, workload_hints=hints)
        done = 0
        try:
            # Queue everything before the loop starts: the schedule then depends on the inputs
            # only, and so do the samples drawn from the generator seeded here.
            for k, x in enumerate(ids):
                manager.add_request(x, request_id=f"r{k}", max_new_tokens=s["max_new_tokens"])
            torch.manual_seed(requests[0].seed)
            if model.device.type == "cuda":
                manager.warmup()  # captures CUDA graphs; a no-op cost on CPU is skipped
            manager.start()
            batch = []
            while done < len(requests):
                out = manager.get_result(timeout=1)
                if out is None:
                    if not manager.is_running():
                        err = manager.background_thread_status.fatal_error
                        raise RuntimeError(f"hf continuous batching stopped after {done} of {len(requests)} requests: {err!r}")
                    continue
                if not out.is_finished():
                    continue
                if out.error:
                    raise RuntimeError(f"hf continuous batching: request {out.request_id} failed: {out.error}")
                toks = list(out.generated_tokens)
                stop = bool(toks) and toks[-1] == eos
                text = normalize_think(tok.decode(toks, skip_special_tokens=True))
                batch.append(Completion(requests[int(out.request_id[1:])], text, len(toks), "stop" if stop else "length"))
                done += 1
                if len(batch) >= self.batch_size:
                    yield batch
                    batch = []
            if batch:
                yield batch
        finally:
            # Left early (an error, Ctrl-C, the consumer closed us): fail the queued requests
            # instead of generating the rest of the chunk, and wait for the thread to end before
            # the manager is torn down. Samples already handed over are in the cache.
            unfinished = done < len(requests)
            manager.stop(block=True, timeout=None if unfinished else 60, hard_stop=unfinished)
            manager.destroy()

    def close(self) -> None:
        self._model = None
        self._tok = None
