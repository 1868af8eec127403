"""Config schemas: dataclasses registered in Hydra's ConfigStore.

``conf/config.yaml`` starts its defaults list with ``ded_schema`` (the ``Config`` below), so
every YAML file and command-line override is merged into typed nodes: a typo'd key or a value
of the wrong type (or outside an Enum, such as ``diversity.metric``) fails when Hydra composes
the config, naming the key. Range checks (``corpus.size=-3``) live in ``__post_init__`` and run
in ``validate()``, which ``run.py`` calls on the composed config before any work.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, OmegaConf


from ded.registry import ConfigError  # noqa: E402  (re-exported: raised by every check below)


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


class Backend(str, Enum):
    hf = "hf"
    openai = "openai"
    vllm = "vllm"
    replay = "replay"


class HFEngine(str, Enum):
    auto = "auto"  # continuous on a GPU, generate on CPU (ded/generation/hf.py)
    generate = "generate"
    continuous = "continuous"


class EndpointApi(str, Enum):
    chat = "chat"
    completions = "completions"


class Launch(str, Enum):
    none = "none"
    vllm = "vllm"
    transformers = "transformers"
    llama_cpp = "llama_cpp"


class DType(str, Enum):
    float32 = "float32"
    bfloat16 = "bfloat16"
    float16 = "float16"


class Metric(str, Enum):
    levenshtein = "levenshtein"
    embedding = "embedding"
    random = "random"
    none = "none"


class Selector(str, Enum):
    maxmin = "maxmin"
    maxsum = "maxsum"
    exact = "exact"


class Level(str, Enum):
    char = "char"
    token = "token"


class Allocation(str, Enum):
    fill = "fill"
    spread = "spread"


class Dedup(str, Enum):
    none = "none"
    exact = "exact"
    fuzzy = "fuzzy"


class Launcher(str, Enum):
    accelerate = "accelerate"
    torchrun = "torchrun"


class LoggerBackend(str, Enum):
    wandb = "wandb"
    none = "none"


class WandbMode(str, Enum):
    offline = "offline"
    online = "online"
    disabled = "disabled"


@dataclass
class Sampling:
    temperature: float = 0.7
    top_p: float = 0.95
    max_new_tokens: int = 64

    def __post_init__(self):
        _check(self.temperature >= 0, "sampling.temperature", f"must be >= 0, got {self.temperature}")
        _check(0 < self.top_p <= 1, "sampling.top_p", f"must be in (0, 1], got {self.top_p}")
        _check(self.max_new_tokens > 0, "sampling.max_new_tokens", f"must be > 0, got {self.max_new_tokens}")


@dataclass
class EndpointConfig:
    """backend=openai: an OpenAI-compatible server, external or launched by the harness."""

    base_url: Optional[str] = None  # e.g. http://host:8000/v1; null: read base_url_env
    base_url_env: Optional[str] = "OPENAI_BASE_URL"  # environment variable holding the URL
    api_key_env: Optional[str] = "OPENAI_API_KEY"  # environment variable holding the key (never the key in config)
    model: Optional[str] = None  # served model name sent in requests; null: the model's path
    api: EndpointApi = EndpointApi.chat  # chat (messages) or completions (prompt via the chat template)
    concurrency: int = 8  # requests in flight
    timeout: float = 3600.0  # seconds per request (long reasoning traces take minutes)
    max_retries: int = 8  # per request, on 429, 5xx, timeouts and connection errors
    backoff: float = 1.0  # seconds before the first retry; doubles each time (with jitter)
    max_backoff: float = 60.0  # seconds, the cap on one wait
    n_per_request: bool = False  # one request asks for all n samples of a question (falls back to seeds)
    extra_body: dict[str, Any] = field(default_factory=dict)  # server-specific request fields (top_k, ...); enters the cache key
    launch: Launch = Launch.none  # start this server for the run and stop it after
    launch_args: list[str] = field(default_factory=list)  # extra command-line arguments for the launched server
    port: int = 0  # launched server's port; 0 = a free one
    startup_timeout: float = 1800.0  # seconds to wait for the launched server's health check

    def __post_init__(self):
        _check(self.concurrency > 0, "endpoint.concurrency", f"must be > 0, got {self.concurrency}")
        _check(self.timeout > 0, "endpoint.timeout", f"must be > 0, got {self.timeout}")
        _check(self.max_retries >= 0, "endpoint.max_retries", f"must be >= 0, got {self.max_retries}")
        _check(self.backoff >= 0, "endpoint.backoff", f"must be >= 0, got {self.backoff}")


@dataclass
class VLLMConfig:
    """backend=vllm: an in-process vllm.LLM (optional extra: pip install -e '.[vllm]')."""

    tensor_parallel_size: int = 1  # GPUs per engine
    data_parallel_size: int = 1  # engines, one process each, each on its own tensor_parallel_size GPUs
    gpu_memory_utilization: float = 0.9  # share of each GPU's memory vLLM may take
    max_model_len: Optional[int] = None  # tokens (prompt + generation); null = the model's
    enforce_eager: bool = False  # no CUDA graphs (faster start, slower decode)
    sampling_extra: dict[str, Any] = field(default_factory=dict)  # more SamplingParams (top_k, min_p, ...); enters the cache key
    engine_extra: dict[str, Any] = field(default_factory=dict)  # more vllm.LLM(...) arguments

    def __post_init__(self):
        _check(self.tensor_parallel_size > 0, "vllm.tensor_parallel_size", f"must be > 0, got {self.tensor_parallel_size}")
        _check(self.data_parallel_size > 0, "vllm.data_parallel_size", f"must be > 0, got {self.data_parallel_size}")
        _check(0 < self.gpu_memory_utilization <= 1, "vllm.gpu_memory_utilization", f"must be in (0, 1], got {self.gpu_memory_utilization}")


@dataclass
class ReplayConfig:
    """backend=replay: trajectories read from a published dataset instead of generated."""

    dataset: Optional[str] = None  # hub dataset id, or a local .jsonl/.json/.parquet file
    subset: Optional[str] = None  # hub config name
    split: str = "train"  # split (hub) ; local files are one split
    revision: Optional[str] = None  # hub revision
    question: str = "problem"  # column: the question text, matched to the asked question
    trajectory: str = "generated_solution"  # column: one trajectory (string) or several (list of strings)
    reasoning: Optional[str] = None  # column: a separate reasoning trace, joined as <think>...</think> before the trajectory
    answer: Optional[str] = None  # column: the gold answer (for pools built from the dataset)
    model_field: Optional[str] = None  # column naming the generating model
    model_value: Optional[str] = None  # keep rows whose model_field equals this
    correct: list[str] = field(default_factory=list)  # column(s) with correctness flags (bool, Yes/No, or lists); any true = correct
    finish: Optional[str] = None  # column with finish reasons (string or list)
    only_correct: bool = False  # index only trajectories flagged correct

    def __post_init__(self):
        _check(not (self.model_value and not self.model_field), "replay.model_value", "needs replay.model_field (the column to match)")
        _check(not (self.only_correct and not self.correct), "replay.only_correct", "needs replay.correct (the flag column)")


@dataclass
class ModelConfig:
    name: str = MISSING
    path: str = MISSING
    revision: Optional[str] = None
    dtype: DType = DType.float32
    backend: Backend = Backend.hf
    batch_size: int = 32
    engine: HFEngine = HFEngine.auto  # backend=hf: batched generate or continuous batching
    system_prompt: Optional[str] = None
    fewshot: int = 0
    sampling: Sampling = field(default_factory=Sampling)
    endpoint: EndpointConfig = field(default_factory=EndpointConfig)  # backend=openai
    vllm: VLLMConfig = field(default_factory=VLLMConfig)  # backend=vllm
    replay: ReplayConfig = field(default_factory=ReplayConfig)  # backend=replay

    def __post_init__(self):
        _check(self.batch_size > 0, "batch_size", f"must be > 0, got {self.batch_size}")
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
class PoolEntry:
    """One question pool (ded/data/pools.py PoolSpec): a local file or a hub dataset."""

    source: str = MISSING
    format: str = "fields"
    fields: dict[str, str] = field(default_factory=dict)
    name: Optional[str] = None
    split: str = "train"
    subset: Optional[str] = None
    on_error: str = "raise"
    domain: str = "math"
    weight: float = 1.0
    limit: Optional[int] = None

    def __post_init__(self):
        from ded.data.pools import FORMATS

        _check(self.format in FORMATS, "corpus.pools[].format", f"unknown format {self.format!r}; allowed: {list(FORMATS)}")
        _check(self.on_error in ("raise", "skip"), "corpus.pools[].on_error", f"{self.on_error!r}; allowed: ['raise', 'skip']")
        _check(self.weight >= 0, "corpus.pools[].weight", f"must be >= 0, got {self.weight}")


@dataclass
class Decontam:
    enabled: bool = True
    n: int = 8
    min_overlap: float = 0.5
    fuzzy_threshold: Optional[float] = None
    dedup: Dedup = Dedup.exact

    def __post_init__(self):
        _check(self.n >= 3, "corpus.decontam.n", f"must be >= 3, got {self.n}")
        _check(0 <= self.min_overlap <= 1, "corpus.decontam.min_overlap", f"must be in [0, 1], got {self.min_overlap}")


@dataclass
class TrajectoryFilters:
    min_tokens: int = 0
    max_tokens: Optional[int] = None
    repetition: bool = True
    language: bool = False
    think_format: bool = False


@dataclass
class CorpusConfig:
    task: str = "arithmetic"
    pools: list[PoolEntry] = field(default_factory=list)
    levels: list[int] = field(default_factory=lambda: [1, 2, 3, 4, 5])
    pool_size: int = 48
    seed: int = 0
    size: int = 64
    pass_rate: PassRate = field(default_factory=PassRate)
    trajectories: Trajectories = field(default_factory=Trajectories)
    filters: TrajectoryFilters = field(default_factory=TrajectoryFilters)
    decontam: Decontam = field(default_factory=Decontam)
    allocation: Allocation = Allocation.fill

    def __post_init__(self):
        _check(self.task in ("arithmetic", "pool"), "corpus.task", f"unknown task {self.task!r}; allowed: ['arithmetic', 'pool']")
        _check(self.task != "pool" or len(self.pools) > 0, "corpus.pools", "corpus.task=pool needs at least one pool")
        _check(self.size > 0, "corpus.size", f"must be > 0, got {self.size}")
        _check(self.pool_size > 0, "corpus.pool_size", f"must be > 0, got {self.pool_size}")
        _check(len(self.levels) > 0, "corpus.levels", "must name at least one level")
        bad = [lv for lv in self.levels if lv not in range(1, 6)]
        _check(not bad, "corpus.levels", f"unknown level(s) {bad}; allowed: [1, 2, 3, 4, 5]")


@dataclass
class DiversityConfig:
    metric: Metric = Metric.levenshtein
    normalized: bool = True
    level: Level = Level.char
    selector: Selector = Selector.maxmin


@dataclass
class GenerationConfig:
    seed: int = 0


@dataclass
class TrainConfig:
    epochs: float = 3.0
    learning_rate: float = 5e-5
    lr_scheduler: str = "cosine"
    warmup_ratio: float = 0.1
    weight_decay: float = 0.0
    batch_size: int = 8
    grad_accum: int = 1
    max_length: int = 512
    packing: bool = False
    padding_free: bool = False
    gradient_checkpointing: bool = False
    optim: str = "adamw_torch"  # transformers' optimizer name; adamw_torch_fused on GPUs
    liger_kernel: bool = False  # liger-kernel's RMSNorm, SwiGLU, RoPE kernels (GPU); TRL keeps its own fused LM head
    attn_implementation: Optional[str] = None  # sdpa | eager | flash_attention_2 | ...; null = transformers' default
    num_processes: int = 1
    launcher: Launcher = Launcher.accelerate
    accelerate_config: Optional[str] = None
    lora_r: int = 0
    lora_alpha: int = 16
    lora_dropout: float = 0.0
    bf16: bool = False
    seed: int = 0
    logging_steps: int = 5
    version: int = 1

    def __post_init__(self):
        _check(self.epochs > 0, "train.epochs", f"must be > 0, got {self.epochs}")
        _check(self.learning_rate > 0, "train.learning_rate", f"must be > 0, got {self.learning_rate}")
        _check(self.batch_size > 0, "train.batch_size", f"must be > 0, got {self.batch_size}")
        _check(self.grad_accum > 0, "train.grad_accum", f"must be > 0, got {self.grad_accum}")
        _check(self.num_processes >= 1, "train.num_processes", f"must be >= 1, got {self.num_processes}")
        if self.accelerate_config is not None:
            import os

            _check(os.path.isfile(project_path(self.accelerate_config)), "train.accelerate_config", f"no such file {self.accelerate_config!r}")
        _check(self.lora_r >= 0, "train.lora_r", f"must be >= 0 (0 = full fine-tuning), got {self.lora_r}")
        _check(0 <= self.warmup_ratio < 1, "train.warmup_ratio", f"must be in [0, 1), got {self.warmup_ratio}")
        allowed = ["linear", "cosine", "constant", "constant_with_warmup"]
        _check(self.lr_scheduler in allowed, "train.lr_scheduler", f"unknown {self.lr_scheduler!r}; allowed: {allowed}")
        from transformers.training_args import OptimizerNames

        optims = [o.value for o in OptimizerNames]
        _check(self.optim in optims, "train.optim", f"unknown {self.optim!r}; e.g. adamw_torch, adamw_torch_fused (all: {optims})")
        # Whether liger-kernel / flash-attn are installed is checked where training runs
        # (ded.train.check_environment, before any work), not here: a GPU recipe composes anywhere.


@dataclass
class EvalConfig:
    size: int = 50
    k: int = 4
    sampling: Sampling = field(default_factory=Sampling)
    benchmarks: list[str] = field(default_factory=list)
    per_benchmark: dict[str, Sampling] = field(default_factory=dict)
    limit: Optional[int] = None
    data_dir: Optional[str] = None
    version: int = 1

    def __post_init__(self):
        from ded.data.benchmarks import REGISTRY

        _check(self.size > 0, "eval.size", f"must be > 0, got {self.size}")
        _check(self.k > 0, "eval.k", f"must be > 0, got {self.k}")
        bad = [b for b in self.benchmarks if b not in REGISTRY]
        _check(not bad, "eval.benchmarks", f"unknown benchmark(s) {bad}; allowed: {sorted(REGISTRY)}")
        bad = [b for b in self.per_benchmark if b not in REGISTRY and b != "heldout"]
        _check(not bad, "eval.per_benchmark", f"unknown benchmark(s) {bad}; allowed: {sorted(REGISTRY) + ['heldout']}")
        _check(self.limit is None or self.limit > 0, "eval.limit", f"must be > 0 or null, got {self.limit}")


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
    backend: LoggerBackend = LoggerBackend.wandb
    mode: WandbMode = WandbMode.offline
    project: str = "ded"
    entity: Optional[str] = None
    tags: list[str] = field(default_factory=list)


@dataclass
class PathsConfig:
    cache_dir: str = MISSING
    output_dir: str = MISSING


@dataclass
class Config:
    teacher: ModelConfig = MISSING
    student: ModelConfig = MISSING
    corpus: CorpusConfig = field(default_factory=CorpusConfig)
    diversity: DiversityConfig = field(default_factory=DiversityConfig)
    generation: GenerationConfig = field(default_factory=GenerationConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    analysis: AnalysisConfig = field(default_factory=AnalysisConfig)
    logger: LoggerConfig = field(default_factory=LoggerConfig)
    paths: PathsConfig = field(default_factory=PathsConfig)
    name: str = "ded"  # run name shown in W&B and the run record
    debug: Any = None  # set by the debug/ group: a tag saying which debug preset is on
    experiment: Any = None


def value(x: Any) -> Any:
    """The plain value of a config entry (Enum members -> their string)."""
    return x.value if isinstance(x, Enum) else x


def register() -> None:
    ConfigStore.instance().store(name="ded_schema", node=Config)


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
