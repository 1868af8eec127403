"""The pipeline's stages, in order, and what every stage is handed: the ``Run``.

Each stage is one module with one ``run(ctx, ...)`` function that takes the validated config
(``ctx.cfg``, a ``ded.config.Config``) and the outputs of earlier stages, logs its own metrics,
tables and plots through ``ctx.tracker``, and returns a small dataclass. ``ded.pipeline`` calls
them in order; ``stop_after=<stage>`` ends a run after that stage (the sample and checkpoint
caches keep what it made, so a later full run picks it up).

"""

from __future__ import annotations

import functools
import logging
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from ded.config import STAGES, ConfigError  # STAGES re-exported: the stages in order
from ded.core.interrupts import entering
from ded.core.memory import PeakMemory
from ded.data.tasks import worked_examples
from ded.generation import prompt_prefix

log = logging.getLogger("ded")


class StopPipeline(Exception):
    """Raised instead of running a stage after ``stop_after``; ends the run as a success."""


@dataclass
class Run:
    """One pipeline run: the typed config, its run record and caches, and the open backends."""

    cfg: Any  # ded.config.Config
    tracker: Any  # ded.reporting.tracking.Tracker
    cache_root: str
    stage_cache: Any  # ded.core.cache.StageCache
    backends: dict = field(default_factory=dict)  # role -> generation backend, opened by ded.pipeline.check_models
    grading: Any = None  # ded.grading.answers.GradingSettings of every check (None: the defaults), built by ded.pipeline.open_run

    @property
    def seed(self) -> int:
        """The seed of what every replicate shares: the student's pass-rate samples and the evaluation's."""
        return self.cfg.generation.seed

    @property
    def corpus_seed(self) -> int:
        """The seed of what a replicate draws anew: the teacher's samples, selection tie-breaks, probes."""
        return self.cfg.replicate_seed(self.cfg.generation.seed, "teacher")

    @property
    def shard(self) -> tuple[int, int] | None:
        """(i, n) when this job generates only shard i of n (``generation.shard``), else None."""
        return self.cfg.generation.shard_pair

    def runs(self, stage: str) -> bool:
        """Whether `stage` is part of this run (at or before ``stop_after``)."""
        return STAGES.index(stage) <= STAGES.index(self.cfg.stop_after)


def stage(name: str) -> Callable:
    """Mark ``run`` as the stage `name`: skipped past ``stop_after``, timed into ``time/<name>_s``,
    this process's peak resident memory during it into ``memory/<name>_peak_rss_gb`` (`PeakMemory`;
    processes it starts are not counted: a child's peak as Linux reports it includes the parent's
    pages at fork)."""
    assert name in STAGES, name

    def wrap(fn):
        @functools.wraps(fn)
        def inner(ctx: Run, *args, **kwargs):
            if not ctx.runs(name):
                raise StopPipeline(name)
            t0 = time.perf_counter()
            entering(name)
            with PeakMemory() as mem:
                out = fn(ctx, *args, **kwargs)
            metrics = {f"time/{name}_s": time.perf_counter() - t0}
            if mem.gb is not None:
                metrics[f"memory/{name}_peak_rss_gb"] = mem.gb
            ctx.tracker.log(metrics)
            return out

        inner.stage = name
        return inner

    return wrap


def prompt_prefix_for(mcfg, role: str | None = None) -> list[dict]:
    """The turns before every question for a model config: its system turn and `fewshot` worked
    examples of its task (``fewshot_task``, the corpus task by default) in ``fewshot_style``.
    `role` (teacher, student): the key a style or count the task lacks is named under."""
    fewshot = getattr(mcfg, "fewshot", 0)  # a replay or solver teacher is asked nothing: no prompt settings
    try:
        shots = worked_examples(getattr(mcfg, "fewshot_task", None), fewshot, getattr(mcfg, "fewshot_style", "terse")) if fewshot else []
    except ConfigError as e:
        if not role:
            raise
        raise ConfigError(f"{role}.{e}", f"{role}.{e.key}" if e.key else None) from None
    return prompt_prefix(getattr(mcfg, "system_prompt", None), shots)


def sampling_args(s) -> dict:
    """A ``Sampling`` config as the backends take it (and as it enters the sample cache key)."""
    return {"temperature": float(s.temperature), "top_p": float(s.top_p), "max_new_tokens": int(s.max_new_tokens)}
