"""Build the generation backend a model config names: ``make_backend(mcfg, cache_root)``.

The backends themselves live in ``ded.generation.backends`` (one module each, registered by
name); this module looks one up. What their builders share (how a model is named in messages
and in the cache, what runs offline) is in ``ded.generation.identity``.

Every backend gets an ``identity`` (it enters the sample cache key: what changes the output,
never where it runs: the served model name, not the URL) and a ``check()`` that raises
ded.core.models.ModelNotAvailable, naming what is missing and the config that runs offline, before
any work starts. Nothing heavy happens here: models load, servers start and datasets are
indexed only when a sample is actually missing.
"""

from __future__ import annotations

from omegaconf import DictConfig

from ded.config import to_dataclasses
from ded.generation import Backend
from ded.generation.backends import plugin_for


def make_backend(mcfg, cache_root: str, *, role: str = "teacher", path: str | None = None, identity: dict | None = None) -> Backend:
    """The backend for model config ``mcfg`` (``cfg.teacher`` / ``cfg.student``: the dataclass,
    or the composed node, which is checked and turned into it here).

    ``role`` only words the messages. ``path``/``identity`` override the model reference and its
    cache identity (the trained checkpoint: ``path=ckpt_dir, identity={"model": "ckpt:<key>", ...}``).
    """
    if isinstance(mcfg, DictConfig):
        mcfg = to_dataclasses(mcfg)
    return plugin_for(mcfg, role).build(mcfg, cache_root, role, path or mcfg.path, identity)
