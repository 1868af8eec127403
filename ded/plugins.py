"""The one loader of plug-ins: imports every module that registers one, stores the Hydra schemas,
and checks the names a config gives against the registries.

Every plug-in point is a ``ded.core.registry.Registry`` next to its interface, filled by the
modules that define plug-ins (a new one is one registered definition plus, where needed, one
yaml). ``ded.config`` knows none of them: its dataclasses check ranges, and ``validate`` below
checks names once every plug-in is loaded, so an unknown name fails before any work, naming
the key and the allowed values.

    register()              # before Hydra composes: the schemas (ded_schema, backend/<name>)
    conf = validate(cfg)    # the composed DictConfig -> ded.config.Config, every check run
"""

from __future__ import annotations

import secrets

from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig, OmegaConf

from ded import grading  # noqa: F401 - the answer kinds (math, gsm8k, choice, code)
from ded.config import HELDOUT, Config, ConfigError, ModelConfig, check, to_dataclasses
from ded.curation.diversity import DISTANCES, LEVELS
from ded.curation.filters import TRAJECTORY_FILTERS  # noqa: F401 - the trajectory filters register on import
from ded.curation.selection import ALLOCATIONS
from ded.curation.selectors import SELECTORS
from ded.data import arithmetic, code, multistep  # noqa: F401 - tasks, worked examples, solvers, code pool formats
from ded.data.evalsets import EVAL_SETS
from ded.data.pools import check_spec
from ded.data.solvers import SOLVERS
from ded.data.tasks import TASKS, WORKED_EXAMPLES
from ded.generation.backends import BACKENDS, discover, plugin_for


def load() -> None:
    """Import every plug-in module (the imports above; backends: every module of their package)."""
    discover()


def register() -> None:
    """Store the schemas Hydra composes against: ``ded_schema`` (conf/config.yaml's first default)
    and each backend's model schema as ``backend/<name>`` (a model yaml picks one with
    ``defaults: [/backend/<name>@_here_, _self_]``)."""
    load()
    if not OmegaConf.has_resolver("run_id"):
        # A per-launch suffix for run folders (conf/hydra/default.yaml): two runs started in the same
        # second never share a record. Cached like Hydra's `now`, so every job of a sweep sees one value.
        OmegaConf.register_new_resolver("run_id", lambda: secrets.token_hex(3), use_cache=True)
    cs = ConfigStore.instance()
    cs.store(name="ded_schema", node=Config)
    for name, plugin in BACKENDS.items():
        cs.store(group="backend", name=name, node=plugin.config)


def validate(cfg):
    """The dataclasses of a composed config (or of one model node: ``validate(cfg.teacher)``),
    with every range check run and every plug-in name checked; ConfigError names the key."""
    load()
    conf = to_dataclasses(cfg) if isinstance(cfg, DictConfig) else cfg
    if isinstance(conf, Config):
        check_names(conf)
    elif isinstance(conf, ModelConfig):
        role = cfg._key() if isinstance(cfg, DictConfig) and cfg._key() else "model"
        check_model(conf, str(role))
    return conf


def check_names(conf: Config) -> None:
    """Every plug-in name of a whole config, against its registry."""
    corpus = conf.corpus
    TASKS.check(corpus.task, "corpus.task")
    ALLOCATIONS.check(corpus.allocation, "corpus.allocation")
    for i, pool in enumerate(corpus.pools):
        check_spec(pool, f"corpus.pools[{i}]")
    DISTANCES.check(conf.diversity.metric, "diversity.metric")
    LEVELS.check(conf.diversity.level, "diversity.level")
    SELECTORS.check(conf.diversity.selector, "diversity.selector")
    check_model(conf.teacher, "teacher")
    check_model(conf.student, "student")
    bad = [s for s in conf.eval.sets if s not in EVAL_SETS]
    check(not bad, "eval.sets", f"unknown set(s) {bad}; allowed: {sorted(EVAL_SETS)}")
    bad = [s for s in conf.eval.per_set if s not in EVAL_SETS and s != HELDOUT]
    check(not bad, "eval.per_set", f"unknown set(s) {bad}; allowed: {sorted(EVAL_SETS) + [HELDOUT]}")


def check_model(mcfg: ModelConfig, role: str) -> None:
    """A model config's backend is registered and its schema is that backend's; its worked
    examples and solver task exist."""
    plugin_for(mcfg, role)
    task = getattr(mcfg, "fewshot_task", None)  # a task without worked examples of its own (pool) gets the default ones
    check(task is None or task in WORKED_EXAMPLES or task in TASKS, f"{role}.fewshot_task",
          f"unknown value {task!r}; allowed: {sorted(set(WORKED_EXAMPLES.names()) | set(TASKS.names()))}")
    if mcfg.backend == "solver":
        SOLVERS.check(mcfg.task, f"{role}.task")


__all__ = ["ConfigError", "check_model", "check_names", "load", "register", "validate"]
