"""The DED pipeline: eight stages in order, each a module of ded/stages/ (rl only with rl=grpo).

    python run.py                                # embedded CPU default, ~7 minutes on 2 cores
    python run.py debug=tiny                     # a minute or two
    python run.py stop_after=trajectories        # fill the sample cache only (e.g. on a generation node)

questions -> passrate -> trajectories -> curation -> training -> [rl] -> analysis -> evaluation.
Every generation goes through the per-sample cache and the checkpoint through the stage cache,
so a rerun, a diversity change or a corpus-size change regenerates nothing.
docs/architecture.md describes the stages, the layers and the plug-in points; docs/cache.md the cache rule.
"""

from __future__ import annotations

import logging
import os
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from omegaconf import DictConfig

from ded.core import interrupts
from ded.core.cache import StageCache
from ded.core.errors import UserError
from ded.grading.answers import GradingSettings
from ded.plugins import validate
from ded.preflight import check_backends, claim_run_folder  # the claim: one run per folder
from ded.reporting.tracking import Tracker
from ded.stages import Run, StopPipeline, analysis, curation, evaluation, passrate, questions, rl, training, trajectories
from ded.training.grpo import check_environment as check_rl_environment
from ded.training.sft import check_environment

log = logging.getLogger("ded")


def run(cfg: DictConfig) -> dict:
    """Run the pipeline for a composed config; return every logged metric."""
    with open_run(cfg) as ctx:
        # ── models and questions: can each model run here, does every prompt fit it ────
        check_models(ctx)
        qs = questions.run(ctx)
        questions.check_fit(ctx, qs)  # before any model's weights load
        # ── data: the student's pass rate, the teacher's trajectories ──────────────────
        pr = passrate.run(ctx, qs)
        tr = trajectories.run(ctx, pr)
        # ── corpus: correct trajectories, the most diverse per question ─────────────────
        corpus = curation.run(ctx, pr, tr)
        # ── student: train, look inside, evaluate ───────────────────────────────────────
        trained = training.run(ctx, corpus)
        rl_trained = rl.run(ctx, qs, corpus, trained) if ctx.cfg.rl.enabled else None  # RLVR after DED (rl=grpo)
        analysis.run(ctx, corpus, pr, trained)
        ev = evaluation.run(ctx, qs, trained, rl_trained)
        report(ev, tr, corpus)
    return dict(ctx.tracker.metrics)


@contextmanager
def open_run(cfg: DictConfig) -> Iterator[Run]:
    """The validated config, its run record and caches; the record says finished or failed."""
    conf = validate(cfg)
    t0 = time.perf_counter()
    claim_run_folder(conf.paths.output_dir)
    grading = grading_settings(conf)
    ctx = Run(conf, Tracker(cfg, conf.paths.output_dir), str(conf.paths.cache_dir), StageCache(conf.paths.cache_dir), grading=grading)
    ok, status = False, None
    try:
        with interrupts.handled():  # SIGTERM/SIGINT: the record says so, W&B closes, the caller exits 128 + signal
            yield ctx
        ok = True
    except StopPipeline as stop:
        log.info("stop_after=%s: done before the %s stage; the caches keep what was made", conf.stop_after, stop.args[0])
        ok = True
    except interrupts.Interrupted as e:
        interrupts.acknowledge()
        status = "interrupted"
        ctx.tracker.log({"run/interrupted_signal": e.name, "run/interrupted_stage": e.stage or "setup"})
        log.warning("%s; the caches keep what was finished: run the same command again to resume", e)
        raise
    except Exception as e:  # why it failed, in the record (and W&B's summary): the sweep summary reads it there
        ctx.tracker.log({"run/error": str(e) if isinstance(e, UserError) else f"{type(e).__name__}: {e}"})
        raise
    finally:
        ctx.tracker.log({"run/seconds": time.perf_counter() - t0})
        ctx.tracker.finish(ok, status)


HF_CACHE_VARIABLES = ("HF_HOME", "HF_DATASETS_CACHE", "HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "TRANSFORMERS_CACHE")


def grading_settings(conf) -> GradingSettings:
    """How this run grades: the sandbox section, and the folders graded code must not see besides the
    repository and home (ded.sandbox hides those): the run's cache and output, and every data folder."""
    return GradingSettings(conf.sandbox, hide=(str(conf.paths.cache_dir), str(conf.paths.output_dir), *data_folders(conf)))


def data_folders(conf) -> list[str]:
    """Every local folder the run reads benchmark, pool or replayed data from, whichever key or
    variable names it: eval.data_dir, the folder of each local corpus.pools[].source and of a local
    replay dataset (teacher.replay.dataset), DED_DATA_DIR, and the Hugging Face caches (their
    default, ~/.cache/huggingface, is under home, which the sandbox hides anyway)."""
    named = [conf.eval.data_dir, os.environ.get("DED_DATA_DIR"), *(os.environ.get(v) for v in HF_CACHE_VARIABLES)]
    files = [pool.source for pool in conf.corpus.pools]
    files += [getattr(getattr(m, "replay", None), "dataset", None) for m in (conf.teacher, conf.student)]
    for source in files:
        path = Path(source).expanduser() if source else None
        if path is not None and path.exists():  # a local file (a hub dataset name is no path here)
            named.append(str(path if path.is_dir() else path.parent))
    return [os.path.expanduser(folder) for folder in named if folder]  # ded.sandbox resolves, dedupes and drops absent ones


def check_models(ctx: Run) -> None:
    """Open the backends the run's stages need and check each can run here (model files, an
    endpoint, vLLM, a dataset), so a run on the wrong machine stops before any work; run.py has
    already asked the same of the whole config (ded.preflight), this keeps the opened backends."""
    backends, found = check_backends(ctx.cfg, ctx.cache_root)
    if ctx.runs("training"):
        try:
            check_environment(ctx.cfg.train)  # liger-kernel / flash-attn / GPUs / nodes where the config asks for them
        except UserError as e:
            found.append(str(e))
    if ctx.runs("rl") and ctx.cfg.rl.enabled:
        try:
            check_rl_environment(ctx.cfg.rl)  # vLLM and GPUs where GRPO is asked to generate through vLLM
        except UserError as e:
            found.append(str(e))
    if found:
        raise UserError("\nerror: ".join(found))
    ctx.backends.update(backends)


def report(ev: evaluation.Evaluation, tr: trajectories.TeacherSamples, corpus: curation.Corpus) -> None:
    lines = ev.summary() + [f"corpus {len(corpus.examples)} examples; newly generated pass-rate + teacher samples: {tr.new_samples}"]
    print("\n".join(lines), flush=True)
    log.info("\n".join(lines))
