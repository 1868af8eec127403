"""End-to-end runs of `python run.py` in subprocesses: the run record, W&B offline, resume."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import ROOT

TINY = ["debug=tiny", "hydra.job.chdir=false"]


def _record(out_dir: Path) -> dict:
    return json.loads((out_dir / "metrics.json").read_text())


def test_tiny_run_writes_record_and_wandb_offline(cache_dir, tmp_path):
    out = tmp_path / "run1"
    p = subprocess.run(
        [sys.executable, str(ROOT / "run.py"), *TINY, f"paths.cache_dir={cache_dir}", f"hydra.run.dir={out}"],
        cwd=tmp_path, capture_output=True, text=True, timeout=600,
    )
    assert p.returncode == 0, p.stderr[-3000:]
    assert "held-out avg@2" in p.stdout and "base" in p.stdout and "trained" in p.stdout
    m = _record(out)
    assert m["run/status"] == "finished"
    assert m["generation/teacher/new_samples"] == 16 and m["generation/student/new_samples"] == 16
    assert 0 <= m["eval/heldout/base/avg@2"] <= 1 and 0 <= m["eval/heldout/trained/avg@2"] <= 1
    assert m["corpus/examples"] >= 1 and m["train/steps"] >= 1
    assert m["analysis/corpus/student_entropy"] > 0
    # The PCA shifts are what their logged points say: the centroid distance in the reference's std units, > 0 after training.
    points = [json.loads(x) for x in (out / "tables" / "analysis_pca_points.jsonl").read_text().splitlines()]
    for comparison in ("corpus_vs_own", "trained_vs_base"):
        ref = np.array([[r["pc1"], r["pc2"]] for r in points if r["comparison"] == comparison and r["reference"]])
        other = np.array([[r["pc1"], r["pc2"]] for r in points if r["comparison"] == comparison and not r["reference"]])
        shift = float(np.linalg.norm((other.mean(0) - ref.mean(0)) / ref.std(0, ddof=1)))
        assert shift > 0 and m[f"analysis/pca_shift/{comparison}"] == pytest.approx(shift, rel=1e-6), comparison
    for f in ["config.yaml", "corpus.jsonl", "plots/passrate_histogram.png", "plots/eval_accuracy_by_level.png", "plots/train_curves.png",
              "plots/analysis_pca_corpus_vs_own.png", "plots/analysis_pca_trained_vs_base.png"]:
        assert (out / f).stat().st_size > 0, f
    corpus = [json.loads(x) for x in (out / "corpus.jsonl").read_text().splitlines()]
    assert len(corpus) == m["corpus/examples"] and all("\\boxed" in e["response"] for e in corpus)
    # The W&B offline run holds the logged plot and the same metric names.
    runs = list((out / "wandb").glob("offline-run-*"))
    assert len(runs) == 1 and list(runs[0].glob("*.wandb"))
    pngs = [str(p.relative_to(runs[0] / "files" / "media" / "images")) for p in runs[0].rglob("media/images/**/*.png")]
    assert any(n.startswith("eval") for n in pngs) and any(n.startswith("passrate") for n in pngs)
    # Offline runs keep their records in the .wandb protobuf log: the metric names are there verbatim.
    log_bytes = next(runs[0].glob("*.wandb")).read_bytes()
    for name in ["eval/heldout/trained/avg@2", "eval/heldout/base/avg@2", "generation/teacher/new_samples", "train/grad_norm", "train/train_loss"]:
        assert name.encode() in log_bytes, name

    assert "eval/heldout/trained/answer_entropy" not in m  # off by default

    # The same config again: nothing generated, the checkpoint reused, the same numbers; and each model's answer entropy.
    out2 = tmp_path / "run2"
    p = subprocess.run(
        [sys.executable, str(ROOT / "run.py"), *TINY, "logger=none", "eval.answer_entropy=4", f"paths.cache_dir={cache_dir}", f"hydra.run.dir={out2}"],
        cwd=tmp_path, capture_output=True, text=True, timeout=600,
    )
    assert p.returncode == 0, p.stderr[-3000:]
    m2 = _record(out2)
    assert m2["generation/new_samples"] == 0 and m2["train/cached"] is True
    assert m2["eval/heldout/trained/new_samples"] == 0 and m2["eval/heldout/base/new_samples"] == 0
    assert m2["eval/heldout/trained/avg@2"] == m["eval/heldout/trained/avg@2"]
    base_ent, trained_ent = m2["eval/heldout/base/answer_entropy"], m2["eval/heldout/trained/answer_entropy"]
    assert base_ent > 0 and trained_ent > 0 and base_ent != trained_ent  # two models, each on its own answers
    assert m2["eval/heldout/final/answer_entropy"] == trained_ent
    assert not (out2 / "wandb").exists()


def _teacher_file(cache_dir: str) -> Path | None:
    for meta in Path(cache_dir, "samples").glob("*/meta.json"):
        if json.loads(meta.read_text())["prefix"]:  # the few-shot teacher's key
            f = meta.parent / "samples.jsonl"
            return f if f.exists() else None
    return None


@pytest.mark.slow  # a SIGKILL mid-generation and a resume, ~3 min on 2 cores (the faults suite's SIGKILL-in-each-stage test covers it too)
def test_sigkill_during_teacher_generation_resumes_without_loss(cache_dir, tmp_path):
    args = [sys.executable, str(ROOT / "run.py"), *TINY, "logger=none", f"paths.cache_dir={cache_dir}",
            "teacher.batch_size=2", "stop_after=trajectories"]  # resumption is a generation matter: later stages are not needed
    proc = subprocess.Popen([*args, f"hydra.run.dir={tmp_path / 'killed'}"], cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 400
    try:
        while time.time() < deadline:
            f = _teacher_file(cache_dir)
            if f is not None and len(f.read_bytes().splitlines()) >= 4:
                break
            assert proc.poll() is None, "the run ended before it could be killed"
            time.sleep(0.05)
        else:
            pytest.fail("teacher generation never started")
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    before = [json.loads(x) for x in f.read_bytes().splitlines() if x.strip().endswith(b"}")]
    assert len(before) >= 4

    p = subprocess.run([*args, f"hydra.run.dir={tmp_path / 'resumed'}"], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    m = _record(tmp_path / "resumed")
    expected = m["passrate/pool/kept"] * 2  # kept questions x n=2
    assert len(before) < expected, "killed too late to test resumption"
    after = [json.loads(x) for x in f.read_text().splitlines()]
    keys = [(r["q"], r["i"]) for r in after]
    assert len(keys) == len(set(keys)) == expected, "a sample is missing or was generated twice"
    assert after[: len(before)] == before, "a completed sample was lost or rewritten"
    assert m["generation/teacher/new_samples"] == expected - len(before)
    assert m["generation/student/new_samples"] == 0  # the student's pass-rate samples were complete


def test_paper_recipe_on_a_cpu_machine_stops_before_any_work(tmp_path):
    """The GPU recipe composes, then stops at once naming the missing model and the offline config."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    t = time.time()
    p = subprocess.run(
        [sys.executable, str(ROOT / "run.py"), "experiment=paper_32b", "logger=none", f"paths.cache_dir={tmp_path / 'cache'}",
         f"hydra.run.dir={tmp_path / 'run'}"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300, env=env,
    )
    assert p.returncode != 0
    err = p.stderr
    assert "DeepSeek-R1-Distill-Qwen-32B" in err or "QwQ-32B" in err, err[-2000:]
    assert "smollm2" in err  # says which config runs offline
    assert not (tmp_path / "cache" / "samples").exists()  # nothing was generated
    assert time.time() - t < 120


def test_empty_corpus_says_why_and_keeps_the_rejects(cache_dir, tmp_path):
    """A teacher whose every trajectory is cut off: the run stops naming the drop reasons, and the
    rejected trajectories are in the run's rejects table for inspection."""
    out = tmp_path / "empty"
    p = subprocess.run(
        [sys.executable, str(ROOT / "run.py"), *TINY, "teacher.sampling.max_new_tokens=2", f"paths.cache_dir={cache_dir}", f"hydra.run.dir={out}"],
        cwd=tmp_path, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert p.returncode == 2 and "Traceback" not in p.stderr, p.stderr[-2000:]  # one line, as every bad input
    errors = [line for line in p.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "the corpus is empty" in errors[0] and "16 truncated" in errors[0], p.stderr[-2000:]
    rejects = [json.loads(x) for x in (out / "tables" / "filter_rejects.jsonl").read_text().splitlines()]
    assert sum(r["reason"] == "truncated" for r in rejects) == 16
