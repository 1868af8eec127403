"""Config schemas: the dataclasses Hydra types every key with (the bottom layer above ded.core).

``conf/config.yaml`` starts its defaults list with ``ded_schema`` (the ``Config`` below, stored
by ``ded.plugins.register``), so every YAML file and command-line override is merged into typed
nodes: a typo'd key or a value of the wrong type fails when Hydra composes the config, naming
the key. Range checks (``corpus.size=-3``) and closed vocabularies (``logger.mode``) live in
``__post_init__`` and run in ``to_dataclasses()``. Names that plug-ins extend (``diversity.metric``,
``corpus.task``, a model's ``backend``...) are checked by ``ded.plugins.validate`` after every
plug-in is loaded, against its registry, so the allowed values are written once. This module
imports only ded.core: it knows no plug-in. Stages read the dataclasses, never the ``DictConfig``.
"""

from __future__ import annotations

import dataclasses
import difflib
import logging
import os
import re
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from hydra.errors import ConfigCompositionException, MissingConfigException, OverrideParseException
from omegaconf import MISSING, DictConfig, ListConfig, OmegaConf
from omegaconf.errors import ConfigAttributeError, ConfigKeyError, OmegaConfBaseException, ValidationError

from ded.core.cache import short_hash
from ded.core.registry import ConfigError  # re-exported: raised by every check below

log = logging.getLogger("ded")

# The pipeline's stages, in order (ded/stages/, one module each): the values of stop_after.
STAGES = ("questions", "passrate", "trajectories", "curation", "training", "rl", "analysis", "evaluation")
DEDUP_MODES = ("none", "exact", "fuzzy")  # corpus.decontam.dedup (ded/data/decontam.py)
HELDOUT = "heldout"  # the task's own held-out split, evaluated beside the eval sets (eval.per_set may name it)
POOL_FIELD_NAMES = ("question", "answer", "id", "domain", "level", "solution", "choices", "model", "date")  # corpus.pools[].fields


def project_path(path: str) -> str:
    """A path as given if it exists, else relative to the project root (recipes/ ships with it)."""
    if os.path.isabs(path) or os.path.exists(path):
        return path
    return str(Path(__file__).resolve().parents[1] / path)


def check(cond: bool, key: str, msg: str) -> None:
    """ConfigError ``key: msg`` unless `cond`. `key` is the full dotted key; a dataclass that can sit
    at more than one place (Sampling, a model config and its parts, a pool) names the key relative
    to itself, and ``to_dataclasses`` puts it under the path where that node sits
    (``temperature`` -> ``teacher.sampling.temperature``)."""
    if not cond:
        raise ConfigError(f"{key}: {msg}", key)


def is_iso_date(value) -> bool:
    """A YYYY-MM-DD date (or None): the form date windows take (corpus.pools[].since/until, eval.since/until)."""
    return value is None or re.fullmatch(r"\d{4}-\d{2}-\d{2}", str(value)) is not None


def one_of(val: str, allowed, key: str) -> str:
    """A closed vocabulary that no plug-in extends (a registry's own check covers plug-ins)."""
    check(val in allowed, key, f"unknown value {val!r}; allowed: {list(allowed)}")
    return val


@dataclass
class Sampling:
    temperature: float = 0.7
    top_p: float = 0.95
    max_new_tokens: int = 64

    def __post_init__(self):
        # keys relative to this node: teacher.sampling, student.sampling, eval.sampling, eval.per_set.<split>
        check(self.temperature >= 0, "temperature", f"must be >= 0, got {self.temperature}")
        check(0 < self.top_p <= 1, "top_p", f"must be in (0, 1], got {self.top_p}")
        check(self.max_new_tokens > 0, "max_new_tokens", f"must be > 0, got {self.max_new_tokens}")


DTYPES = ("float32", "bfloat16", "float16")


@dataclass
class ModelConfig:
    """What every generation backend reads; each backend's schema adds its own keys
    (ded/generation/backends/, one module each, registered in BACKENDS)."""

    name: str = MISSING  # label in logs and tables
    path: str = MISSING  # the model: pkg:<package>/<file>, a local path or a hub id
    backend: str = MISSING  # set by the schema (a backend's config class); BACKENDS names them (checked by ded.plugins)
    sampling: Sampling = field(default_factory=Sampling)


@dataclass
class PromptedModelConfig(ModelConfig):
    """A backend that prompts a model's weights (not a replayed dataset)."""

    revision: Optional[str] = None  # hub revision (hub ids only)
    dtype: str = "float32"  # weights dtype: float32 | bfloat16 | float16
    system_prompt: Optional[str] = None  # optional system turn
    fewshot: int = 0  # worked examples from the task, prepended as chat turns
    fewshot_task: Optional[str] = None  # whose worked examples (the yamls set ${corpus.task}); null: arithmetic's
    fewshot_style: str = "terse"  # terse | stepwise | think (multistep has all three; other tasks terse)

    def __post_init__(self):  # keys relative to the model's node (teacher, student)
        one_of(self.dtype, DTYPES, "dtype")
        one_of(self.fewshot_style, ["terse", "stepwise", "think"], "fewshot_style")
        check(self.fewshot >= 0, "fewshot", f"must be >= 0, got {self.fewshot}")


@dataclass
class PassRate:
    k: int = 4
    max_rate: float = 0.75
    min_rate: float = 0.0

    def __post_init__(self):
        check(self.k > 0, "corpus.pass_rate.k", f"must be > 0, got {self.k}")
        check(0 <= self.min_rate <= 1, "corpus.pass_rate.min_rate", f"must be in [0, 1], got {self.min_rate}")
        check(0 < self.max_rate <= 1.0, "corpus.pass_rate.max_rate", f"must be in (0, 1], got {self.max_rate}")
        check(self.min_rate < self.max_rate, "corpus.pass_rate", f"min_rate ({self.min_rate}) must be < max_rate ({self.max_rate})")


@dataclass
class Trajectories:
    n: int = 4
    p: int = 2

    def __post_init__(self):
        check(self.n > 0, "corpus.trajectories.n", f"must be > 0, got {self.n}")
        check(0 < self.p <= self.n, "corpus.trajectories.p", f"must be in [1, n={self.n}], got {self.p}")


@dataclass
class Decontam:
    enabled: bool = True
    n: int = 8
    min_overlap: float = 0.5
    fuzzy_threshold: Optional[float] = None
    dedup: str = "exact"

    def __post_init__(self):
        one_of(self.dedup, DEDUP_MODES, "corpus.decontam.dedup")
        check(self.n >= 3, "corpus.decontam.n", f"must be >= 3, got {self.n}")
        check(0 <= self.min_overlap <= 1, "corpus.decontam.min_overlap", f"must be in [0, 1], got {self.min_overlap}")


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
class PoolSpec:
    """One question pool, as ``corpus.pools[]`` entries and ``ded.data.pools.load_pools`` take it
    (the formats and how a row is read: ded/data/pools.py)."""

    source: str  # a local file path, or a hub dataset name ("openai/gsm8k")
    format: str = "fields"  # a pool format (ded.data.pools.FORMATS): gsm8k | math | aime | amc | choice | fields | humaneval | ...
    fields: dict[str, Optional[str]] = field(default_factory=dict)  # our name (POOL_FIELD_NAMES) -> row key; null: the format's default
    name: Optional[str] = None  # pool name, the prefix of its question ids; default: the file stem / dataset name
    split: str = "train"  # hub datasets only
    subset: Optional[str] = None  # hub dataset configuration ("main" for openai/gsm8k)
    revision: Optional[str] = None  # hub dataset revision (a teacher replaying it may pin one)
    dedup: bool = False  # rows repeating a question text are one question (datasets with a row per solution)
    models: list[str] = field(default_factory=list)  # keep questions that each of these models has a row for (fields.model); needs dedup
    on_error: str = "raise"  # raise | skip: what a malformed row does
    domain: Optional[str] = None  # Question.domain (the subject) when the row has no domain field; null: the format's (math, code)
    since: Optional[str] = None  # ISO date: keep rows dated on or after it (fields.date; LiveCodeBench: contest_date)
    until: Optional[str] = None  # ISO date: keep rows dated on or before it (a contamination window)
    weight: float = 1.0  # share of this pool when several are mixed
    limit: Optional[int] = None  # read at most this many rows

    def __post_init__(self):
        def check(ok: bool, name: str, msg: str) -> None:  # name: relative to the pool's node (corpus.pools[i])
            if not ok:
                raise ConfigError(f"{name}: {msg} (pool {self.source})", name)

        check(self.on_error in ("raise", "skip"), "on_error", f"{self.on_error!r}; allowed: ['raise', 'skip']")
        check(self.weight >= 0, "weight", f"must be >= 0, got {self.weight}")
        for name in ("since", "until"):
            check(is_iso_date(getattr(self, name)), name, f"an ISO date YYYY-MM-DD or null, got {getattr(self, name)!r}")
        self.fields = {k: v for k, v in self.fields.items() if v is not None}  # null (an unset interpolation): the format's default key
        unknown = sorted(set(self.fields) - set(POOL_FIELD_NAMES))
        check(not unknown, "fields", f"unknown name(s) {unknown}; allowed: {list(POOL_FIELD_NAMES)}")
        check(not self.models or "model" in self.fields, "models", "needs fields.model (the column naming the model of a row)")
        check(not self.models or self.dedup, "models", "needs dedup=true (a question's models are read from all its rows)")
        if self.name is None:
            self.name = default_pool_name(self.source)


POOL_SUFFIXES = (".jsonl", ".jsonl.gz", ".json", ".parquet")  # the local files a pool may be


def default_pool_name(source: str) -> str:
    """A pool's name when its spec gives none: the file name without its suffix, or the dataset's last part."""
    name = Path(source).name
    for suffix in POOL_SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return source.rstrip("/").split("/")[-1]


def hub_repo_problem(repo) -> str | None:
    """Why `repo` is not a Hub repo id with its namespace ("<user or org>/<name>"), by
    huggingface_hub's own rule; None if it is one."""
    from huggingface_hub.utils import HFValidationError, validate_repo_id  # third-party, and only when a push is asked for

    if not isinstance(repo, str) or repo.count("/") != 1:
        return "one '/' between the namespace and the name"
    try:
        validate_repo_id(repo)
    except HFValidationError as e:
        return " ".join(str(e).split())
    return None


@dataclass
class CorpusConfig:
    task: str = "arithmetic"  # a task (ded.data.tasks.TASKS): arithmetic | multistep | pool
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
    push_to_hub: Optional[str] = None  # "<user or org>/<name>": also push the corpus and its card to this Hub dataset repo (ded/reporting/cards.py)
    push_private: bool = True  # a repo the push creates is private (an existing repo keeps its visibility)

    def __post_init__(self):
        check(self.task != "pool" or len(self.pools) > 0, "corpus.pools", "corpus.task=pool needs at least one pool")
        if self.push_to_hub is not None:
            why = hub_repo_problem(self.push_to_hub)
            check(why is None, "corpus.push_to_hub", f"not a Hub dataset repo '<user or org>/<name>' ({why}), got {self.push_to_hub!r}; null: no push")
        check(self.size is None or self.size > 0, "corpus.size", f"must be > 0 (or null: no cap), got {self.size}")
        check(self.pool_size > 0, "corpus.pool_size", f"must be > 0, got {self.pool_size}")
        check(len(self.levels) > 0, "corpus.levels", "must name at least one level")
        bad = [lv for lv in self.levels if lv not in range(1, 6)]
        check(not bad, "corpus.levels", f"unknown level(s) {bad}; allowed: [1, 2, 3, 4, 5]")


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
        check(self.workers >= 0, "diversity.workers", f"must be >= 0 (0 = every core), got {self.workers}")


def parse_shard(value: Optional[str], key: str = "generation.shard") -> Optional[tuple[int, int]]:
    """``"i/n"`` -> (i, n) with 0 <= i < n; None stays None (the job generates every question)."""
    if value is None:
        return None
    m = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", str(value), re.ASCII)
    check(m is not None, key, f"expected 'i/n' (shard i of n, counted from 0, e.g. 0/4), got {value!r}")
    i, n = int(m.group(1)), int(m.group(2))
    check(0 <= i < n, key, f"shard index must be in [0, n), got {i}/{n}")
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
        check(self.num_train_epochs > 0, "train.num_train_epochs", f"must be > 0, got {self.num_train_epochs}")
        check(self.learning_rate > 0, "train.learning_rate", f"must be > 0, got {self.learning_rate}")
        check(self.per_device_train_batch_size > 0, "train.per_device_train_batch_size", f"must be > 0, got {self.per_device_train_batch_size}")
        check(self.gradient_accumulation_steps > 0, "train.gradient_accumulation_steps", f"must be > 0, got {self.gradient_accumulation_steps}")
        check(self.num_processes >= 1, "train.num_processes", f"must be >= 1, got {self.num_processes}")
        check(self.num_machines >= 1 and self.num_processes % self.num_machines == 0, "train.num_machines",
               f"must be >= 1 and divide train.num_processes={self.num_processes} (processes over all machines), got {self.num_machines}")  # fmt: skip
        check(self.max_length > 0, "train.max_length", f"must be > 0 (tokens per example), got {self.max_length}")
        check(self.logging_steps > 0, "train.logging_steps", f"must be > 0 (optimizer steps between logs), got {self.logging_steps}")
        check(self.weight_decay >= 0, "train.weight_decay", f"must be >= 0, got {self.weight_decay}")
        check(0 <= self.lora_dropout < 1, "train.lora_dropout", f"must be in [0, 1), got {self.lora_dropout}")
        one_of(self.launcher, LAUNCHERS, "train.launcher")
        if self.accelerate_config is not None:
            check(os.path.isfile(project_path(self.accelerate_config)), "train.accelerate_config", f"no such file {self.accelerate_config!r}")
        check(self.lora_r >= 0, "train.lora_r", f"must be >= 0 (0 = full fine-tuning), got {self.lora_r}")
        check(self.warmup_steps >= 0, "train.warmup_steps", f"must be >= 0 (a float in [0, 1) is a share of steps), got {self.warmup_steps}")
        one_of(self.lr_scheduler_type, ["linear", "cosine", "constant", "constant_with_warmup"], "train.lr_scheduler_type")
        # train.optim (transformers' vocabulary) and whether liger-kernel / flash-attn are installed
        # are checked by ded.training.sft.check_environment before any work: importing transformers here
        # would make every config check wait for torch.


@dataclass
class RLConfig:
    """RLVR after distillation (``rl=grpo``; ``rl=none``: no RL stage). Fields named as in TRL's
    ``GRPOConfig`` go to it under that name (ded.training.grpo.grpo_args); the rest
    (HARNESS_RL_FIELDS) are the harness's own: which model it starts from, its prompts, its rewards."""

    method: str = "none"  # none | grpo
    init: str = "sft"  # sft: from the trained checkpoint; base: from the base student ("RL alone")
    prompts: int = 32  # questions drawn from the train pool minus the SFT corpus's (held-out and benchmarks never enter the pool)
    band: bool = False  # keep only prompts the starting policy solves sometimes, never always or never (0 < pass rate < 1)
    format_weight: float = 0.0  # weight of the format reward (a final answer where the task's checker looks for one)
    version: int = 1  # bump to invalidate cached RL checkpoints
    # TRL GRPOConfig fields
    learning_rate: float = 1e-6
    num_generations: int = 8  # completions per prompt (the group)
    max_completion_length: int = 256
    temperature: float = 1.0
    top_p: float = 1.0
    beta: float = 0.0  # KL coefficient (0: no reference model is loaded)
    epsilon: float = 0.2  # clipping range
    loss_type: str = "dapo"
    scale_rewards: str = "group"
    num_iterations: int = 1
    per_device_train_batch_size: int = 8  # completions per device step
    gradient_accumulation_steps: int = 1
    num_train_epochs: float = 1.0
    max_steps: int = -1
    lr_scheduler_type: str = "constant"
    warmup_steps: float = 0.0
    weight_decay: float = 0.0
    optim: str = "adamw_torch"
    bf16: bool = False
    seed: int = 0
    logging_steps: int = 1
    mask_truncated_completions: bool = False
    use_vllm: bool = False  # generation inside GRPO through vLLM (GPU clusters: vllm_mode colocate or server)
    vllm_mode: str = "colocate"
    vllm_gpu_memory_utilization: float = 0.3
    vllm_tensor_parallel_size: int = 1
    activation_checkpointing: bool = False

    def __post_init__(self):
        one_of(self.method, ["none", "grpo"], "rl.method")
        one_of(self.init, ["sft", "base"], "rl.init")
        check(self.prompts > 0, "rl.prompts", f"must be > 0, got {self.prompts}")
        check(self.format_weight >= 0, "rl.format_weight", f"must be >= 0, got {self.format_weight}")
        check(self.num_generations >= 2, "rl.num_generations", f"must be >= 2 (GRPO's advantage compares a completion with its group), got {self.num_generations}")
        batch = self.per_device_train_batch_size * self.gradient_accumulation_steps
        check(batch % self.num_generations == 0, "rl.num_generations",
              f"must divide rl.per_device_train_batch_size x rl.gradient_accumulation_steps = {batch} (whole groups per step), got {self.num_generations}")  # fmt: skip
        check(self.learning_rate > 0, "rl.learning_rate", f"must be > 0, got {self.learning_rate}")
        check(self.max_completion_length > 0, "rl.max_completion_length", f"must be > 0, got {self.max_completion_length}")
        check(self.temperature > 0, "rl.temperature", f"must be > 0 (GRPO samples), got {self.temperature}")
        check(self.beta >= 0, "rl.beta", f"must be >= 0, got {self.beta}")
        check(self.num_train_epochs > 0 or self.max_steps > 0, "rl.max_steps", "set rl.max_steps > 0 or rl.num_train_epochs > 0")
        one_of(self.loss_type, ["grpo", "dr_grpo", "dapo", "bnpo"], "rl.loss_type")
        one_of(self.scale_rewards, ["group", "batch", "none"], "rl.scale_rewards")
        one_of(self.vllm_mode, ["colocate", "server"], "rl.vllm_mode")
        one_of(self.lr_scheduler_type, ["linear", "cosine", "constant", "constant_with_warmup"], "rl.lr_scheduler_type")

    @property
    def enabled(self) -> bool:
        return self.method != "none"


HARNESS_RL_FIELDS = ("method", "init", "prompts", "band", "format_weight", "version")

HARNESS_TRAIN_FIELDS = ("attn_implementation", "num_processes", "num_machines", "launcher", "accelerate_config", "lora_r", "lora_alpha", "lora_dropout", "version")
LAUNCHERS = ("accelerate", "torchrun")


def renamed(old_value, new_value, old_key: str, new_key: str, empty):
    """The value of a renamed key: the new one, or the old one with a deprecation message (both set: ConfigError)."""
    if old_value == empty:
        return new_value
    check(new_value == empty, old_key, f"renamed {new_key}; set only {new_key} (both are set)")
    log.warning("%s is deprecated and will be removed: it is now %s (same values)", old_key, new_key)
    return old_value


@dataclass
class EvalConfig:
    size: int = 50
    k: int = 4
    sampling: Sampling = field(default_factory=Sampling)
    sets: list[str] = field(default_factory=list)  # evaluation sets besides the held-out split (ded.data.evalsets.EVAL_SETS)
    per_set: dict[str, Sampling] = field(default_factory=dict)  # sampling per split (an eval set, or heldout)
    limit: Optional[int] = None
    data_dir: Optional[str] = None
    since: Optional[str] = None  # dated benchmarks (livecodebench): only problems released on or after this ISO date
    until: Optional[str] = None  # ... and on or before this one
    answer_entropy: int = 0  # > 0: each model's token entropy on its own answers to this many held-out questions (0 = off)
    benchmarks: list[str] = field(default_factory=list)  # deprecated: eval.sets ("benchmarks" now means only the speed scripts)
    per_benchmark: dict[str, Sampling] = field(default_factory=dict)  # deprecated: eval.per_set

    def sampling_for(self, split: str) -> tuple[Sampling, str]:
        """The sampling a split is evaluated with, and the config key it comes from."""
        if split in self.per_set:
            return self.per_set[split], f"eval.per_set.{split}"
        return self.sampling, "eval.sampling"

    def __post_init__(self):
        self.sets = renamed(self.benchmarks, self.sets, "eval.benchmarks", "eval.sets", empty=[])
        self.per_set = renamed(self.per_benchmark, self.per_set, "eval.per_benchmark", "eval.per_set", empty={})
        self.benchmarks, self.per_benchmark = [], {}
        check(self.size > 0, "eval.size", f"must be > 0, got {self.size}")
        check(self.k > 0, "eval.k", f"must be > 0, got {self.k}")
        check(self.limit is None or self.limit > 0, "eval.limit", f"must be > 0 or null, got {self.limit}")
        check(self.answer_entropy >= 0, "eval.answer_entropy", f"must be >= 0 (0 = off), got {self.answer_entropy}")
        for key in ("since", "until"):
            check(is_iso_date(getattr(self, key)), f"eval.{key}", f"an ISO date YYYY-MM-DD or null, got {getattr(self, key)!r}")


@dataclass
class SandboxConfig:
    """How generated code is run to grade it (ded/sandbox.py, ded/data/code.py): one sandbox per
    response, every test inside it; limits per sandbox."""

    wall_s: float = 20.0  # wall clock of one response's whole run (all its tests)
    per_test_s: float = 4.0  # one test (a call, a stdin run)
    cpu_s: int = 20  # CPU seconds (RLIMIT_CPU)
    memory_mb: int = 1024  # RLIMIT_AS per process, and the whole run's memory where a memory cgroup can be made
    nproc: int = 16  # processes of the sandbox's user (RLIMIT_NPROC): a fork bomb stops there
    output_bytes: int = 1048576  # stdout + stderr kept; more ends the run
    disk_mb: int = 64  # the private working directory (a tmpfs)
    workers: int = 0  # sandboxes at once; 0 = every core

    def __post_init__(self):
        for key in ("wall_s", "per_test_s", "cpu_s", "memory_mb", "nproc", "output_bytes", "disk_mb"):
            check(getattr(self, key) > 0, f"sandbox.{key}", f"must be > 0, got {getattr(self, key)}")
        check(self.workers >= 0, "sandbox.workers", f"must be >= 0 (0 = every core), got {self.workers}")


@dataclass
class AnalysisConfig:
    enabled: bool = True
    probe_size: int = 64
    components: int = 2

    def __post_init__(self):
        check(self.probe_size >= 2, "analysis.probe_size", f"must be >= 2, got {self.probe_size}")
        check(self.components >= 1, "analysis.components", f"must be >= 1, got {self.components}")


@dataclass
class LoggerConfig:
    backend: str = "wandb"
    mode: str = "offline"
    project: str = "ded"
    entity: Optional[str] = None
    tags: list[str] = field(default_factory=list)
    group: Optional[str] = None  # W&B group; null: the multirun's sweep folder from `multirun/` on (tracking.sweep_group; a single run has none)

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
    rl: RLConfig = field(default_factory=RLConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    analysis: AnalysisConfig = field(default_factory=AnalysisConfig)
    sandbox: SandboxConfig = field(default_factory=SandboxConfig)
    logger: LoggerConfig = field(default_factory=LoggerConfig)
    paths: PathsConfig = field(default_factory=PathsConfig)
    name: str = "ded"  # run name shown in W&B and the run record
    debug: Any = None  # set by the debug/ group: a tag saying which debug preset is on
    experiment: Any = None
    stop_after: str = "evaluation"  # the last stage to run (STAGES); the cache keeps the rest for later
    replicate: int = 0  # 0: the seeds as set; r > 0: a fresh corpus and model (replicate_seed), same questions

    def __post_init__(self):
        one_of(self.stop_after, STAGES, "stop_after")
        check(type(self.replicate) is int and self.replicate >= 0, "replicate", f"must be an integer >= 0, got {self.replicate!r}")
        # a shard holds only part of the samples: curating or training on it would silently use a partial corpus
        check(self.generation.shard is None or STAGES.index(self.stop_after) <= STAGES.index("trajectories"), "generation.shard",
               f"a sharded job ({self.generation.shard}) generates only part of the samples, so it must stop before curation: "
               f"set stop_after=trajectories (or earlier), got stop_after={self.stop_after}; once every shard is done, "
               "one unsharded run (generation.shard=null) finds all their samples and goes on")  # fmt: skip
        # the student's weights are trained and loaded: a backend that only replays a dataset cannot be one
        check(isinstance(self.student, PromptedModelConfig), "student.backend", f"{self.student.backend!r} has no model weights to train; "
               "use a student config on a model backend (hf, vllm, openai)")  # fmt: skip


    def replicate_seed(self, base: int, stream: str) -> int:
        """The seed of one random stream (``teacher``, ``select``, ``train``) in this replicate: `base`
        itself in replicate 0 (so runs without the key keep their seeds and their cache), else a seed
        drawn from (base, stream, replicate), so replicate 2 of train.seed=1 is not replicate 1 of
        train.seed=2. What is not drawn anew (the questions, the student's pass rates, the
        evaluation's sampling seed) is shared by every replicate and cached once."""
        return base if self.replicate == 0 else int(short_hash(base, stream, self.replicate), 16) % 2**31


def to_dataclasses(cfg: DictConfig) -> Config:
    """Instantiate the dataclasses (running every range check); raise ConfigError naming the full
    key. Plug-in names are not checked here: ``ded.plugins.validate`` does both."""
    try:
        return OmegaConf.to_object(cfg)
    except ConfigError as e:
        raise at_full_key(e, cfg) from None
    except Exception as e:  # OmegaConf wraps errors raised inside __post_init__
        cause = e.__cause__ or e.__context__
        if isinstance(cause, ConfigError):
            raise at_full_key(cause, cfg) from None
        raise


def compose_error(e: BaseException) -> Optional[ConfigError]:
    """Hydra's error composing the config as one ConfigError that names the full key, the bad
    value and what is allowed: a mistyped or renamed key (with the nearest key of that section),
    a value of the wrong type (with the type the key takes), an unknown option of a config group
    (with the available ones), an override Hydra cannot parse. None for any other error."""

    def one_line(text: str) -> str:
        return " ".join(line.strip() for line in str(text).splitlines() if line.strip())

    if isinstance(e, MissingConfigException) and e.options is not None and "/" in (e.missing_cfg_file or ""):
        group, _, name = e.missing_cfg_file.rpartition("/")
        return ConfigError(f"{group}: unknown option {name!r}; available: {sorted(e.options)}", group)
    if isinstance(e, OverrideParseException):
        return ConfigError(f"cannot read the overrides: {one_line(e)}")
    if not isinstance(e, ConfigCompositionException):
        return None
    cause = e.__cause__
    if not isinstance(cause, OmegaConfBaseException) or not getattr(cause, "full_key", None):
        return ConfigError(one_line(e))
    key, name = cause.full_key, str(cause.key)
    section = key[: -len(name) - 1] if key.endswith(f".{name}") else key[: -len(name) - 2] if key.endswith(f"[{name}]") else ""
    first = str(cause.msg).splitlines()[0] if cause.msg else one_line(cause)
    if isinstance(cause, (ConfigAttributeError, ConfigKeyError)):  # a key the schema does not have
        if not dataclasses.is_dataclass(cause.object_type):  # a free mapping (eval.per_set): keys are added, not set
            return ConfigError(f"{key}: no such key; to add it, start the override with + (+{key}...)", key)
        names = section_keys(cause)
        near = nearest_key(name, names)
        where = f"{section}.{near}" if section else near
        hint = f"did you mean {where}?" if near else f"the keys of {section or 'the config'}: {names}"
        return ConfigError(f"{key}: no such key; {hint}", key)
    parent = cause.parent_node
    if isinstance(parent, ListConfig) and isinstance(cause.key, int) and cause.key >= len(parent):
        return ConfigError(f"{key}: no such entry; {section or 'the list'} has {len(parent)}", key)
    if isinstance(cause, ValidationError) and cause.value is not None:
        expected = key_type(cause.object_type, name)
        if expected:
            return ConfigError(f"{key}: expected {expected}, got {cause.value!r}", key)
    return ConfigError(f"{key}: {first}", key)


def section_keys(cause) -> list[str]:
    """The keys of the section an OmegaConf error is about (its dataclass's fields, else the node's keys)."""
    if dataclasses.is_dataclass(cause.object_type):
        return [f.name for f in dataclasses.fields(cause.object_type)]
    parent = cause.parent_node
    return [str(k) for k in parent.keys()] if isinstance(parent, DictConfig) else []


def nearest_key(name: str, names: list[str]) -> Optional[str]:
    """The key `name` was most likely meant to be: the closest spelling (corpus.sise -> size), else
    the one key whose words include it (train.epochs -> num_train_epochs); None if neither."""
    close = difflib.get_close_matches(name, names, n=1, cutoff=0.6)
    if close:
        return close[0]
    words = [n for n in names if name in n.split("_") or n in name.split("_")]
    return words[0] if len(words) == 1 else None


def key_type(object_type, name: str) -> Optional[str]:
    """What a key of a dataclass takes, in words ("an integer or null"); None if unknown."""
    try:
        hint = typing.get_type_hints(object_type)[name]
    except Exception:
        return None

    def words(t) -> Optional[str]:
        args = [a for a in typing.get_args(t) if a is not type(None)]
        if typing.get_origin(t) is typing.Union:
            inner = words(args[0]) if len(args) == 1 else None
            return f"{inner} or null" if inner else None
        if typing.get_origin(t) is list:
            return "a list, e.g. [a, b]"
        if typing.get_origin(t) is dict:
            return "a mapping, e.g. {a: 1}"
        return {bool: "true or false", int: "an integer", float: "a number", str: "a string"}.get(t)

    return words(hint)


def at_full_key(e: ConfigError, cfg) -> ConfigError:
    """`e` with its key under the path of the node whose check raised it (``temperature`` ->
    ``teacher.sampling.temperature``); a key that is already full is left as it is."""
    path = failing_node(cfg, node_path(cfg))
    key = e.key
    if key is None or not path or key == path or key.startswith((f"{path}.", f"{path}[")):
        return e
    return ConfigError(f"{path}.{e}", f"{path}.{key}")


def node_path(node) -> str:
    """The dotted path of a config node from its root ("" for the root)."""
    return node._get_full_key(None) if node._get_parent() is not None else ""


def failing_node(node, path: str) -> str:
    """The path of the deepest node under `node` whose dataclass (or its checks) fails to build."""
    for key in range(len(node)) if isinstance(node, ListConfig) else list(node.keys()):
        child = node._get_node(key)
        if not isinstance(child, (DictConfig, ListConfig)) or child._is_none() or child._is_missing():
            continue
        sub = f"{path}[{key}]" if isinstance(node, ListConfig) else f"{path}.{key}" if path else str(key)
        try:
            OmegaConf.to_object(child)
        except Exception:
            return failing_node(child, sub)
    return path
