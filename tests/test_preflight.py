"""A run or sweep that cannot run here stops in seconds, before any model loads, with one line per
missing requirement and no traceback; a job that still fails on a user error lets the sweep go on."""

import os
import subprocess
import sys

import yaml

from conftest import ROOT


def run_py(*args, cache, timeout=120):
    env = {**os.environ, "DED_CACHE_DIR": str(cache), "HF_HUB_OFFLINE": "1", "WANDB_MODE": "offline"}
    env.pop("DED_R1_BASE_URL", None)
    return subprocess.run([sys.executable, str(ROOT / "run.py"), *args], capture_output=True, text=True, env=env, timeout=timeout, cwd=ROOT)


def test_headline_sweep_names_what_each_teacher_lacks_and_starts_nothing(tmp_path):
    sweep = tmp_path / "sweep"
    r = run_py("-m", "teacher=qwq,r1", "corpus.size=400,800", f"hydra.sweep.dir={sweep}", cache=tmp_path / "cache")
    assert r.returncode == 2, r.stderr[-2000:]
    err = r.stderr
    assert "Traceback" not in err and "Error executing job" not in err
    lines = [x for x in err.splitlines() if x.startswith("error:")]
    qwq = [x for x in lines if "qwq-32b" in x]
    r1 = [x for x in lines if "deepseek-r1" in x]
    # one line per problem, naming the jobs it stops: qwq's two jobs share one line, r1's another
    assert len(qwq) == 1 and "#0" in qwq[0] and "#1" in qwq[0] and "vllm" in qwq[0]
    assert len(r1) == 1 and "#2" in r1[0] and "#3" in r1[0] and "endpoint" in r1[0]
    assert "4 of 4 jobs cannot run here; nothing was started" in err
    assert not sweep.exists()  # no job started, no folder made
    assert not (tmp_path / "cache" / "models").exists()  # the student's GGUF was not converted to find this out


def test_paper_sweep_lists_student_and_training_requirements_once_for_every_job(tmp_path):
    r = run_py("-m", "experiment=paper_32b", "teacher=qwq,r1", f"hydra.sweep.dir={tmp_path / 's'}", cache=tmp_path / "cache")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    every = [x for x in r.stderr.splitlines() if x.startswith("error: every job:")]
    assert any("ds-r1-distill-qwen-32b" in x for x in every)  # the 32B student, once for both jobs
    train = [x for x in every if "train.num_processes=16" in x]
    assert len(train) == 1 and "SLURM allocation of 2 nodes" in train[0] and "flash-attn" in train[0]


def test_single_run_lists_every_problem_without_traceback(tmp_path):
    r = run_py("teacher=qwq", "student=ds_32b", f"hydra.run.dir={tmp_path / 'run'}", cache=tmp_path / "cache")
    assert r.returncode == 2 and "Traceback" not in r.stderr and "Error executing job" not in r.stderr
    errors = [x for x in r.stderr.splitlines() if x.startswith("error:")]
    assert any("qwq-32b" in x for x in errors) and any("ds-r1-distill-qwen-32b" in x for x in errors)


def test_a_job_failing_on_a_user_error_lets_the_sweep_go_on_and_the_exit_status_says_so(tmp_path):
    sweep = tmp_path / "sweep"
    taken = sweep / "0"
    taken.mkdir(parents=True)
    (taken / ".ded-run.json").write_text('{"pid": 1}')  # job 0's folder holds another run's record
    r = run_py("-m", "corpus.seed=0,1", "stop_after=questions", "logger=none", f"hydra.sweep.dir={sweep}",
               "hydra.sweep.subdir=${hydra.job.num}", cache=tmp_path / "cache")  # fmt: skip
    assert r.returncode == 2, r.stderr[-2000:]
    assert "already holds the record of another run" in r.stderr and "Traceback" not in r.stderr
    assert (sweep / "1" / "metrics.json").exists()  # job 1 ran after job 0 stopped
    assert "1 job(s) of the sweep stopped" in r.stderr


def test_paper_32b_is_consistent_from_config_to_recipe():
    from conftest import compose

    cfg = compose(["experiment=paper_32b"])
    recipe = yaml.safe_load((ROOT / cfg.train.accelerate_config).read_text())
    assert (cfg.train.num_machines, cfg.train.num_processes) == (recipe["num_machines"], recipe["num_processes"]) == (2, 16)
    assert recipe["distributed_type"] == "DEEPSPEED" and cfg.train.activation_checkpointing


def test_jobs_sent_to_slurm_get_only_their_values_checked_here(capsys):
    """A CPU login node cannot judge a GPU node: for the SLURM launcher only the config values are
    checked before submission (each job checks its node when it starts); a bad value still stops all."""
    import pytest
    from hydra import compose, initialize_config_dir

    from conftest import CONF
    from ded.plugins import register
    from ded.preflight import Preflight, problems

    from omegaconf import OmegaConf, open_dict, read_write

    def sweep(*overrides):  # the sweep-level config Hydra hands the callback: the overrides as typed
        cfg = compose("config", ["hydra/launcher=slurm_gpu"], return_hydra_config=True)
        with read_write(cfg), open_dict(cfg):
            OmegaConf.update(cfg, "hydra.overrides.task", ["hydra/launcher=slurm_gpu", *overrides])
        return cfg

    register()
    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        Preflight().on_multirun_start(sweep("experiment=paper_32b", "teacher=qwq,r1"))  # returns: no GPU node is judged here
        assert problems(compose("config", ["experiment=paper_32b", "paths.output_dir=x"]), here=False) == []
        with pytest.raises(SystemExit) as e:
            Preflight().on_multirun_start(sweep("teacher=qwq,r1", "corpus.size=-1"))
    assert e.value.code == 2 and "corpus.size" in capsys.readouterr().err


def test_question_pools_are_checked_before_any_model_loads(tmp_path, monkeypatch):
    """A pool file that is not there, or a hub pool offline with no local copy, is a preflight problem."""
    from conftest import compose
    from ded.preflight import problems

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    missing = problems(compose(["corpus=gsm8k", f"corpus.pools.0.source={tmp_path / 'nope.jsonl'}", "paths.output_dir=x"]))
    assert any("corpus.pools[0].source" in p and "nope.jsonl: no such file" in p for p in missing)
    hub = problems(compose(["corpus=gsm8k", "corpus.pools.0.source=openai/gsm8k", "paths.output_dir=x"]))
    assert any("'openai/gsm8k' is not in the local cache" in p for p in hub)
    pool = tmp_path / "pool.jsonl"
    pool.write_text('{"question": "1+1?", "answer": "#### 2"}\n')
    assert not any("corpus.pools" in p for p in problems(compose(["corpus=gsm8k", f"corpus.pools.0.source={pool}", "paths.output_dir=x"])))


def test_hub_datasets_are_probed_online_and_the_local_cache_decides_when_the_hub_is_out_of_reach(tmp_path, monkeypatch):
    """Online (no offline variable), a hub pool or benchmark gets one metadata request: an id the hub
    says it does not serve is named; a hub that cannot be reached (a closed local port) leaves the
    decision to the local datasets cache, as `datasets` itself falls back to it."""
    import http.server
    import socket
    import threading

    import datasets
    from huggingface_hub import constants

    from conftest import compose
    from ded.core.models import reset_hub_probes
    from ded.preflight import problems

    def found(*extra):
        reset_hub_probes()
        return problems(compose(["corpus=gsm8k", "corpus.pools.0.source=openai/gsm8k", "eval.sets=[math500]", "paths.output_dir=x", *extra]))

    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE", "DED_DATA_DIR"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)  # read once at import: the suite runs with HF_HUB_OFFLINE=1
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "datasets")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    try:
        # 1. nothing listens: connection refused; nothing cached -> both named, with the connection error, one line each
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            monkeypatch.setattr(constants, "ENDPOINT", f"http://127.0.0.1:{s.getsockname()[1]}")
        got = found()
        pool = [p for p in got if p.startswith("corpus.pools[0].source: hub dataset 'openai/gsm8k' is not in the local cache and the hub cannot be reached")]
        bench = [p for p in got if p.startswith("eval.sets: 'math500'") and "'HuggingFaceH4/MATH-500' is not in the local cache" in p]
        assert len(pool) == 1 and len(bench) == 1, got
        assert all("ConnectError" in p and "\n" not in p for p in pool + bench)
        # 2. the same out-of-reach hub, the pool in the datasets cache: the pool passes, the benchmark is still named
        (tmp_path / "datasets" / "openai___gsm8k").mkdir(parents=True)
        got = found()
        assert not any("openai/gsm8k" in p for p in got) and any("MATH-500" in p for p in got)

        # 3. a hub that answers "no such repository" (as the hub does: 404 + X-Error-Code): named as not served, cache or not
        class NotFound(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                self.send_response(404)
                self.send_header("X-Error-Code", "RepoNotFound")
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(b'{"error": "Repository not found"}')

            def log_message(self, *a):
                pass

        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), NotFound)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        monkeypatch.setattr(constants, "ENDPOINT", f"http://127.0.0.1:{server.server_address[1]}")
        try:
            got = found()
        finally:
            server.shutdown()
        pool = [p for p in got if "hub dataset 'openai/gsm8k' is not served by the Hugging Face hub (RepositoryNotFoundError" in p]
        assert len(pool) == 1, got
    finally:
        reset_hub_probes()
