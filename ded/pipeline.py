"""The DED pipeline: seven stages in order, each a module of ded/stages/.

    python run.py                                # embedded CPU default, ~7 minutes on 2 cores
    python run.py debug=tiny                     # a minute or two
    python run.py stop_after=trajectories        # fill the sample cache only (e.g. on a generation node)

questions -> passrate -> trajectories -> curation -> training -> analysis -> evaluation.
Every generation goes through the per-sample cache and the checkpoint through the stage cache,
so a rerun, a diversity change or a corpus-size change regenerates nothing.
docs/architecture.md describes the stages, the layers and the plug-in points; docs/cache.md the cache rule.
"""

from __future__ import annotations

import logging
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from omegaconf import DictConfig

from ded.core.cache import StageCache
from ded.core.errors import UserError
from ded.grading.answers import GradingSettings
from ded.plugins import validate
from ded.preflight import check_backends
from ded.reporting.tracking import Tracker
from ded.stages import Run, StopPipeline, analysis, curation, evaluation, passrate, questions, training, trajectories
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
        analysis.run(ctx, corpus, pr, trained)
        ev = evaluation.run(ctx, qs, trained)
        report(ev, tr, corpus)
    return dict(ctx.tracker.metrics)


@contextmanager
def open_run(cfg: DictConfig) -> Iterator[Run]:
    """The validated config, its run record and caches; the record says finished or failed."""
    conf = validate(cfg)
    t0 = time.perf_counter()
    claim_run_folder(conf.paths.output_dir)
    grading = GradingSettings(conf.sandbox, hide=(str(conf.paths.cache_dir), str(conf.paths.output_dir)))  # code runs see neither folder
    ctx = Run(conf, Tracker(cfg, conf.paths.output_dir), str(conf.paths.cache_dir), StageCache(conf.paths.cache_dir), grading=grading)
    ok = False
    try:
        yield ctx
        ok = True
    except StopPipeline as stop:
        log.info("stop_after=%s: done before the %s stage; the caches keep what was made", conf.stop_after, stop.args[0])
        ok = True
    finally:
        ctx.tracker.log({"run/seconds": time.perf_counter() - t0})
        ctx.tracker.finish(ok)


def claim_run_folder(path: str) -> None:
    """Make `path` this process's run folder, or stop: a folder that holds another run's record is
    never written to (two runs in one folder would mix their config, metrics and log)."""
    import json
    import os
    import socket

    folder = Path(path)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(folder / ".ded-run.json", os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        owner = (folder / ".ded-run.json").read_text(errors="replace").strip()
        raise UserError(f"{folder}: this folder already holds the record of another run ({owner}); "
                        "give this run its own folder (hydra.run.dir=... or the default outputs/<date>/<time>-<id>)") from None  # fmt: skip
    except (NotADirectoryError, FileExistsError, PermissionError) as e:
        raise UserError(f"paths.output_dir={path}: cannot create the run folder ({e.strerror}: {e.filename})") from None
    with os.fdopen(fd, "w") as f:
        json.dump({"pid": os.getpid(), "host": socket.gethostname(), "started": time.strftime("%Y-%m-%d %H:%M:%S")}, f)


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
    if found:
        raise UserError("\nerror: ".join(found))
    ctx.backends.update(backends)


def report(ev: evaluation.Evaluation, tr: trajectories.TeacherSamples, corpus: curation.Corpus) -> None:
    lines = ev.summary() + [f"corpus {len(corpus.examples)} examples; newly generated pass-rate + teacher samples: {tr.new_samples}"]
    print("\n".join(lines), flush=True)
    log.info("\n".join(lines))
