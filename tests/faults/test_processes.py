"""Real processes against one cache and one output root: runs started together never share a
record or generate a sample twice, and a run SIGKILLed in each stage resumes to the numbers of a
run that was never interrupted."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from conftest import ROOT

TINY = ["debug=tiny", "logger=none"]


def _samples(cache: Path) -> dict[str, list[dict]]:
    """Generation key -> its sample records (the cache's JSONL lines)."""
    out = {}
    for f in cache.glob("samples/*/samples.jsonl"):
        out[f.parent.name] = [json.loads(x) for x in f.read_text().splitlines() if x.strip()]
    return out


@pytest.mark.slow  # two tiny runs at once, ~1.5 min on 2 cores
def test_runs_started_together_keep_their_own_records_and_share_the_cache(tmp_path, cache_dir):
    n = 4  # four runs at once (two was a separate case; four covers it)
    procs = [
        subprocess.Popen([sys.executable, str(ROOT / "run.py"), *TINY, f"paths.cache_dir={cache_dir}", "stop_after=trajectories", f"name=job{i}"],
                         cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)  # fmt: skip
        for i in range(n)
    ]
    logs = [p.communicate(timeout=900)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs), logs[0][-3000:]
    folders = sorted(p.parent for p in (tmp_path / "outputs").glob("*/*/metrics.json"))
    assert len(folders) == n  # one folder each, even when started in the same second
    names = set()
    for folder in folders:
        config, metrics = (folder / "config.yaml").read_text(), json.loads((folder / "metrics.json").read_text())
        name = next(line.split(":", 1)[1].strip() for line in config.splitlines() if line.startswith("name:"))
        names.add(name)
        assert metrics["run/status"] == "finished"
        assert (folder / "run.log").read_text().count("questions: pool 8") == 1  # one run's log, not several interleaved
    assert names == {f"job{i}" for i in range(n)}
    # every sample exactly once, however the jobs interleaved on the cache's locks
    for key, recs in _samples(Path(cache_dir)).items():
        ids = [(r["q"], r["i"]) for r in recs]
        assert len(ids) == len(set(ids)), key
    made = sum(json.loads((f / "metrics.json").read_text())["generation/new_samples"] for f in folders)
    assert made == sum(len(r) for r in _samples(Path(cache_dir)).values())  # nothing generated twice


def test_two_runs_launched_into_one_folder_at_once_leave_the_winners_record_alone(tmp_path, cache_dir):
    """Two launches into the same new folder at the same moment, each with its own overrides: one
    runs, the other is refused in one line (exit 2) before it writes anything there, so Hydra's
    .hydra/ files, the config and the log in the folder are the winner's alone. Three rounds."""
    mine = {"a": ["name=a", "diversity=random"], "b": ["name=b", "corpus.seed=7"]}
    for round_ in range(3):
        out = tmp_path / f"run{round_}"
        base = [sys.executable, str(ROOT / "run.py"), "logger=none", f"paths.cache_dir={cache_dir}", "stop_after=questions", f"hydra.run.dir={out}"]
        procs = {k: subprocess.Popen([*base, *v], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for k, v in mine.items()}
        done = {k: (*p.communicate(timeout=300), p.returncode) for k, p in procs.items()}
        winners = [k for k, (_, _, rc) in done.items() if rc == 0]
        assert len(winners) == 1, {k: (rc, err[-1500:]) for k, (_, err, rc) in done.items()}
        (win,) = winners
        (lose,) = set(mine) - {win}
        _, err, rc = done[lose]
        assert rc == 2 and len(err.splitlines()) == 1, err[-2000:]
        assert err.startswith(f"error: hydra.run.dir={out}: this folder already holds the record of another run"), err
        overrides = yaml.safe_load((out / ".hydra" / "overrides.yaml").read_text())
        assert [o for o in overrides if o.startswith(("name=", "diversity=", "corpus.seed="))] == mine[win]
        assert yaml.safe_load((out / ".hydra" / "config.yaml").read_text())["name"] == win
        record = yaml.safe_load((out / "config.yaml").read_text())
        assert record["name"] == win and (record["diversity"]["selector"] == "random") == (win == "a")
        assert (record["corpus"]["seed"] == 7) == (win == "b")
        assert json.loads((out / ".ded-run.json").read_text())["pid"] == procs[win].pid
        assert "error" not in (out / "run.log").read_text()  # the refused launch wrote nothing into the winner's log


def _fresh_cache(tmp_path: Path, model_cache: str, name: str) -> str:
    d = tmp_path / name
    d.mkdir()
    (d / "models").symlink_to(Path(model_cache) / "models", target_is_directory=True)
    return str(d)


def _started(cache: Path, pick) -> bool:
    """A generation key of the kind `pick` chooses has been opened (its meta.json is written when
    its generation starts), and a moment has passed: the run is inside that stage."""
    metas = [m for m in cache.glob("samples/*/meta.json") if pick(json.loads(m.read_text()))]
    return bool(metas) and time.time() - metas[0].stat().st_mtime > 1.0


STAGE_REACHED = {  # stage -> a predicate on the cache folder that says the run is inside it
    "passrate": lambda c: _started(c, lambda m: not m["prefix"] and not str(m["backend"]["model"]).startswith("ckpt:")),
    "training": lambda c: any(c.glob("stages/train/*.tmp")),
    "evaluation": lambda c: _started(c, lambda m: str(m["backend"]["model"]).startswith("ckpt:")),
}


@pytest.mark.slow  # four tiny runs, about 4 minutes on a quiet 2-core machine (8 under load)
def test_sigkill_in_each_stage_resumes_to_the_uninterrupted_numbers(tmp_path, model_cache):
    args = [*TINY, "analysis.enabled=false", "eval.size=3"]
    ref_cache = _fresh_cache(tmp_path, model_cache, "ref_cache")
    ref = subprocess.run([sys.executable, str(ROOT / "run.py"), *args, f"paths.cache_dir={ref_cache}", f"hydra.run.dir={tmp_path / 'ref'}"],
                         cwd=tmp_path, capture_output=True, text=True, timeout=900)  # fmt: skip
    assert ref.returncode == 0, ref.stderr[-3000:]
    cache = Path(_fresh_cache(tmp_path, model_cache, "cache"))
    for stage, reached in STAGE_REACHED.items():
        proc = subprocess.Popen([sys.executable, str(ROOT / "run.py"), *args, f"paths.cache_dir={cache}", f"hydra.run.dir={tmp_path / ('killed_' + stage)}"],
                                cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
        deadline = time.time() + 600
        while time.time() < deadline and proc.poll() is None and not reached(cache):
            time.sleep(0.05)
        assert proc.poll() is None, f"the run ended before it reached {stage}"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    done = subprocess.run([sys.executable, str(ROOT / "run.py"), *args, f"paths.cache_dir={cache}", f"hydra.run.dir={tmp_path / 'resumed'}"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=900)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    a = json.loads((tmp_path / "ref" / "metrics.json").read_text())
    b = json.loads((tmp_path / "resumed" / "metrics.json").read_text())
    volatile = ("seconds", "time/", "memory/", "peak_rss_gb", "peak_gpu_gb", "tokens_per_s", "new_samples", "new_tokens", "train/cached",
                "_path")  # where, when, how fast and how much memory: this run's own; every number of the science must match
    same = {k: v for k, v in a.items() if not any(s in k for s in volatile)}
    assert {k: b.get(k) for k in same} == same  # the same numbers as the run that was never killed
    for key, recs in _samples(cache).items():  # no sample twice, none torn
        ids = [(r["q"], r["i"]) for r in recs]
        assert len(ids) == len(set(ids)), key
    assert not list(cache.glob("stages/train/*.tmp"))  # the killed training left nothing half-published


def test_sigterm_in_training_ends_the_run_cleanly_and_says_so(tmp_path, model_cache):
    """What SLURM sends at a time limit: the run stops within seconds, exit status 143, its record
    says interrupted with the signal and the stage, its log says how to resume, no half-published
    checkpoint is left; a second run of the same command resumes (the SIGKILL test checks the numbers)."""
    cache = Path(_fresh_cache(tmp_path, model_cache, "cache"))
    out = tmp_path / "term"
    proc = subprocess.Popen([sys.executable, str(ROOT / "run.py"), *TINY, "analysis.enabled=false", "eval.size=3",
                             f"paths.cache_dir={cache}", f"hydra.run.dir={out}"],
                            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    deadline = time.time() + 600
    while time.time() < deadline and proc.poll() is None and not STAGE_REACHED["training"](cache):
        time.sleep(0.05)
    assert proc.poll() is None, "the run ended before training"
    t0 = time.time()
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, err[-3000:]
    assert time.time() - t0 < 60
    record = json.loads((out / "metrics.json").read_text())
    assert record["run/status"] == "interrupted"
    assert (record["run/interrupted_signal"], record["run/interrupted_stage"]) == ("SIGTERM", "training")
    assert "interrupted by SIGTERM during the training stage" in (out / "run.log").read_text()
    assert "Traceback" not in err
    assert not list(cache.glob("stages/train/*.tmp"))  # nothing half-published
