"""Can this run, or every job of a sweep, run on this machine? Answered before any model loads.

``problems(cfg)`` validates a composed config and asks each part the run needs whether it can
run here: the student's and teacher's backends (model files, GPUs, vLLM, endpoint variables,
replayed datasets), the question pools and benchmark files, the training launch (kernels, GPUs,
nodes). It converts,
loads and downloads nothing, and it lists every problem, not the first.

``Preflight`` is the Hydra callback (conf/hydra/default.yaml) that does this for a whole multirun
before its first job starts: it composes each job of the basic sweeper's grid, checks it, and
stops the sweep with exit status 2 and one line per problem, naming the jobs it concerns, e.g.
``python run.py -m experiment=paper_32b teacher=qwq,r1`` on a laptop answers in seconds. Jobs a
launcher sends to other machines (SLURM) get only the machine-independent half here (the config
values); each checks the machine half itself on its node, before any model loads.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from ded.config import STAGES
from ded.core.errors import UserError
from ded.data.evalsets import EVAL_SETS, check_available
from ded.data.pools import FORMATS
from ded.data.pools import check_available as pool_available
from ded.generation.factory import make_backend
from ded.plugins import validate
from ded.sandbox import check_isolation
from ded.training.sft import check_environment

log = logging.getLogger("ded")


def check_backends(conf, cache_root: str, memo: dict | None = None) -> tuple[dict[str, Any], list[str]]:
    """({role: backend}, problems) for the roles the run reaches (teacher first: the rarer one).
    `memo` keeps each model config's answer across the jobs of a sweep (one check per teacher)."""
    reach = STAGES.index(conf.stop_after)
    backends, problems = {}, []
    for role, first_use in (("teacher", "trajectories"), ("student", "passrate")):
        if STAGES.index(first_use) > reach:
            continue
        key = (role, repr(getattr(conf, role)))
        if memo is not None and key in memo:
            problems += memo[key]
            continue
        found = []
        try:
            backends[role] = make_backend(getattr(conf, role), cache_root, role=role)
            backends[role].check()
        except UserError as e:
            found.append(str(e))
        problems += found
        if memo is not None:
            memo[key] = found
    return backends, problems


def problems(cfg: DictConfig, memo: dict | None = None, here: bool = True) -> list[str]:
    """Every reason the composed config `cfg` cannot run here (empty: it can); `memo`: see
    check_backends; ``here=False``: the config's values only (the job runs on another machine)."""
    try:
        conf = validate(cfg)
    except UserError as e:
        return [str(e)]
    if not here:
        return []
    found = check_backends(conf, str(conf.paths.cache_dir), memo)[1]
    if STAGES.index(conf.stop_after) >= STAGES.index("questions"):
        found += [p for b in conf.eval.sets if (p := check_available(b, conf.eval.data_dir))]
        if conf.corpus.task == "pool":
            found += [p for spec in conf.corpus.pools if (p := pool_available(spec))]
    if STAGES.index(conf.stop_after) >= STAGES.index("passrate") and grades_code(conf):
        if why := check_isolation():
            found.append(f"sandbox: this run grades code answers by running them, and the sandbox cannot run here: {why}")
    if STAGES.index(conf.stop_after) >= STAGES.index("training"):
        try:
            check_environment(conf.train)
        except UserError as e:
            found.append(str(e))
    return found


def grades_code(conf) -> bool:
    """Whether a run asks for code answers to be run: a code pool or a code benchmark."""
    pools = conf.corpus.pools if conf.corpus.task == "pool" else []
    return any(FORMATS[p.format].kind == "code" for p in pools) or any(EVAL_SETS[b].kind == "code" for b in conf.eval.sets)


def sweep_jobs(config: DictConfig) -> list[list[str]] | None:
    """The override list of every job of this multirun (the basic sweeper's grid), or None when
    another sweeper (Optuna...) chooses the jobs as it goes."""
    if "BasicSweeper" not in str(OmegaConf.select(config, "hydra.sweeper._target_")):
        return None
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parsed = OverridesParser.create().parse_overrides(list(config.hydra.overrides.task))
    batches = BasicSweeper.split_arguments(parsed, None)
    return [job for batch in batches for job in batch]


class Preflight(Callback):
    """Check every job of a multirun before the first starts; stop the sweep (exit 2) on problems."""
    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        from hydra import compose

        jobs = sweep_jobs(config)
        if not jobs:
            return
        here = "SlurmLauncher" not in str(OmegaConf.select(config, "hydra.launcher._target_"))  # local, joblib, submitit local
        seen: dict[str, list[int]] = {}  # problem -> the jobs it stops
        memo: dict = {}
        for num, overrides in enumerate(jobs):
            try:
                # the job's run folder is Hydra's to make at launch; nothing here writes to it
                cfg = compose(config_name=config.hydra.job.config_name, overrides=[*overrides, "paths.output_dir=not-made-yet"])
            except Exception as e:  # a bad override: Hydra's own message names it
                found = [f"{' '.join(overrides)}: {e}"]
            else:
                found = problems(cfg, memo, here)
            for p in found:
                seen.setdefault(p, []).append(num)
        if not seen:
            log.info("preflight: all %d jobs %s", len(jobs), "can run here" if here else "have valid configs (each checks its node when it starts)")
            return
        for p, nums in seen.items():
            which = "every job" if len(nums) == len(jobs) else "job " + ", ".join(f"#{n} ({' '.join(jobs[n])})" for n in nums)
            print(f"error: {which}: {p}", file=sys.stderr)
        stopped = len({n for nums in seen.values() for n in nums})
        print(f"error: {stopped} of {len(jobs)} jobs cannot run here; nothing was started", file=sys.stderr, flush=True)
        sys.exit(2)
