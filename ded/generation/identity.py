"""What every backend builder shares: how a model is named in messages and in the sample cache,
and what runs offline when a model is not available here."""

from __future__ import annotations

from typing import Callable

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
