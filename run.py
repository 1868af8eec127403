"""One DED pipeline run per Hydra job.

    python run.py                                        # embedded CPU default (~7 min, 2 cores)
    python run.py debug=tiny                             # a minute or two
    python run.py stop_after=trajectories                # generation only: fill the sample cache
    python run.py -m diversity=levenshtein,random corpus.size=32,64   # an ablation; data generated once
    python run.py -m experiment=paper_32b teacher=qwq,r1 corpus.size=400,800  # the paper's sweep (GPU cluster)

A bad value, file or missing model stops the run in seconds with one line that names it
(exit status 2), before any model is loaded. A multirun checks every job first (ded/preflight.py)
and starts none if one cannot run; a job that still stops on such an error is reported and the
sweep goes on to the next job, then exits with status 2.
"""

import logging
import os
import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

from ded.plugins import register

register()
FAILED: list[str] = []  # the multirun jobs that stopped on a user error (the sweep goes on; exit status 2 at the end)


def check_output_root(argv: list[str]) -> None:
    """Hydra creates the sweep folder before any of our code runs; a path through a regular file
    would stop it with a bare NotADirectoryError, so name the key here first. (A single run's
    folder is claimed before Hydra writes into it: ded.preflight.RunFolder.)"""
    roots = {"hydra.run.dir": "outputs", "hydra.sweep.dir": "multirun"}
    for arg in argv:
        key, _, value = arg.lstrip("+").partition("=")
        if key in roots and value:
            roots[key] = value
    for key, root in roots.items():
        for p in (Path(root), *Path(root).parents):
            if p.exists():
                if not p.is_dir():
                    print(f"error: {key}={root}: {p} is a file, so the run folder cannot be made there", file=sys.stderr)
                    sys.exit(2)
                break


def report(e: Exception) -> None:
    """The one line a user error gives: on stderr, and in the run's run.log (Hydra's file handler)."""
    print(f"error: {e}", file=sys.stderr, flush=True)
    record = logging.LogRecord("ded", logging.ERROR, __file__, 0, "%s", (e,), None)
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.FileHandler):
            handler.handle(record)


def in_multirun() -> bool:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg: DictConfig) -> float | None:
    from ded.core.errors import UserError
    from ded.core.interrupts import Interrupted
    from ded.plugins import validate

    logging.getLogger("ded").setLevel(logging.INFO)
    try:
        conf = validate(cfg)  # before the pipeline's imports: a bad value answers in about a second
        from ded.preflight import follower_task, problems

        if follower_task(conf.train.num_machines):
            logging.getLogger("ded").info("SLURM task %s: the pipeline runs on task 0", os.environ["SLURM_PROCID"])
            return None

        if found := problems(cfg):  # every missing model, GPU, package or file, before any model loads
            raise UserError("\nerror: ".join(found))
        from ded.pipeline import run

        metrics = run(cfg)
    except Interrupted as e:  # the record says why it stopped; the conventional status (143 SIGTERM, 130 SIGINT)
        sys.exit(e.exit_code)
    except UserError as e:
        report(e)
        if not in_multirun():
            sys.exit(2)
        FAILED.append(str(e))  # the other jobs still run; the summary lists this one as failed
        return None
    return metrics.get(f"eval/heldout/trained/avg@{cfg.eval.k}")  # the value a Hydra sweeper optimises


def launch() -> None:
    """``main()`` with Hydra's compose errors (a mistyped key, a wrong type, an unknown option of a
    config group, an override it cannot parse) as the one line every bad input gets, exit 2.
    Hydra raises them to us instead of printing its own report (HYDRA_FULL_ERROR=1); anyone who
    set HYDRA_FULL_ERROR=1 themselves gets Hydra's full traceback, as Hydra promises."""
    from ded.config import compose_error

    wants_traceback = os.environ.get("HYDRA_FULL_ERROR") == "1"
    os.environ["HYDRA_FULL_ERROR"] = "1"
    try:
        main()
    except Exception as e:
        err = None if wants_traceback else compose_error(e)
        if err is None:
            raise  # a bug: its traceback
        print(f"error: {err}", file=sys.stderr, flush=True)
        sys.exit(2)


if __name__ == "__main__":
    check_output_root(sys.argv[1:])
    launch()
    if FAILED:
        print(f"error: {len(FAILED)} job(s) of the sweep stopped on the errors above", file=sys.stderr)
        sys.exit(2)
