"""Multirun sweeps share the sample cache: only the first job generates; every sweep ends with its summary."""

import csv
import json
import subprocess
import sys

import pytest
import yaml

from conftest import ROOT


def _jobs(sweep_dir):
    """(overrides, metrics) of each job, in job-number order (folders are `<num>_<overrides>`)."""
    out = {}
    for m in sweep_dir.glob("*/metrics.json"):
        overrides = yaml.safe_load((m.parent / ".hydra" / "overrides.yaml").read_text())
        out[int(m.parent.name.split("_")[0])] = (overrides, json.loads(m.read_text()))
    return [out[k] for k in sorted(out)]


def test_sweep_generates_once_and_ends_with_its_summary(tiny_sweep):
    """The session's tiny sweep (conftest.tiny_sweep: diversity=levenshtein,random x train.seed=1,2):
    only job 0 generates; every other job, whatever its selection or training seed, reuses the
    pass-rate, teacher and base-eval samples; the SweepSummary callback wrote the summary."""
    sweep = tiny_sweep / "sweep1"
    jobs = _jobs(sweep)
    assert len(jobs) == 4
    first = jobs[0][1]
    assert first["generation/teacher/new_samples"] > 0 and first["generation/student/new_samples"] == 16
    for overrides, m in jobs[1:]:
        assert m["generation/new_samples"] == 0, overrides
        assert m["generation/teacher/new_samples"] == 0 and m["generation/student/new_samples"] == 0, overrides
        assert m["eval/heldout/base/new_samples"] == 0, overrides  # the base student's eval is shared too
    # The SweepSummary callback (conf/hydra/default.yaml) summarised the sweep: one row per job,
    # its swept overrides as columns, the metrics as recorded (avg@k: the run's avg@<eval.k>).
    with open(sweep / "summary.csv") as f:
        rows = [r for r in csv.DictReader(f) if r.get("status")]
    assert [(r["diversity"], r["train.seed"], r["status"]) for r in rows] == [
        ("levenshtein", "1", "finished"), ("levenshtein", "2", "finished"), ("random", "1", "finished"), ("random", "2", "finished")]  # fmt: skip
    for r, (_, m) in zip(rows, jobs):
        k = m["eval/heldout/trained/k"]
        assert float(r["eval/heldout/trained/avg@k"]) == m[f"eval/heldout/trained/avg@{k}"]
        assert float(r["eval/heldout/delta_avg@k"]) == m[f"eval/heldout/delta_avg@{k}"]
        assert int(r["corpus/examples"]) == m["corpus/examples"]
    assert "## Failed jobs\n\nNone." in (sweep / "summary.md").read_text()
    assert (sweep / "summary.png").stat().st_size > 10_000 and (sweep / "runs.csv").exists()


def test_pool_growth_and_a_smaller_corpus_generate_only_the_new_questions(tiny_sweep, sweep_cache, tmp_path):
    """Growing the pool 8 -> 12 generates samples for the 4 new questions only; corpus.size picks
    among the cached samples (a smaller corpus regenerates nothing)."""
    first = _jobs(tiny_sweep / "sweep1")[0][1]
    grown = tmp_path / "grown"
    p = subprocess.run(
        [sys.executable, str(ROOT / "run.py"), "debug=tiny", "logger=none", f"paths.cache_dir={sweep_cache}",
         "corpus.pool_size=12", "corpus.size=3", "stop_after=curation", f"hydra.run.dir={grown}"],
        cwd=tmp_path, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert p.returncode == 0, p.stderr[-3000:]
    g = json.loads((grown / "metrics.json").read_text())
    assert g["generation/student/new_samples"] == 4 * 2  # 4 new questions x k=2
    new_kept = g["passrate/pool/kept"] - first["passrate/pool/kept"]
    assert g["generation/teacher/new_samples"] == new_kept * 2  # n=2 per newly kept question
    assert g["corpus/examples"] == 3


@pytest.mark.slow
def test_every_experiment_runs(cache_dir, tmp_path):
    """`run.py -m experiment=glob(*)` with debug=tiny under it: every CPU experiment composes and runs (paper_* need
    GPUs). An experiment's own values win over debug's (a multi-step teacher needs its token budget), so this takes
    about 14 minutes on 2 cores (measured: 844 s), half of it code_cpu."""
    p = subprocess.run(
        [sys.executable, str(ROOT / "run.py"), "-m", "experiment=glob(*,exclude=paper_*)", "debug=tiny", "logger=none",
         f"paths.cache_dir={cache_dir}", f"hydra.sweep.dir={tmp_path / 'exp'}", "hydra.sweep.subdir=${hydra.job.num}"],
        cwd=tmp_path, capture_output=True, text=True, timeout=1800,
    )
    assert p.returncode == 0, p.stderr[-3000:]
    jobs = _jobs(tmp_path / "exp")
    assert len(jobs) == len([p for p in (ROOT / "conf" / "experiment").glob("*.yaml") if not p.stem.startswith("paper_")])
    assert all(m["run/status"] == "finished" for _, m in jobs)
