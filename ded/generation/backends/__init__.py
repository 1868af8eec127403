"""Generation backends: one module each in this package, found without a hand-kept list.

A backend module registers its config schema (a ``ded.config.ModelConfig`` subclass) and a
builder that turns such a config into a ``ded.generation.Backend``::

    @dataclass
    class ToyConfig(ModelConfig):
        backend: str = "toy"
        temperature_scale: float = 1.0      # the keys only this backend reads

    @register_backend("toy", ToyConfig)
    def build(mcfg, cache_root, role, path, identity) -> Backend:
        ...

``path`` is the model reference to load (the config's own, or a trained checkpoint), and
``identity`` the cache identity that replaces the config's (None: the backend's own).

``ded.plugins.register()`` calls ``discover()`` and stores every schema in Hydra's ConfigStore
as ``backend/<name>``; a model yaml picks its schema with ``defaults: [/backend/<name>@_here_,
_self_]``, so it can hold only that backend's keys. That happens before Hydra composes, on
every run: these modules import nothing heavy at the top (torch, vllm, openai and datasets are
imported where they are used).
"""

from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass
from typing import Callable

from ded.config import check
from ded.core.registry import Registry


@dataclass(frozen=True)
class BackendPlugin:
    config: type  # the schema: a ded.config.ModelConfig subclass
    build: Callable  # (mcfg, cache_root, role, path, identity) -> ded.generation.Backend


BACKENDS: Registry[BackendPlugin] = Registry("backend")


def register_backend(name: str, config: type) -> Callable:
    """Decorator for a backend's builder: registers it with its config schema under ``name``."""

    def add(build: Callable) -> Callable:
        BACKENDS.register(name, BackendPlugin(config, build))
        return build

    return add


def discover() -> Registry[BackendPlugin]:
    """Import every backend module of this package (once) and return the registry."""
    for mod in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{mod.name}")
    return BACKENDS


def plugin_for(mcfg, role: str = "model") -> BackendPlugin:
    """The plug-in of the backend a model config names: registered, and the config is its schema
    (ConfigError naming ``<role>.backend`` otherwise)."""
    plugin = discover()[BACKENDS.check(mcfg.backend, f"{role}.backend")]
    check(isinstance(mcfg, plugin.config), f"{role}.backend", f"{mcfg.backend!r} has its own keys ({plugin.config.__name__}): pick a "
          f"model config that uses it, or start one with `defaults: [/backend/{mcfg.backend}@_here_, _self_]`")  # fmt: skip
    return plugin
