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

import json
import logging
import os
import socket
import sys
import time
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from ded.config import STAGES, compose_error
from ded.core.errors import UserError
from ded.data.evalsets import EVAL_SETS, check_available
from ded.data.pools import FORMATS
from ded.data.pools import check_available as pool_available
from ded.generation.factory import make_backend
from ded.plugins import validate
from ded.reporting.cards import push_problem
from ded.sandbox import check_isolation
from ded.training.sft import check_environment
from ded.training.grpo import check_environment as check_rl_environment

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
            found += [p for i, spec in enumerate(conf.corpus.pools) if (p := pool_available(spec, f"corpus.pools[{i}]"))]
    if STAGES.index(conf.stop_after) >= STAGES.index("curation") and conf.corpus.push_to_hub:  # curation pushes the corpus
        if why := push_problem(conf.corpus.push_to_hub):
            found.append(why)
    if STAGES.index(conf.stop_after) >= STAGES.index("passrate") and grades_code(conf):
        if why := check_isolation():
            found.append(f"sandbox: this run grades code answers by running them, and the sandbox cannot run here: {why}")
    if STAGES.index(conf.stop_after) >= STAGES.index("training"):
        try:
            check_environment(conf.train)
        except UserError as e:
            found.append(str(e))
    if STAGES.index(conf.stop_after) >= STAGES.index("rl") and conf.rl.enabled:
        try:
            check_rl_environment(conf.rl)
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
            except Exception as e:  # a bad override: one line naming the key (Hydra's own message if it is no compose error)
                err = compose_error(e)
                found = [str(err) if err else f"{' '.join(overrides)}: {e}"]
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


# ── one run per folder ─────────────────────────────────────────────────────────────────────────

CLAIM = ".ded-run.json"  # the claim: which process made this folder its run folder
HANDED_OVER: set[Path] = set()  # folders RunFolder claimed for the run this process is starting; its pipeline takes them over once


def claim_run_folder(path: str, key: str = "paths.output_dir") -> None:
    """Make `path` this process's run folder, or stop (UserError naming `key`): a folder that holds
    another run's claim, or files without a claim (a record from an older version), is never
    written to, since two runs in one folder would mix their config, metrics and log. The folder
    RunFolder claimed for this process's run is taken over once (by that run's pipeline); the
    files Hydra has just written for this very job (its .hydra/ and log) are no other run's."""
    folder = Path(path)
    again = "give this run its own folder (hydra.run.dir=..., or the default outputs/<date>/<time>-<id>)"
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"{key}={path}: cannot create the run folder ({e.strerror}: {e.filename})") from None
    claim = folder / CLAIM
    try:
        if claim.exists():
            raise FileExistsError
        stray = sorted({p.name for p in folder.iterdir()} - hydra_job_files(folder))
        if stray:
            raise UserError(f"{key}={path}: this folder holds files ({', '.join(stray[:3])}{', ...' if len(stray) > 3 else ''}) "
                            f"but no run claim ({CLAIM}), e.g. a record from an older version; {again}, or empty it")  # fmt: skip
        fd = os.open(claim, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)  # of two runs started together, exactly one gets here
    except FileExistsError:
        owner = claim.read_text(errors="replace").strip()
        if folder.resolve() in HANDED_OVER and is_mine(owner):
            HANDED_OVER.discard(folder.resolve())
            return
        raise UserError(f"{key}={path}: this folder already holds the record of another run ({owner}); {again}") from None
    except PermissionError as e:
        raise UserError(f"{key}={path}: cannot create the run folder ({e.strerror}: {e.filename})") from None
    with os.fdopen(fd, "w") as f:
        json.dump({"pid": os.getpid(), "host": socket.gethostname(), "started": time.strftime("%Y-%m-%d %H:%M:%S")}, f)


def is_mine(claim_text: str) -> bool:
    """Whether a claim's text names this process."""
    try:
        owner = json.loads(claim_text)
        return owner.get("pid") == os.getpid() and owner.get("host") == socket.gethostname()
    except (ValueError, AttributeError):
        return False


def hydra_job_files(folder: Path) -> set[str]:
    """The names Hydra writes into a job's folder before the job starts (its .hydra/ and its log),
    when `folder` is the output folder of the Hydra job running in this process; else none."""
    if not HydraConfig.initialized():
        return set()
    hc = HydraConfig.get()
    out = OmegaConf.select(hc, "runtime.output_dir", default=None)
    if not out or Path(out).resolve() != folder.resolve():
        return set()
    return {str(hc.output_subdir or ".hydra"), f"{hc.job.name}.log"}


def follower_task(num_machines: int) -> bool:
    """A SLURM task other than 0 of a multi-node job (one task per node, e.g. submitit with
    hydra.launcher.nodes=N): the pipeline runs on task 0, which starts every node's training
    launch through srun, so this task does nothing."""
    return num_machines > 1 and int(os.environ.get("SLURM_PROCID") or 0) > 0


class RunFolder(Callback):
    """Claim a single run's folder (hydra.run.dir) before Hydra writes anything into it (its
    .hydra/ files, its log): of two launches into one folder, the one refused leaves the other's
    record untouched, and a folder holding files without a claim is refused. One line, exit 2.
    A multirun's jobs are claimed by the pipeline, each in its own subfolder of the sweep folder."""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        if follower_task(OmegaConf.select(config, "train.num_machines", default=1)):
            return  # task 0 claims the folder and runs the pipeline, the others only wait for it
        folder = str(config.hydra.run.dir)
        try:
            claim_run_folder(folder, "hydra.run.dir")
        except UserError as e:
            print(f"error: {e}", file=sys.stderr, flush=True)
            sys.exit(2)
        HANDED_OVER.add(Path(folder).resolve())
