"""Build the generation backend a model config asks for: ``make_backend(mcfg, cache_root)``.

Every backend gets an ``identity`` (it enters the sample cache key: what changes the output,
never where it runs: the served model name, not the URL) and a ``check()`` that raises
ded.models.ModelNotAvailable, naming what is missing and the config that runs offline, before
any work starts. Nothing heavy happens here: models load, servers start and datasets are
indexed only when a sample is actually missing.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from ded.config import value
from ded.generation import Backend
from ded.models import ModelNotAvailable, load_model, local_checkpoint, resolve

OFFLINE = "teacher=smollm2_fewshot student=smollm2"
# ded.models suggests an outdated offline config; ours (OFFLINE) replaces it.
_OLD_HINT = re.compile(r",? or run the embedded CPU default \([^)]*\)\.?")


def model_identity(mcfg) -> dict:
    """What names a model's weights (the hf backend's identity; same as before the factory)."""
    return {"model": mcfg.path, "revision": mcfg.revision, "dtype": value(mcfg.dtype)}


def make_backend(mcfg, cache_root: str, *, role: str = "teacher", path: str | None = None, identity: dict | None = None) -> Backend:
    """The backend for model config ``mcfg`` (a ``teacher``/``student`` node).

    ``role`` only words the messages. ``path``/``identity`` override the model reference and its
    cache identity (the trained checkpoint: ``path=ckpt_dir, identity={"model": "ckpt:<key>", ...}``).
    """
    kind = value(mcfg.backend)
    ref = path or mcfg.path
    ident = dict(identity or model_identity(mcfg))
    label = f"{role} {mcfg.name!r} ({ref})"
    hint = f"The embedded CPU default runs offline: {OFFLINE}."
    revision = mcfg.revision

    def checkpoint() -> str:
        try:
            return local_checkpoint(ref, cache_root, revision)
        except ModelNotAvailable as e:  # name the model only; callers add who needs it
            raise ModelNotAvailable(_OLD_HINT.sub(".", str(e)).rstrip()) from None

    def checked_checkpoint() -> str:
        try:
            return checkpoint()
        except ModelNotAvailable as e:
            raise ModelNotAvailable(f"{label}: {e} {hint}") from None

    if kind == "hf":
        from ded.generation.hf import HFBackend

        dtype = value(mcfg.dtype)
        engine = value(mcfg.engine)
        if engine == "auto":  # paged continuous batching pays off on a GPU; on CPU it is slower
            import torch

            engine = "continuous" if torch.cuda.is_available() else "generate"
        return HFBackend(lambda: load_model(checked_checkpoint(), cache_root, dtype=dtype, revision=revision), ident, mcfg.batch_size,
                         check=checked_checkpoint, engine=engine)  # fmt: skip

    if kind == "vllm":
        from ded.generation.vllm_engine import VLLMBackend

        return VLLMBackend(model_path=checkpoint, identity=ident, vcfg=mcfg.vllm, dtype=value(mcfg.dtype), revision=revision,
                           label=label, hint=hint, model_check=checkpoint)  # fmt: skip

    if kind == "replay":
        from ded.generation.replay import ReplayBackend

        r = mcfg.replay
        mapping = {k: getattr(r, k) for k in ("question", "trajectory", "reasoning", "model_field", "model_value", "finish", "only_correct")}
        mapping["correct"] = list(r.correct)
        rid = {"dataset": r.dataset, "subset": r.subset, "split": r.split, "revision": r.revision, "mapping": mapping}
        return ReplayBackend(r, rid, cache_root, label=label, hint=hint)

    if kind == "openai":
        return _openai(mcfg, cache_root, ref, ident, label, hint, checked_checkpoint)

    raise ValueError(f"{role}.backend: unknown backend {kind!r}; allowed: ['hf', 'openai', 'vllm', 'replay']")


def _openai(mcfg, cache_root, ref, ident, label, hint, checkpoint) -> Backend:
    from ded.generation.endpoint import OpenAIBackend
    from ded.generation.server import Server

    e = mcfg.endpoint
    launch = value(e.launch)
    api = value(e.api)
    served = e.model or ref
    extra_body = dict(e.extra_body or {})
    identity = {"model": e.model or ident["model"], "revision": ident.get("revision"), "api": api}
    if extra_body:
        identity["extra_body"] = extra_body
    server = None
    model_check = None
    if launch != "none":
        identity["launch"] = launch  # a launched engine is known: llama.cpp's GGUF is not vLLM's bf16
        if launch == "llama_cpp":
            def location() -> str:
                r = resolve(ref)
                if r.kind != "gguf":
                    raise ModelNotAvailable(f"{label}: endpoint.launch=llama_cpp serves GGUF files; {ref!r} is a {r.kind} model. {hint}")
                return r.location
        else:
            identity["dtype"] = ident.get("dtype")
            location = checkpoint  # a local directory (a GGUF converted once) or a cached hub id
        model_check = location
        args = list(e.launch_args)
        if launch == "vllm":
            args = ["--dtype", str(value(mcfg.dtype)), *args]
        if launch == "transformers":
            served = None  # transformers serve names the model by the path it was given: set at start
            # transformers serve (5.x) samples only if the generation config says do_sample; the
            # request's temperature alone leaves it greedy (temperature 0 still turns it off).
            extra_body.setdefault("generation_config", json.dumps({"do_sample": True}))
        server = Server(launch, location, served, port=e.port, args=args, log_dir=Path(cache_root) / "servers",
                        startup_timeout=e.startup_timeout, tensor_parallel_size=mcfg.vllm.tensor_parallel_size,
                        data_parallel_size=mcfg.vllm.data_parallel_size)  # fmt: skip
        base_url = None
    else:
        base_url = e.base_url or (os.environ.get(e.base_url_env) if e.base_url_env else None)
        if not base_url:
            env = f" (or the environment variable {e.base_url_env})" if e.base_url_env else ""
            hint = (
                f"Set {label.split()[0]}.endpoint.base_url=http://HOST:PORT/v1{env}"
                + (f" and the API key in ${e.api_key_env}" if e.api_key_env else "")
                + f", or let the harness start a server ({label.split()[0]}.endpoint.launch=vllm|transformers|llama_cpp). {hint}"
            )
    api_key = os.environ.get(e.api_key_env) if e.api_key_env else None

    def tokenizer():
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(checkpoint())

    return OpenAIBackend(model=served, identity=identity, base_url=base_url, api_key=api_key, api=api, concurrency=e.concurrency,
                         timeout=e.timeout, max_retries=e.max_retries, backoff=e.backoff, max_backoff=e.max_backoff,
                         n_per_request=e.n_per_request, extra_body=extra_body, server=server, tokenizer_loader=tokenizer,
                         label=label, hint=hint, model_check=model_check)  # fmt: skip
