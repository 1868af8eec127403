"""Stage 6, RL (``rl=grpo``; off by default): GRPO after distillation, rewarded by the task's own
answer check (ded.training.grpo). Its prompts are pool questions the SFT corpus did not use (the
pool is decontaminated and never holds a held-out or benchmark question), optionally only those
the starting policy solves sometimes (``rl.band``): a group whose completions all score alike
has no advantage to learn from."""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass, replace

from ded.config import ConfigError
from ded.core.models import local_checkpoint
from ded.curation.filters import pass_rates
from ded.data import Question
from ded.generation import generate_cached
from ded.generation.factory import make_backend
from ded.generation.identity import model_identity
from ded.reporting import plots
from ded.stages import Run, prompt_prefix_for, stage
from ded.stages.curation import Corpus
from ded.stages.questions import Questions
from ded.stages.training import Trained
from ded.training import grpo

log = logging.getLogger("ded")


@dataclass
class RLTrained:
    path: str  # checkpoint directory (in the stage cache)
    key: str  # its cache key: names the model in evaluation's sample cache
    info: dict  # train_loss, steps, seconds, prompts, log_history (TRL's entries), cached
    init: str  # sft | base: what it started from


def prompts_for(ctx: Run, qs: Questions, corpus: Corpus) -> list[Question]:
    """Up to ``rl.prompts`` pool questions not in the SFT corpus, drawn by the replicate's seed."""
    used = {ex["question"] for ex in corpus.examples}
    free = [q for q in qs.pool if q.text not in used]
    if not free:
        raise ConfigError(f"rl: every one of the {len(qs.pool)} pool questions is in the SFT corpus, so GRPO has no prompts; "
                          "raise corpus.pool_size", "corpus.pool_size")  # fmt: skip
    n = min(ctx.cfg.rl.prompts, len(free))
    if n < ctx.cfg.rl.prompts:
        log.warning("rl.prompts=%d: only %d pool questions are outside the SFT corpus; GRPO uses those", ctx.cfg.rl.prompts, n)
    return random.Random(ctx.cfg.replicate_seed(ctx.cfg.rl.seed, "rl_prompts")).sample(free, n)


def in_band(ctx: Run, prompts: list[Question], path: str | None, identity: dict | None) -> tuple[list[Question], dict[str, float]]:
    """The prompts the starting policy solves sometimes: num_generations samples each at GRPO's temperature."""
    rc = ctx.cfg.rl
    backend = make_backend(ctx.cfg.student, ctx.cache_root, role="student", path=path, identity=identity)
    sampling = {"temperature": float(rc.temperature), "top_p": float(rc.top_p), "max_new_tokens": int(rc.max_completion_length)}
    samples, _ = generate_cached(backend, ctx.cache_root, prompts, rc.num_generations, prefix=prompt_prefix_for(ctx.cfg.student),
                                 sampling=sampling, seed=ctx.corpus_seed, desc="rl band: starting policy")  # fmt: skip
    backend.close()
    rates = pass_rates(prompts, samples, ctx.grading)
    kept = [q for q in prompts if 0 < rates[q.id] < 1]
    if not kept:
        raise ConfigError(f"rl.band: the starting policy solves each of the {len(prompts)} prompts always or never, so no group would "
                          "carry a reward signal; set rl.band=false or change rl.temperature", "rl.band")  # fmt: skip
    return kept, rates


@stage("rl")
def run(ctx: Run, qs: Questions, corpus: Corpus, trained: Trained) -> RLTrained:
    cfg, rc = ctx.cfg, ctx.cfg.rl
    if rc.init == "sft":
        start_path, start = trained.path, {"model": f"ckpt:{trained.key}", "dtype": cfg.student.dtype}
        backend_args = (start_path, start)  # the starting policy as a backend: the checkpoint under its cache name
    else:
        start_path, start = local_checkpoint(cfg.student.path, ctx.cache_root, cfg.student.revision), model_identity(cfg.student)
        backend_args = (None, None)  # the student's own backend
    prompts = prompts_for(ctx, qs, corpus)
    metrics = {"rl/prompts_drawn": len(prompts)}
    if rc.band:
        prompts, rates = in_band(ctx, prompts, *backend_args)
        metrics["rl/band_start_pass_rate"] = sum(rates.values()) / len(rates)
    metrics["rl/prompts"] = len(prompts)
    ctx.tracker.log(metrics)

    def log_entry(step: int, logs: dict) -> None:  # GRPO's entries as it makes them: reward, its spread, KL, lengths, clipping
        ctx.tracker.log({f"rl/{k}": v for k, v in logs.items() if k != "step"}, step=step)

    from transformers import AutoTokenizer

    rows = grpo.render_prompts(AutoTokenizer.from_pretrained(start_path), prompts, prompt_prefix_for(cfg.student))
    rl_cfg = replace(rc, seed=cfg.replicate_seed(rc.seed, "rl"))  # drawn anew per replicate, like train.seed
    path, key, info = grpo.train(start_path, start, rows, rl_cfg, ctx.stage_cache, ctx.grading, on_log=log_entry)
    if info["cached"]:  # the checkpoint's recorded curves, so this run's record holds them too
        for entry in info["log_history"]:
            log_entry(entry["step"], entry)
    ctx.tracker.log({"rl/cached": info["cached"], "rl/seed": rl_cfg.seed, "rl/steps": info["steps"], "rl/seconds": info["seconds"],
                     "rl/train_loss": info["train_loss"], **({"rl/peak_rss_gb": info["peak_rss_gb"]} if info.get("peak_rss_gb") else {})})  # fmt: skip
    ctx.tracker.table("rl/prompts", [{"id": r["id"], "kind": r["kind"], "answer": r["answer"]} for r in rows])
    ctx.tracker.plot("rl/curves", plots.training_curves(info["log_history"], plots.RL_PANELS))
    log.info("rl: GRPO from %s on %d prompts, %d steps (%s)", rc.init, len(rows), info["steps"], "cached" if info["cached"] else f"{info['seconds']:.0f} s")
    return RLTrained(path, key, info, rc.init)
