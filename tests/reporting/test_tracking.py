"""W&B runs that fit a sweep: a real two-job multirun, its offline W&B runs and run records."""

import json
import os
import subprocess
import sys
from pathlib import Path

from conftest import ROOT


def test_multirun_jobs_carry_group_name_job_type_tags_and_overrides(tmp_path):
    sweep = tmp_path / "sweep"
    p = subprocess.run(
        [sys.executable, str(ROOT / "run.py"), "-m", "debug=tiny", "stop_after=questions", "diversity=levenshtein,random",
         f"paths.cache_dir={tmp_path / 'cache'}", f"hydra.sweep.dir={sweep}", "hydra.sweep.subdir=${hydra.job.num}"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300, env={**os.environ, "WANDB_MODE": "offline"},
    )  # fmt: skip
    assert p.returncode == 0, p.stderr[-3000:]
    for job, choice in [("0", "levenshtein"), ("1", "random")]:
        m = json.loads((sweep / job / "metrics.json").read_text())
        assert m["wandb/group"] == str(sweep)  # one group per sweep: its folder
        assert m["wandb/name"] == f"debug=tiny,stop_after=questions,diversity={choice}"  # the job's overrides, cache path left out
        assert m["wandb/job_type"] == "until_questions"
        run_dir = Path(m["wandb/run_dir"])
        assert m["wandb/sync"] == f"wandb sync {run_dir}" and run_dir.is_dir()  # offline: how to sync it later
        # The offline run's log holds what W&B will show: group, name, job type, tags and the overrides in the config.
        raw = next(run_dir.glob("*.wandb")).read_bytes()
        for needle in [str(sweep), m["wandb/name"], "until_questions", f"diversity:{choice}", "debug:tiny", "teacher:smollm2_fewshot",
                       "overrides", "choices", f'"diversity":"{choice}"', f'"diversity={choice}"']:  # fmt: skip
            assert needle.encode() in raw, needle
        other = "random" if choice == "levenshtein" else "levenshtein"
        assert f"diversity:{other}".encode() not in raw
