"""The docs' own W&B commands against a real offline multirun: docs/results.md's launch line (made
cheap: debug=tiny, stop_after=questions), its `wandb sync --dry-run` line and each job's recorded
`wandb/sync` (run with the installed wandb, which lists the run files it would upload), and its
dashboard line (the outline it prints filters on the group the runs recorded)."""

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT
from ded.reporting.offline import read_run

DOC = ROOT / "docs" / "results.md"
PLACEHOLDER = "multirun/2026-11-27/15-00-00-abc123"  # the sweep folder the docs' commands name
ENV = {**{k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}, "WANDB_MODE": "offline", "WANDB_SILENT": "true",
       "WANDB__DISABLE_STATS": "true", "WANDB__DISABLE_META": "true", "WANDB_ERROR_REPORTING": "false"}  # fmt: skip


def doc_commands(start: str) -> list[str]:
    """The lines of the docs' ```bash blocks that start with `start`."""
    lines, fenced = [], False
    for line in DOC.read_text().splitlines():
        if line.strip().startswith("```"):
            fenced = line.strip() == "```bash"
            continue
        if fenced and line.strip().startswith(start):
            lines.append(line.strip())
    return lines


def run(argv: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=300, env=ENV, stdin=subprocess.DEVNULL)


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    """The docs' launch line, run where a user would (Hydra's default, relative sweep folder)."""
    work = tmp_path_factory.mktemp("docs_sweep")
    [launch] = doc_commands("python run.py -m")
    args = shlex.split(launch, comments=True)[2:]
    p = run([sys.executable, str(ROOT / "run.py"), *args, "debug=tiny", "stop_after=questions", f"paths.cache_dir={work / 'cache'}"], work)
    assert p.returncode == 0, p.stderr[-3000:]
    [folder] = [m.parent for m in work.glob("multirun/*/*/multirun.yaml")]
    jobs = sorted(m.parent for m in folder.glob("*/metrics.json"))
    assert len(jobs) == 2, jobs
    return work, folder, jobs


def test_each_job_records_the_group_the_docs_name_its_name_and_sync_command(sweep):
    work, folder, jobs = sweep
    group = str(folder.relative_to(work))  # multirun/<date>/<time>-<id>: the folder as the docs write it
    for job in jobs:
        m = json.loads((job / "metrics.json").read_text())
        choice = "levenshtein" if "levenshtein" in job.name else "random"
        assert m["wandb/group"] == group and m["wandb/sweep_dir"] == str(folder)
        assert m["wandb/name"] == f"diversity={choice},debug=tiny,stop_after=questions"  # the job's overrides; cache path and logger left out
        assert m["wandb/job_type"] == "until_questions" and "wandb/errors" not in m
        assert m["wandb/sync"] == f"wandb sync --project ded --entity my-team {m['wandb/run_dir']}"  # the entity the launch line set
        r = read_run(next(Path(m["wandb/run_dir"]).glob("*.wandb")))  # what W&B will show once synced
        assert (r.group, r.name, r.job_type) == (group, m["wandb/name"], "until_questions")
        assert (r.entity, r.project, r.exit_code) == ("my-team", "ded", 0)
        assert {f"diversity:{choice}", "debug:tiny", "teacher:smollm2_fewshot"} <= set(r.tags)
        assert not any(t.startswith("diversity:") and t != f"diversity:{choice}" for t in r.tags)
        config = r.config
        assert config["sweep_dir"] == str(folder) and config["choices"]["diversity"] == choice
        assert f"diversity={choice}" in config["overrides"] and config["diversity"]  # the resolved config beside them


def test_the_docs_sync_and_dashboard_commands_find_the_sweep(sweep):
    work, folder, jobs = sweep
    group = str(folder.relative_to(work))
    runs = [read_run(next(Path(json.loads((j / "metrics.json").read_text())["wandb/run_dir"]).glob("*.wandb"))) for j in jobs]
    files = sorted(str(r.file.relative_to(work)) for r in runs)

    # The docs' sync lines: the same options and folders, one with --dry-run; the installed wandb
    # parses them and lists every job's run file (offline: nothing is uploaded).
    sync, dry = doc_commands("wandb sync ")
    argv = shlex.split(dry, comments=True)
    assert argv == ["wandb", "sync", "--dry-run", *shlex.split(sync, comments=True)[2:]]
    assert argv[argv.index("--project") + 1] == "ded" and argv[argv.index("--entity") + 1] == "my-team"
    p = run(["bash", "-c", dry.replace(PLACEHOLDER, group)], work)  # bash expands the docs' glob
    out = p.stdout + p.stderr
    assert p.returncode == 0 and f"Would sync {len(jobs)} run(s)" in out and all(f in out for f in files), out

    # Each job's recorded command, with --dry-run: it names its own run file.
    for job, r in zip(jobs, runs):
        cmd = shlex.split(json.loads((job / "metrics.json").read_text())["wandb/sync"])
        p = run([*cmd[:2], "--dry-run", *cmd[2:]], work)
        assert p.returncode == 0 and "Would sync 1 run(s)" in p.stdout + p.stderr and r.file.name in p.stdout + p.stderr, p.stdout + p.stderr

    # The docs' dashboard lines name the same entity, project and the group every run recorded.
    outline, save = doc_commands("python notebooks/dashboard.py")
    assert shlex.split(save, comments=True) == shlex.split(outline, comments=True) + ["--save"]
    argv = shlex.split(outline.replace(PLACEHOLDER, group), comments=True)
    opts = dict(zip(argv[2::2], argv[3::2]))
    assert opts["--group"] == group and {r.group for r in runs} == {group}
    assert (opts["--entity"], opts["--project"]) == ("my-team", "ded") == (runs[0].entity, runs[0].project)
    p = run([sys.executable, *argv[1:]], ROOT)
    assert p.returncode == 0, p.stderr[-2000:]
    assert "in my-team/ded" in p.stdout and f"Metric(\"Group\") == '{group}'" in p.stdout, p.stdout[:2000]
