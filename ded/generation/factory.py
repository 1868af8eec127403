"""Build the generation backend a model config names: ``make_backend(mcfg, cache_root)``.

The backends themselves live in ``ded.generation.backends`` (one module each, registered by
name); this module looks one up and holds what their builders share: how a model is named in
messages and what to run instead when it is not available here.

Every backend gets an ``identity`` (it enters the sample cache key: what changes the output,
never where it runs: the served model name, not the URL) and a ``check()`` that raises
ded.core.models.ModelNotAvailable, naming what is missing and the config that runs offline, before
any work starts. Nothing heavy happens here: models load, servers start and datasets are
indexed only when a sample is actually missing.
"""

from __future__ import annotations

from typing import Callable

from omegaconf import DictConfig

from ded.generation import Backend
from ded.generation.backends import BACKENDS, discover
from ded.core.models import ModelNotAvailable

OFFLINE = "teacher=smollm2_fewshot student=smollm2"
HINT = f"The embedded CPU default runs offline: {OFFLINE}."


def model_identity(mcfg) -> dict:
    """What names a model's weights: the cache identity of a backend that runs them."""
    return {"model": mcfg.path, "revision": mcfg.revision, "dtype": mcfg.dtype}


def label(role: str, mcfg, path: str) -> str:
    """Who needs the model, in messages: ``teacher 'qwq-32b' (Qwen/QwQ-32B)``."""
    return f"{role} {mcfg.name!r} ({path})"


def labelled(fn: Callable[[], str], who: str) -> Callable[[], str]:
    """``fn`` with its ModelNotAvailable saying who needs the model and what runs offline."""

    def call() -> str:
        try:
            return fn()
        except ModelNotAvailable as e:
            raise ModelNotAvailable(f"{who}: {e} {HINT}") from None

    return call


def make_backend(mcfg, cache_root: str, *, role: str = "teacher", path: str | None = None, identity: dict | None = None) -> Backend:
    """The backend for model config ``mcfg`` (``cfg.teacher`` / ``cfg.student``: the dataclass,
    or the composed node, which is checked and turned into it here).

    ``role`` only words the messages. ``path``/``identity`` override the model reference and its
    cache identity (the trained checkpoint: ``path=ckpt_dir, identity={"model": "ckpt:<key>", ...}``).
    """
    if isinstance(mcfg, DictConfig):
        from ded.config import validate

        mcfg = validate(mcfg)
    plugin = discover()[BACKENDS.check(mcfg.backend, f"{role}.backend")]
    return plugin.build(mcfg, cache_root, role, path or mcfg.path, identity)
