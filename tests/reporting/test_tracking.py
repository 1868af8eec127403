"""The Tracker's W&B mirror: every call guarded on its own (a real offline W&B run with a call that
really fails, and one whose W&B process dies), and the names W&B is searched by (groups that fit
and do not depend on how the sweep folder was given, run names that fit and tell suite arms apart).
The multirun that checks them end to end, with the docs' commands: test_wandb_commands.py."""

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from omegaconf import OmegaConf

from conftest import ROOT, compose
from ded.reporting.offline import read_run
from ded.reporting.tracking import Tracker, run_identity, run_name, sweep_group, sync_command

QUIET = {"WANDB_SILENT": "true", "WANDB__DISABLE_STATS": "true", "WANDB__DISABLE_META": "true", "WANDB_ERROR_REPORTING": "false"}


def _cfg(entity=None, group=None):
    logger = {"backend": "wandb", "mode": "offline", "project": "ded", "entity": entity, "tags": [], "group": group}
    return OmegaConf.create({"name": "guard", "stop_after": "evaluation", "logger": logger})


def test_one_failing_call_is_recorded_once_and_the_rest_of_the_run_still_reaches_wandb(tmp_path, monkeypatch, caplog):
    """The fault test: a real offline W&B run logs a table whose rows have two shapes and an id
    column of ints and strs (filter/rejects: trajectory rejects and pass-rate rejects), then an
    artifact whose file vanished before it was logged (wandb refuses it: a real failure), twice;
    then more metrics, a curve and another artifact. The run file that `wandb sync` would upload
    holds all of them, and the failure is warned and recorded once."""
    for k, v in QUIET.items():
        monkeypatch.setenv(k, v)
    t = Tracker(_cfg(entity="my-team"), tmp_path)
    assert t.wandb is not None
    rejects = [{"reason": "wrong", "id": 3, "response": "4"},  # a trajectory reject: int id
               {"reason": "too_easy", "id": "q7", "question": "1+1", "pass_rate": 1.0}]  # a pass-rate reject: str id, other keys  # fmt: skip
    gone = tmp_path / "corpus.jsonl"
    gone.write_text('{"q": 1}\n')
    gone.unlink()  # deleted between the stage that wrote it and the artifact call
    kept = tmp_path / "eval.json"
    kept.write_text('{"results": {}}')
    with caplog.at_level(logging.WARNING, logger="ded.reporting.tracking"):
        t.log({"passrate/pool/mean": 0.5})
        t.table("filter/rejects", rejects)
        assert t.artifact("corpus", "corpus-abc", "dataset", files={"corpus.jsonl": gone}) is False
        assert t.artifact("corpus", "corpus-abc", "dataset", files={"corpus.jsonl": gone}) is False  # the same call again
        assert t.wandb is not None  # still on
        t.log({"corpus/examples": 2})
        t.log({"train/loss": 1.5}, step=1)
        assert t.artifact("eval", "eval-abc", "evaluation", files={"eval.json": kept}) is True
        t.finish(ok=True)
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warned) == 1 and "W&B artifact corpus-abc failed" in warned[0] and "other W&B calls go on" in warned[0], warned
    m = json.loads((tmp_path / "metrics.json").read_text())
    assert m["run/status"] == "finished" and m["corpus/examples"] == 2
    assert len(m["wandb/errors"]) == 1 and m["wandb/errors"][0].startswith("artifact corpus-abc: ValueError") and str(gone) in m["wandb/errors"][0]
    assert m["wandb/error"] == m["wandb/errors"][0]

    run = read_run(next(Path(m["wandb/run_dir"]).glob("*.wandb")))  # wandb-core's own reader (`wandb leet inspect`)
    assert run.exit_code == 0
    table = json.loads((run.dir / "files" / run.summary["filter/rejects.path"]).read_text())  # the table file the log names
    assert table["columns"] == ["reason", "id", "response", "question", "pass_rate"]  # every row's keys, first seen first
    assert table["data"] == [["wrong", 3, "4", None, None], ["too_easy", "q7", None, "1+1", 1.0]]
    assert run.summary["passrate/pool/mean"] == 0.5 and run.summary["corpus/examples"] == 2 and run.summary["run/status"] == "finished"
    assert [h["train/loss"] for h in run.history if "train/loss" in h] == [1.5]
    arts = {a["name"]: a for a in run.artifacts}
    assert "eval-abc" in arts and "corpus-abc" not in arts
    assert arts["eval-abc"]["type"] == "evaluation" and list(arts["eval-abc"]["files"]) == ["eval.json"]
    assert (run.entity, run.project) == ("my-team", "ded")


DEAD = r"""
import json, sys
from pathlib import Path
import psutil
from omegaconf import OmegaConf
from ded.reporting.tracking import Tracker
out = Path(sys.argv[1])
cfg = OmegaConf.create({"name": "dead", "stop_after": "evaluation",
                        "logger": {"backend": "wandb", "mode": "offline", "project": "ded", "entity": None, "tags": [], "group": None}})
t = Tracker(cfg, out)
t.log({"a/before": 1})
service = [p for p in psutil.Process().children(recursive=True) if p.name() == "wandb-core"]
assert len(service) == 1, service
service[0].kill()  # the W&B process this script started dies
service[0].wait(10)
t.log({"a/after": 2})
on = t.wandb is not None
t.log({"a/later": 3})
t.table("x/rows", [{"a": 1}])
t.finish(ok=True)
print(json.dumps({"still_on": on}))
"""


def test_a_dead_wandb_process_ends_wandb_for_the_run_and_the_local_record_goes_on(tmp_path):
    """The W&B process is killed mid-run (its socket closes: ConnectionResetError): one warning,
    W&B off for the rest of the run, the local record complete, exit 0, and no traceback from
    wandb's exit hook."""
    # Without WANDB_SERVICE: a W&B process this pytest started would otherwise serve the script too.
    env = {**{k: v for k, v in os.environ.items() if k != "WANDB_SERVICE"}, **QUIET, "WANDB_MODE": "offline"}
    p = subprocess.run([sys.executable, "-c", DEAD, str(tmp_path)], cwd=ROOT, capture_output=True, text=True, timeout=120, env=env)
    assert p.returncode == 0, p.stderr[-3000:]
    assert json.loads(p.stdout.splitlines()[-1]) == {"still_on": False}
    assert p.stderr.count("W&B log a/after failed") == 1 and "local record only" in p.stderr, p.stderr[-3000:]
    assert "Traceback" not in p.stderr and "W&B" in p.stderr and p.stderr.count("failed") == 1, p.stderr[-3000:]
    m = json.loads((tmp_path / "metrics.json").read_text())
    assert m["a/before"] == 1 and m["a/after"] == 2 and m["a/later"] == 3 and m["run/status"] == "finished"
    assert len(m["wandb/errors"]) == 1 and "ConnectionResetError" in m["wandb/error"]
    assert (tmp_path / "tables" / "x_rows.jsonl").exists()


def test_the_sweep_group_is_the_folder_from_multirun_on_however_it_was_given(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    rel = "multirun/diversity_ablation/2026-12-03_05-14-13"
    assert sweep_group(rel) == sweep_group(tmp_path / rel) == sweep_group(f"./{rel}/") == rel
    assert sweep_group(rel, cwd="/elsewhere") == rel  # relative to the folder the multirun was launched in
    assert sweep_group("/scratch/u/ded/multirun/2026-11-27/15-00-00-abc123") == "multirun/2026-11-27/15-00-00-abc123"
    (tmp_path / "store").mkdir()
    (tmp_path / "proj").mkdir()
    (tmp_path / "proj" / "multirun").symlink_to(tmp_path / "store")  # a cluster's multirun linked to scratch space
    assert sweep_group(tmp_path / "proj" / "multirun" / "a" / "b") == "multirun/a/b"  # the link's name counts, not its target
    assert sweep_group("/scratch/u/my_sweeps/exp1") == "my_sweeps/exp1"  # outside any multirun: its last two components
    # A deep cluster path past W&B's 128 characters: the last components that fit, then a hash of the whole.
    deep = [f"/lustre/{'x' * 40}/multirun/{'suite_' * 12}{i}/2026-12-03_05-14-13/{'y' * 30}" for i in (1, 2)]
    groups = [sweep_group(d) for d in deep]
    assert all(len(g) <= 128 for g in groups) and groups[0] != groups[1], groups
    assert [g.split("~")[0] for g in groups] == ["2026-12-03_05-14-13/" + "y" * 30] * 2 and groups == [sweep_group(d) for d in deep]


@pytest.mark.parametrize("given", ["absolute", "relative"])
def test_a_jobs_identity_has_one_group_whether_hydra_got_the_sweep_folder_absolute_or_relative(tmp_path, given):
    """run_identity inside a multirun job (Hydra's job config set as the job sees it): sweep.py
    passes the folder absolute, a user's `hydra.sweep.dir=multirun/...` is relative to the
    launch folder (hydra.runtime.cwd); both give the group the docs' commands use."""
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import open_dict

    folder = tmp_path / "multirun" / "diversity_ablation" / "2026-12-03_05-14-13"
    sweep_dir = folder if given == "absolute" else folder.relative_to(tmp_path)
    cfg = compose(["diversity=random", "logger.entity=my-team", f"hydra.sweep.dir={sweep_dir}", "hydra.mode=MULTIRUN"], return_hydra_config=True)
    with open_dict(cfg):
        cfg.hydra.runtime.cwd = str(tmp_path)  # where the multirun was launched (Hydra sets it in a job)
    HydraConfig.instance().set_config(cfg)
    try:
        ident = run_identity(cfg)
        with open_dict(cfg):
            cfg.logger.group = "g" * 200
        named = run_identity(cfg)["group"]
    finally:
        HydraConfig.instance().cfg = None  # no job config leaks into the next test
    assert ident["group"] == "multirun/diversity_ablation/2026-12-03_05-14-13" and ident["sweep_dir"] == str(folder)
    assert ident["name"] == "diversity=random"  # logger.* overrides say where a run goes, not what it is
    assert len(named) <= 128 and named.startswith("g" * 100)  # logger.group is used as given, fitted to W&B's limit


def _suite_jobs(path: Path, scale: str) -> list[list[str]]:
    """Every job's overrides in a suite, as sweep.py launches it and Hydra's sweeper splits it."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser

    suite = yaml.safe_load(path.read_text())
    suite = {**suite, **suite["paper"]} if scale == "paper" else suite
    parser, jobs = OverridesParser.create(), []
    for r in suite.get("replicates") or [None]:
        for axes in [suite["sweep"], *suite.get("also", [])]:
            cmd = [*suite.get("fixed", []), *axes, *([] if r is None else [f"replicate={r}"])]  # sweep.py's order
            jobs += BasicSweeper.split_arguments(parser.parse_overrides(cmd), None)[0]
    return jobs


@pytest.mark.parametrize("suite", sorted(p.stem for p in (ROOT / "experiments").glob("*.yaml")))
def test_run_names_fit_and_tell_every_arm_of_every_suite_apart(suite):
    path = ROOT / "experiments" / f"{suite}.yaml"
    for scale in ["cpu", "paper"] if "paper" in yaml.safe_load(path.read_text()) else ["cpu"]:
        jobs = _suite_jobs(path, scale)
        names = [run_name(job, "x") for job in jobs]
        assert len(set(names)) == len(jobs) > 1, (suite, scale)
        for job, name in zip(jobs, names):
            assert len(name) <= 128, name
            rep = [o for o in job if o.startswith("replicate=")]
            assert all(f"{o}~" in name or name.endswith(o) for o in rep) and job[-1] in name, (job, name)  # the arm's last keys stay readable
            assert all(o in name.split(",") for o in job if o.startswith("name=")), (job, name)  # and its label
    short = ["debug=tiny", "diversity=random"]
    assert run_name(short, "x") == "debug=tiny,diversity=random" and run_name([], "fallback") == "fallback"


def test_the_recorded_sync_command_names_the_project_and_entity(tmp_path):
    assert sync_command(["/r/offline-run-1"], "ded", None) == "wandb sync --project ded /r/offline-run-1"
    assert sync_command(["/a b/run"], "p", "my-team") == "wandb sync --project p --entity my-team '/a b/run'"
