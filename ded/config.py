"""Config schemas: dataclasses registered in Hydra's ConfigStore.

``conf/config.yaml`` starts its defaults list with ``ded_schema`` (the ``Config`` below), so
every YAML file and command-line override is merged into typed nodes: a typo'd key or a value
of the wrong type fails when Hydra composes the config, naming the key. Range checks
(``corpus.size=-3``) and vocabularies (``diversity.metric``, checked against its plug-in
registry, so the allowed values are written once) live in ``__post_init__`` and run in
``validate()``, which the pipeline calls on the composed config before any work. Stages read
the dataclasses ``validate`` returns, never the ``DictConfig``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, OmegaConf

from ded.data import TASKS
from ded.data.pools import PoolSpec  # the corpus.pools[] schema
from ded.core.registry import ConfigError  # re-exported: raised by every check below


def project_path(path: str) -> str:
    """A path as given if it exists, else relative to the project root (recipes/ ships with it)."""
    import os
    from pathlib import Path

    if os.path.isabs(path) or os.path.exists(path):
        return path
    return str(Path(__file__).resolve().parents[1] / path)


def _check(cond: bool, key: str, msg: str) -> None:
    if not cond:
        raise ConfigError(f"{key}: {msg}")


def one_of(val: str, allowed, key: str) -> str:
    """A closed vocabulary that no plug-in extends (a registry's own check covers plug-ins)."""
    _check(val in allowed, key, f"unknown value {val!r}; allowed: {list(allowed)}")
    return val


@dataclass
class Sampling:
    temperature: float = 0.7
    top_p: float = 0.95
    max_new_tokens: int = 64

    def __post_init__(self):
        _check(self.temperature >= 0, "sampling.temperature", f"must be >= 0, got {self.temperature}")
        _check(0 < self.top_p <= 1, "sampling.top_p", f"must be in (0, 1], got {self.top_p}")
        _check(self.max_new_tokens > 0, "sampling.max_new_tokens", f"must be > 0, got {self.max_new_tokens}")


DTYPES = ("float32", "bfloat16", "float16")


@dataclass
class ModelConfig:
    """What every generation backend reads; each backend's schema adds its own keys
    (ded/generation/backends/, one module each, registered in BACKENDS)."""

    name: str = MISSING  # label in logs and tables
    path: str = MISSING  # the model: pkg:<package>/<file>, a local path or a hub id
    backend: str = MISSING  # set by the schema (a backend's config class); BACKENDS names them
    sampling: Sampling = field(default_factory=Sampling)

    def __post_init__(self):
        from ded.generation.backends import discover

        plugin = discover()[self.backend]  # unknown: ConfigError listing the registered names
        _check(isinstance(self, plugin.config), "backend", f"{self.backend!r} has its own keys ({plugin.config.__name__}): pick a "
               f"model config that uses it, or start one with `defaults: [/backend/{self.backend}@_here_, _self_]`")  # fmt: skip


@dataclass
class PromptedModelConfig(ModelConfig):
    """A backend that prompts a model's weights (not a replayed dataset)."""

    revision: Optional[str] = None  # hub revision (hub ids only)
    dtype: str = "float32"  # weights dtype: float32 | bfloat16 | float16
    system_prompt: Optional[str] = None  # optional system turn
    fewshot: int = 0  # worked examples from the task, prepended as chat turns
    fewshot_task: Optional[str] = None  # whose worked examples (the yamls set ${corpus.task}); null: arithmetic's
    fewshot_style: str = "terse"  # terse | stepwise | think (multistep has all three; other tasks terse)

    def __post_init__(self):
        super().__post_init__()
        one_of(self.dtype, DTYPES, "dtype")
        one_of(self.fewshot_style, ["terse", "stepwise", "think"], "fewshot_style")
        _check(self.fewshot >= 0, "fewshot", f"must be >= 0, got {self.fewshot}")


@dataclass
class PassRate:
    k: int = 4
    max_rate: float = 0.75
    min_rate: float = 0.0

    def __post_init__(self):
        _check(self.k > 0, "corpus.pass_rate.k", f"must be > 0, got {self.k}")
        _check(0 <= self.min_rate <= 1, "corpus.pass_rate.min_rate", f"must be in [0, 1], got {self.min_rate}")
        _check(0 < self.max_rate <= 1.0, "corpus.pass_rate.max_rate", f"must be in (0, 1], got {self.max_rate}")
        _check(self.min_rate < self.max_rate, "corpus.pass_rate", f"min_rate ({self.min_rate}) must be < max_rate ({self.max_rate})")


@dataclass
class Trajectories:
    n: int = 4
    p: int = 2

    def __post_init__(self):
        _check(self.n > 0, "corpus.trajectories.n", f"must be > 0, got {self.n}")
        _check(0 < self.p <= self.n, "corpus.trajectories.p", f"must be in [1, n={self.n}], got {self.p}")


@dataclass
class Decontam:
    enabled: bool = True
    n: int = 8
    min_overlap: float = 0.5
    fuzzy_threshold: Optional[float] = None
    dedup: str = "exact"

    def __post_init__(self):
        from ded.data.decontam import DEDUP_MODES

        one_of(self.dedup, DEDUP_MODES, "corpus.decontam.dedup")
        _check(self.n >= 3, "corpus.decontam.n", f"must be >= 3, got {self.n}")
        _check(0 <= self.min_overlap <= 1, "corpus.decontam.min_overlap", f"must be in [0, 1], got {self.min_overlap}")


@dataclass
class TrajectoryFilters:
    """Which TRAJECTORY_FILTERS (ded/curation/filters.py) run besides complete and correct, which always do."""

    min_tokens: int = 0
    max_tokens: Optional[int] = None
    repetition: bool = True
    language: bool = False
    think_format: bool = False
    dedup: bool = False  # drop exact copies of a kept trajectory of the same question (counted: dropped_duplicate)


@dataclass
class CorpusConfig:
    task: str = "arithmetic"
    pools: list[PoolSpec] = field(default_factory=list)
    levels: list[int] = field(default_factory=lambda: [1, 2, 3, 4, 5])
    pool_size: int = 48
    seed: int = 0
    size: Optional[int] = 64  # null: every selected trajectory (no cap)
    pass_rate: PassRate = field(default_factory=PassRate)
    trajectories: Trajectories = field(default_factory=Trajectories)
    filters: TrajectoryFilters = field(default_factory=TrajectoryFilters)
    decontam: Decontam = field(default_factory=Decontam)
    allocation: str = "fill"  # an ALLOCATIONS name (ded/curation/selection.py)

    def __post_init__(self):
        TASKS.check(self.task, "corpus.task")
        _check(self.task != "pool" or len(self.pools) > 0, "corpus.pools", "corpus.task=pool needs at least one pool")
        _check(self.size is None or self.size > 0, "corpus.size", f"must be > 0 (or null: no cap), got {self.size}")
        _check(self.pool_size > 0, "corpus.pool_size", f"must be > 0, got {self.pool_size}")
        _check(len(self.levels) > 0, "corpus.levels", "must name at least one level")
        bad = [lv for lv in self.levels if lv not in range(1, 6)]
        _check(not bad, "corpus.levels", f"unknown level(s) {bad}; allowed: [1, 2, 3, 4, 5]")
        from ded.curation.selection import ALLOCATIONS

        ALLOCATIONS.check(self.allocation)


@dataclass
class DiversityConfig:
    """How P of a question's correct trajectories are chosen (ded/curation/selection.py). Names come from the
    registries: DISTANCES and LEVELS (ded/curation/diversity.py), SELECTORS (ded/curation/selectors.py)."""

    metric: str = "levenshtein"  # the distance between trajectories
    normalized: bool = True  # levenshtein: divided by the longer length, in [0, 1]
    level: str = "char"  # levenshtein: over characters or word tokens
    selector: str = "maxmin"  # maxmin | maxsum | exact use the distance; random | first do not
    workers: int = 1  # processes selecting questions in parallel (Levenshtein on long texts); 0 = every core

    def __post_init__(self):
        from ded.curation.diversity import DISTANCES, LEVELS
        from ded.curation.selectors import SELECTORS

        DISTANCES.check(self.metric)
        LEVELS.check(self.level)
        SELECTORS.check(self.selector)
        _check(self.workers >= 0, "diversity.workers", f"must be >= 0 (0 = every core), got {self.workers}")


def parse_shard(value: Optional[str], key: str = "generation.shard") -> Optional[tuple[int, int]]:
    """``"i/n"`` -> (i, n) with 0 <= i < n; None stays None (the job generates every question)."""
    if value is None:
        return None
    m = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", str(value), re.ASCII)
    _check(m is not None, key, f"expected 'i/n' (shard i of n, counted from 0, e.g. 0/4), got {value!r}")
    i, n = int(m.group(1)), int(m.group(2))
    _check(0 <= i < n, key, f"shard index must be in [0, n), got {i}/{n}")
    return i, n


@dataclass
class GenerationConfig:
    seed: int = 0
    shard: Optional[str] = None  # "i/n": generate only shard i of n of each generation key's questions (ded/generation)

    def __post_init__(self):
        parse_shard(self.shard)

    @property
    def shard_pair(self) -> Optional[tuple[int, int]]:
        return parse_shard(self.shard)


@dataclass
class TrainConfig:
    """Fields named as in TRL's ``SFTConfig`` are handed to it under that name (ded.training.sft.sft_args);
    the rest (HARNESS_TRAIN_FIELDS) are the harness's own: launch, LoRA, attention kernel."""

    num_train_epochs: float = 3.0
    learning_rate: float = 5e-5
    lr_scheduler_type: str = "cosine"
    warmup_steps: float = 0.1  # TRL: a float in [0, 1) is a share of the total steps
    weight_decay: float = 0.0
    per_device_train_batch_size: int = 8
    gradient_accumulation_steps: int = 1
    max_length: int = 512
    packing: bool = False
    padding_free: bool = False
    activation_checkpointing: bool = False
    optim: str = "adamw_torch"
    use_liger_kernel: bool = False
    bf16: bool = False
    seed: int = 0
    logging_steps: int = 5
    attn_implementation: Optional[str] = None
    num_processes: int = 1
    num_machines: int = 1
    launcher: str = "accelerate"
    accelerate_config: Optional[str] = None
    lora_r: int = 0
    lora_alpha: int = 16
    lora_dropout: float = 0.0
    version: int = 1

    def __post_init__(self):
        _check(self.num_train_epochs > 0, "train.num_train_epochs", f"must be > 0, got {self.num_train_epochs}")
        _check(self.learning_rate > 0, "train.learning_rate", f"must be > 0, got {self.learning_rate}")
        _check(self.per_device_train_batch_size > 0, "train.per_device_train_batch_size", f"must be > 0, got {self.per_device_train_batch_size}")
        _check(self.gradient_accumulation_steps > 0, "train.gradient_accumulation_steps", f"must be > 0, got {self.gradient_accumulation_steps}")
        _check(self.num_processes >= 1, "train.num_processes", f"must be >= 1, got {self.num_processes}")
        _check(self.num_machines >= 1 and self.num_processes % self.num_machines == 0, "train.num_machines",
               f"must be >= 1 and divide train.num_processes={self.num_processes} (processes over all machines), got {self.num_machines}")  # fmt: skip
        _check(self.max_length > 0, "train.max_length", f"must be > 0 (tokens per example), got {self.max_length}")
        _check(self.logging_steps > 0, "train.logging_steps", f"must be > 0 (optimizer steps between logs), got {self.logging_steps}")
        _check(self.weight_decay >= 0, "train.weight_decay", f"must be >= 0, got {self.weight_decay}")
        _check(0 <= self.lora_dropout < 1, "train.lora_dropout", f"must be in [0, 1), got {self.lora_dropout}")
        one_of(self.launcher, LAUNCHERS, "train.launcher")
        if self.accelerate_config is not None:
            import os

            _check(os.path.isfile(project_path(self.accelerate_config)), "train.accelerate_config", f"no such file {self.accelerate_config!r}")
        _check(self.lora_r >= 0, "train.lora_r", f"must be >= 0 (0 = full fine-tuning), got {self.lora_r}")
        _check(self.warmup_steps >= 0, "train.warmup_steps", f"must be >= 0 (a float in [0, 1) is a share of steps), got {self.warmup_steps}")
        one_of(self.lr_scheduler_type, ["linear", "cosine", "constant", "constant_with_warmup"], "train.lr_scheduler_type")
        # train.optim (transformers' vocabulary) and whether liger-kernel / flash-attn are installed
        # are checked by ded.training.sft.check_environment before any work: importing transformers here
        # would make every config check wait for torch.


HARNESS_TRAIN_FIELDS = ("attn_implementation", "num_processes", "num_machines", "launcher", "accelerate_config", "lora_r", "lora_alpha", "lora_dropout", "version")
LAUNCHERS = ("accelerate", "torchrun")


@dataclass
class EvalConfig:
    size: int = 50
    k: int = 4
    sampling: Sampling = field(default_factory=Sampling)
    benchmarks: list[str] = field(default_factory=list)
    per_benchmark: dict[str, Sampling] = field(default_factory=dict)
    limit: Optional[int] = None
    data_dir: Optional[str] = None
    since: Optional[str] = None  # dated benchmarks (livecodebench): only problems released on or after this ISO date
    until: Optional[str] = None  # ... and on or before this one

    def sampling_for(self, split: str) -> tuple[Sampling, str]:
        """The sampling a split is evaluated with, and the config key it comes from."""
        if split in self.per_benchmark:
            return self.per_benchmark[split], f"eval.per_benchmark.{split}"
        return self.sampling, "eval.sampling"

    def __post_init__(self):
        from ded.data.evalsets import EVAL_SETS, HELDOUT

        _check(self.size > 0, "eval.size", f"must be > 0, got {self.size}")
        _check(self.k > 0, "eval.k", f"must be > 0, got {self.k}")
        bad = [b for b in self.benchmarks if b not in EVAL_SETS]
        _check(not bad, "eval.benchmarks", f"unknown benchmark(s) {bad}; allowed: {sorted(EVAL_SETS)}")
        bad = [b for b in self.per_benchmark if b not in EVAL_SETS and b != HELDOUT]
        _check(not bad, "eval.per_benchmark", f"unknown benchmark(s) {bad}; allowed: {sorted(EVAL_SETS) + [HELDOUT]}")
        _check(self.limit is None or self.limit > 0, "eval.limit", f"must be > 0 or null, got {self.limit}")
        from ded.data.pools import is_iso_date

        for key in ("since", "until"):
            _check(is_iso_date(getattr(self, key)), f"eval.{key}", f"an ISO date YYYY-MM-DD or null, got {getattr(self, key)!r}")


@dataclass
class SandboxConfig:
    """How generated code is run to grade it (ded/sandbox.py, ded/data/code.py): one sandbox per
    response, every test inside it; limits per sandbox."""

    wall_s: float = 20.0  # wall clock of one response's whole run (all its tests)
    per_test_s: float = 4.0  # one test (a call, a stdin run)
    cpu_s: int = 20  # CPU seconds (RLIMIT_CPU)
    memory_mb: int = 1024  # address space (RLIMIT_AS)
    nproc: int = 16  # processes of the sandbox's user (RLIMIT_NPROC): a fork bomb stops there
    output_bytes: int = 1048576  # stdout + stderr kept; more ends the run
    disk_mb: int = 64  # the private working directory (a tmpfs)
    workers: int = 0  # sandboxes at once; 0 = every core

    def __post_init__(self):
        for key in ("wall_s", "per_test_s", "cpu_s", "memory_mb", "nproc", "output_bytes", "disk_mb"):
            _check(getattr(self, key) > 0, f"sandbox.{key}", f"must be > 0, got {getattr(self, key)}")
        _check(self.workers >= 0, "sandbox.workers", f"must be >= 0 (0 = every core), got {self.workers}")


@dataclass
class AnalysisConfig:
    enabled: bool = True
    probe_size: int = 64
    components: int = 2

    def __post_init__(self):
        _check(self.probe_size >= 2, "analysis.probe_size", f"must be >= 2, got {self.probe_size}")
        _check(self.components >= 1, "analysis.components", f"must be >= 1, got {self.components}")


@dataclass
class LoggerConfig:
    backend: str = "wandb"
    mode: str = "offline"
    project: str = "ded"
    entity: Optional[str] = None
    tags: list[str] = field(default_factory=list)
    group: Optional[str] = None  # W&B group; null: the multirun's sweep folder (a single run has none)

    def __post_init__(self):
        one_of(self.backend, ("wandb", "none"), "logger.backend")
        one_of(self.mode, ("offline", "online", "disabled"), "logger.mode")


@dataclass
class PathsConfig:
    cache_dir: str = MISSING
    output_dir: str = MISSING


@dataclass
class Config:
    teacher: Any = MISSING  # a ModelConfig subclass: the schema its yaml picks (/backend/<name>@_here_)
    student: Any = MISSING
    corpus: CorpusConfig = field(default_factory=CorpusConfig)
    diversity: DiversityConfig = field(default_factory=DiversityConfig)
    generation: GenerationConfig = field(default_factory=GenerationConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    analysis: AnalysisConfig = field(default_factory=AnalysisConfig)
    sandbox: SandboxConfig = field(default_factory=SandboxConfig)
    logger: LoggerConfig = field(default_factory=LoggerConfig)
    paths: PathsConfig = field(default_factory=PathsConfig)
    name: str = "ded"  # run name shown in W&B and the run record
    debug: Any = None  # set by the debug/ group: a tag saying which debug preset is on
    experiment: Any = None
    stop_after: str = "evaluation"  # the last stage to run (ded.stages.STAGES); the cache keeps the rest for later

    def __post_init__(self):
        from ded.stages import STAGES

        one_of(self.stop_after, STAGES, "stop_after")
        # a shard holds only part of the samples: curating or training on it would silently use a partial corpus
        _check(self.generation.shard is None or STAGES.index(self.stop_after) <= STAGES.index("trajectories"), "generation.shard",
               f"a sharded job ({self.generation.shard}) generates only part of the samples, so it must stop before curation: "
               f"set stop_after=trajectories (or earlier), got stop_after={self.stop_after}; once every shard is done, "
               "one unsharded run (generation.shard=null) finds all their samples and goes on")  # fmt: skip
        # the student's weights are trained and loaded: a backend that only replays a dataset cannot be one
        _check(isinstance(self.student, PromptedModelConfig), "student.backend", f"{self.student.backend!r} has no model weights to train; "
               "use a student config on a model backend (hf, vllm, openai)")  # fmt: skip


def register() -> None:
    import secrets

    from ded.generation.backends import discover

    if not OmegaConf.has_resolver("run_id"):
        # A per-launch suffix for run folders (conf/hydra/default.yaml): two runs started in the same
        # second never share a record. Cached like Hydra's `now`, so every job of a sweep sees one value.
        OmegaConf.register_new_resolver("run_id", lambda: secrets.token_hex(3), use_cache=True)
    cs = ConfigStore.instance()
    cs.store(name="ded_schema", node=Config)
    for name, plugin in discover().items():  # the schemas model yamls pick: /backend/<name>@_here_
        cs.store(group="backend", name=name, node=plugin.config)


def validate(cfg: DictConfig) -> Config:
    """Instantiate the dataclasses (running every range check); raise ConfigError naming the key."""
    try:
        return OmegaConf.to_object(cfg)
    except ConfigError:
        raise
    except Exception as e:  # OmegaConf wraps errors raised inside __post_init__
        cause = e.__cause__ or e.__context__
        if isinstance(cause, ConfigError):
            raise cause from None
        raise
