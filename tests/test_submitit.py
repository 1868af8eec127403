"""Sweeps through Hydra's submitit launcher: the presets in conf/hydra/launcher/ compose (SLURM ones
without a cluster, site values from the gitignored conf/local/), and a sweep through submitit's local
executor runs each job in its own process, writes each job's run record and ends with its summary."""

import csv
import json
import os
import shutil
import subprocess
import sys

import yaml

from conftest import CONF, ROOT, compose

PLUGIN = "hydra_plugins.hydra_submitit_launcher.submitit_launcher."


def test_presets_compose_on_the_plugin_configs():
    """Each preset extends the plugin's own config: its launcher class, the plugin's keys (a typo'd key
    would fail to compose) and the preset's values; no site value is committed."""
    want = {"slurm_gpu": ("SlurmLauncher", 8), "slurm_cpu": ("SlurmLauncher", None), "local": ("LocalLauncher", None)}
    for preset, (cls, gpus) in want.items():
        hydra = compose([f"hydra/launcher={preset}"], return_hydra_config=True).hydra
        launcher = hydra.launcher
        assert launcher._target_ == PLUGIN + cls, preset
        assert launcher.gpus_per_node == gpus and launcher.tasks_per_node == 1, preset
        assert launcher.submitit_folder == f"{hydra.sweep.dir}/.submitit/%j", preset  # submitit's logs, in the sweep folder
        if cls == "SlurmLauncher":
            assert launcher.partition is None and launcher.account is None and launcher.setup is None, preset


def test_site_values_come_from_conf_local(tmp_path):
    """conf/local/slurm.yaml (every SLURM preset) then conf/local/slurm/<gpu|cpu>.yaml (one preset)
    win over the preset; a command-line override wins over both. Here on a copy of conf/ with the
    examples in recipes/slurm/local copied in, as docs/cluster.md says."""
    conf = tmp_path / "conf"
    shutil.copytree(CONF, conf, ignore=shutil.ignore_patterns("local"))
    shutil.copytree(ROOT / "recipes" / "slurm" / "local", conf / "local")
    from hydra import compose as hcompose
    from hydra import initialize_config_dir

    with initialize_config_dir(config_dir=str(conf), version_base="1.3"):
        gpu = hcompose("config", ["hydra/launcher=slurm_gpu"], return_hydra_config=True).hydra.launcher
        cpu = hcompose("config", ["hydra/launcher=slurm_cpu", "hydra.launcher.account=other"], return_hydra_config=True).hydra.launcher
    assert (gpu.partition, gpu.account, gpu.gpus_per_node) == ("gpu", "my-project", 8)
    assert gpu.setup[0] == "source ~/venvs/ded/bin/activate"
    assert (cpu.partition, cpu.account, cpu.gpus_per_node) == ("cpu", "other", None)


def test_sweep_through_submitit_local_executor(tmp_path):
    """`run.py -m hydra/launcher=local`: two jobs, each a submitit job in its own process (not the
    launching one), each with its run record in its job folder, submitit's own folder per job, and
    the SweepSummary callback's summary once both are done."""
    sweep = tmp_path / "sweep"
    # The job processes unpickle the task and import ded: this checkout's, whatever is installed.
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])}
    cmd = [sys.executable, str(ROOT / "run.py"), "-m", "hydra/launcher=local", "stop_after=questions", "debug=tiny",
           "logger=none", f"paths.cache_dir={tmp_path / 'cache'}", "corpus.seed=0,1", f"hydra.sweep.dir={sweep}"]  # fmt: skip
    p = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    out, _ = p.communicate(timeout=120)
    assert p.returncode == 0, out[-3000:]
    assert "Submitit 'local' sweep output dir" in out

    jobs = sorted(d for d in sweep.iterdir() if d.is_dir() and d.name[0].isdigit())
    assert [d.name.split("_")[0] for d in jobs] == ["0", "1"], out[-3000:]
    pids = set()
    for num, job in enumerate(jobs):
        # the run record: metrics.json (finished), run.log, Hydra's .hydra/ with this job's override
        assert json.loads((job / "metrics.json").read_text())["run/status"] == "finished"
        assert "stop_after=questions: done" in (job / "run.log").read_text()
        assert f"corpus.seed={num}" in yaml.safe_load((job / ".hydra" / "overrides.yaml").read_text())
        assert yaml.safe_load((job / ".hydra" / "config.yaml").read_text())["corpus"]["seed"] == num
        pids.add(json.loads((job / ".ded-run.json").read_text())["pid"])
    assert len(pids) == 2 and p.pid not in pids  # two job processes, neither the launching one

    # submitit's own folder per job: the pickled job, its result, its log (stdout and stderr in one)
    folders = [d for d in (sweep / ".submitit").iterdir() if d.name != "%j"]  # submitit also makes the template folder
    assert len(folders) == 2
    for d in folders:
        assert {f"{d.name}_submitted.pkl", f"{d.name}_0_result.pkl", f"{d.name}_0_log.out"} <= {f.name for f in d.iterdir()}
        assert "Job completed successfully" in (d / f"{d.name}_0_log.out").read_text()

    # the SweepSummary callback ran in the launching process once the jobs were done
    with open(sweep / "summary.csv") as f:
        rows = [r for r in csv.DictReader(f) if r.get("status")]
    assert [(r["corpus.seed"], r["status"]) for r in rows] == [("0", "finished"), ("1", "finished")]
