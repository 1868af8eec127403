"""ded.reporting.summary: every sweep ends with a table, its failed jobs and why, and a figure."""

import csv
import json
import logging
import os
import re
import subprocess
import sys

import pytest
import yaml
from omegaconf import OmegaConf

from conftest import ROOT
from ded.reporting.summary import SweepSummary, summarize


def job(root, name, overrides, metrics=None, *, k=4, seed=0, log=None):
    d = root / name
    (d / ".hydra").mkdir(parents=True)
    (d / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    (d / "config.yaml").write_text(yaml.safe_dump({"eval": {"k": k}, "train": {"seed": seed}, "generation": {"seed": 0}}))
    if metrics is not None:
        (d / "metrics.json").write_text(json.dumps(metrics))
    if log is not None:
        (d / "run.log").write_text(log)
    return d


def summary_md(sweep_dir) -> str:
    """summary.md with runs of spaces made one (to_markdown pads cells to the column's width)."""
    return re.sub(" +", " ", (sweep_dir / "summary.md").read_text())


def record(value, se, *, k=4, **extra):
    return {f"eval/heldout/trained/avg@{k}": value, f"eval/heldout/trained/avg@{k}_se": se, f"eval/heldout/delta_avg@{k}": value - 0.1,
            "corpus/examples": 32, "train/train_loss": 0.75, "run/status": "finished", **extra}  # fmt: skip


def test_summary_of_hand_made_jobs_lists_failed_ones_with_their_reason(tmp_path):
    job(tmp_path, "0", ["diversity=levenshtein", "corpus.size=32", "debug=tiny"], record(0.5, 0.1))
    job(tmp_path, "1", ["diversity=random", "corpus.size=32", "debug=tiny"], record(0.25, 0.05))
    job(tmp_path, "2", ["diversity=none", "corpus.size=64", "debug=tiny"], record(0.375, 0.08, k=8), k=8)
    job(tmp_path, "3", ["diversity=random", "corpus.size=64", "debug=tiny"], {"run/status": "failed", "corpus/examples": 64},
        log="[2026-01-01 10:00:00,000][ded][INFO] - corpus: 64 examples\nerror: eval.k: must be > 0, got 0\n")  # fmt: skip
    job(tmp_path, "4", ["diversity=levenshtein", "corpus.size=64", "debug=tiny"])  # no metrics.json, no log
    table = summarize(tmp_path, description="Diversity ablation")

    md = summary_md(tmp_path)
    assert md.startswith("# Diversity ablation")
    failed = md.split("## Failed jobs")[1]
    assert "`3` (diversity=random corpus.size=64 debug=tiny): **failed**: eval.k: must be > 0, got 0" in failed
    assert "`4` (diversity=levenshtein corpus.size=64 debug=tiny): **no record**: no metrics.json and no log" in failed
    assert "`0`" not in failed and "`2`" not in failed

    with open(tmp_path / "summary.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["job"] for r in rows] == ["0", "1", "2", "3"]  # one row per job holding a record
    assert list(rows[0])[:4] == ["job", "diversity", "corpus.size", "status"]  # swept keys only (debug=tiny is in every job)
    assert [(r["diversity"], r["corpus.size"], r["status"]) for r in rows] == [
        ("levenshtein", "32", "finished"), ("random", "32", "finished"), ("none", "64", "finished"), ("random", "64", "failed")]
    for r, m in zip(rows[:3], [record(0.5, 0.1), record(0.25, 0.05), record(0.375, 0.08, k=8)]):
        k = 8 if r["job"] == "2" else 4  # the @k columns hold each run's own k
        assert float(r["eval/heldout/trained/avg@k"]) == m[f"eval/heldout/trained/avg@{k}"]
        assert float(r["eval/heldout/trained/avg@k_se"]) == m[f"eval/heldout/trained/avg@{k}_se"]
        assert float(r["eval/heldout/delta_avg@k"]) == m[f"eval/heldout/delta_avg@{k}"]
        assert float(r["corpus/examples"]) == 32 and float(r["train/train_loss"]) == 0.75
    assert rows[3]["eval/heldout/trained/avg@k"] == "" and rows[3]["corpus/examples"] == "64"
    assert "corpus/diversity/levenshtein/char" not in rows[0]  # a default metric no job recorded is left out
    assert list(table["job"]) == ["0", "1", "2", "3"]
    assert "| 0 | levenshtein | 32 | finished | 0.5 | 0.1 |" in md

    with open(tmp_path / "runs.csv") as f:
        assert len(list(csv.DictReader(f))) == 4
    png = tmp_path / "summary.png"
    assert png.stat().st_size > 10_000 and png.read_bytes()[:4] == b"\x89PNG"
    assert "![eval/heldout/trained/avg@k](summary.png)" in md and "each run" in md  # no seed axis: the runs' own s.e.


def test_summary_md_shows_hydra_job_folders_by_number_and_the_csv_keeps_the_folder(tmp_path):
    job(tmp_path, "0_corpus.size=32,diversity=levenshtein", ["diversity=levenshtein", "corpus.size=32"], record(0.5, 0.1))
    job(tmp_path, "1_corpus.size=32,diversity=random", ["diversity=random", "corpus.size=32"], record(0.25, 0.05))
    summarize(tmp_path)
    md = summary_md(tmp_path)
    assert "| 0 | levenshtein | finished |" in md and "| 1 | random | finished |" in md and "diversity=levenshtein |" not in md
    with open(tmp_path / "summary.csv") as f:
        assert [r["job"] for r in csv.DictReader(f)] == ["0_corpus.size=32,diversity=levenshtein", "1_corpus.size=32,diversity=random"]


def test_a_value_holding_a_pipe_stays_one_cell(tmp_path):
    """A swept value with "|" (a Hydra choice string, an arm label) is escaped, so every row of the
    markdown table has as many cells as its header."""
    job(tmp_path, "0", ["teacher.system_prompt=a|b", "corpus.size=32"], record(0.5, 0.1))
    job(tmp_path, "1", ["teacher.system_prompt=plain", "corpus.size=32"], record(0.25, 0.05))
    summarize(tmp_path)
    md = summary_md(tmp_path)
    rows = [line for line in md.split("## Failed jobs")[0].splitlines() if line.startswith("|")]
    assert len(rows) == 4 and len({len(re.split(r"(?<!\\)\|", line)) for line in rows}) == 1
    assert r"| 0 | a\|b | finished |" in md


def test_a_seed_axis_is_aggregated_per_configuration(tmp_path):
    # levenshtein seeds 0, 1, 2 -> 0.5, 0.6, 0.7: mean 0.6, se 0.1 / sqrt(3) = 0.0577, t(0.975, 2) = 4.303 -> [0.352, 0.848]
    # random seeds 0, 1, 2 -> 0.4, 0.4, 0.4: mean 0.4, se 0
    values = {"levenshtein": [0.5, 0.6, 0.7], "random": [0.4, 0.4, 0.4]}
    n = 0
    for div, vs in values.items():
        for seed, v in enumerate(vs):
            job(tmp_path, str(n), [f"diversity={div}", f"train.seed={seed}"], record(v, 0.1), seed=seed)
            n += 1
    summarize(tmp_path, metrics=["eval/heldout/trained/avg@k"])
    md = summary_md(tmp_path)
    per_config = md.split("## Per configuration, over `train.seed`")[1].split("## Failed jobs")[0]
    assert "| levenshtein | 0.6 ± 0.058 | 3 | [0.352, 0.848] |" in per_config
    assert "| random | 0.4 ± 0 | 3 | no variation |" in per_config  # not a zero-width [0.4, 0.4]: comparisons.md has the exact bound
    assert "mean over train.seed" in md and (tmp_path / "summary.png").stat().st_size > 10_000
    with open(tmp_path / "summary.csv") as f:
        header = next(csv.reader(f))
    assert header == ["job", "diversity", "train.seed", "status", "eval/heldout/trained/avg@k", "overrides"]


def _hydra_config(sweep_dir, task):
    return OmegaConf.create({"hydra": {"sweep": {"dir": str(sweep_dir)}, "overrides": {"task": task}, "job": {"num": 0},
                                       "sweeper": {"_target_": "hydra._internal.core_plugins.basic_sweeper.BasicSweeper", "params": None}}})  # fmt: skip


def test_callback_writes_at_multirun_end_and_never_raises(tmp_path, monkeypatch, caplog):
    job(tmp_path, "0", ["diversity=random"], record(0.5, 0.1))
    cb = SweepSummary()
    cfg = _hydra_config(tmp_path, ["diversity=random,levenshtein"])
    cb.on_multirun_start(cfg)
    assert cb.planned == [["diversity=random"], ["diversity=levenshtein"]]
    with caplog.at_level(logging.INFO, logger="ded.reporting.summary"):
        cb.on_multirun_end(cfg)
    assert (tmp_path / "summary.md").exists() and f"sweep summary: {tmp_path / 'summary.md'}" in caplog.text
    written = (tmp_path / "summary.md").stat().st_mtime_ns
    cb._at_exit()  # after a normal end the exit hook does nothing more
    assert (tmp_path / "summary.md").stat().st_mtime_ns == written
    assert cb._not_started() == [["diversity=levenshtein"]]

    def broken(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr("ded.reporting.summary.summarize", broken)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="ded.reporting.summary"):
        cb._write("")  # a summary that cannot be written: one warning, no exception
    assert "not written (OSError: disk full)" in caplog.text and "python -m ded.reporting.summary" in caplog.text


def test_a_real_multirun_with_a_failing_job_ends_with_its_summary(tmp_path):
    """run.py -m with three arms that all pass the sweep's preflight, where job 1 still stops on a user
    error when it runs (its folder holds another run's record): the sweep goes on to job 2, exits 2,
    and the summary lists both finished jobs and names the failed one with its error line."""
    sweep = tmp_path / "sweep"
    (sweep / "1").mkdir(parents=True)
    (sweep / "1" / ".ded-run.json").write_text('{"pid": 1}')
    p = subprocess.run(
        [sys.executable, str(ROOT / "run.py"), "-m", "debug=tiny", "stop_after=questions", "logger=none",
         f"paths.cache_dir={tmp_path / 'cache'}", "corpus.size=3,5,4",
         f"hydra.sweep.dir={sweep}", "hydra.sweep.subdir=${hydra.job.num}"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300, env={**os.environ, "WANDB_MODE": "offline"},
    )  # fmt: skip
    assert p.returncode == 2, p.stderr[-3000:]  # the failed job sets the sweep's exit status
    assert f"sweep summary: {sweep / 'summary.md'}" in p.stdout + p.stderr and "Traceback" not in p.stderr
    assert "1 job(s) of the sweep stopped on the errors above" in p.stderr
    md = summary_md(sweep)
    assert "| 0 | 3 | finished |" in md and "| 2 | 4 | finished |" in md  # job 2 ran after job 1 stopped
    failed = md.split("## Failed jobs")[1]
    assert "- `1` (debug=tiny stop_after=questions logger=none" in failed
    assert "already holds the record of another run" in failed and "not started" not in failed
    with open(sweep / "summary.csv") as f:
        rows = list(csv.DictReader(f))
    assert [(r["job"], r["corpus.size"], r["status"]) for r in rows] == [("0", "3", "finished"), ("2", "4", "finished")]


def test_a_failed_jobs_reason_is_the_exception_its_record_holds(tmp_path):
    """A real multirun whose second arm reads a pool with a bad row: the pipeline fails in the
    questions stage, its metrics.json holds the exception's message as run/error, and the summary
    gives exactly that message as the reason, also once its run.log is gone (nothing scraped)."""
    from conftest import compose
    from ded.data.pools import PoolError, load_pool

    good, bad = tmp_path / "good.jsonl", tmp_path / "bad.jsonl"
    good.write_text("".join(json.dumps({"question": f"What is {i} + {i}?", "answer": f"#### {2 * i}"}) + "\n" for i in range(40)))
    bad.write_text(json.dumps({"question": "What is 1 + 1?", "answer": "#### 2"}) + "\n" + json.dumps({"question": "no answer"}) + "\n")
    with pytest.raises(PoolError) as raised:  # the exception, reproduced by the pool reader itself
        load_pool(OmegaConf.to_container(compose(["corpus=gsm8k", f"corpus.pools.0.source={bad}"]).corpus.pools[0]))
    sweep = tmp_path / "sweep"
    p = subprocess.run(
        [sys.executable, str(ROOT / "run.py"), "-m", "debug=tiny", "stop_after=questions", "logger=none", f"paths.cache_dir={tmp_path / 'cache'}",
         "corpus=gsm8k", f"corpus.pools.0.source={good},{bad}", f"hydra.sweep.dir={sweep}", "hydra.sweep.subdir=${hydra.job.num}"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300, env={**os.environ, "WANDB_MODE": "offline"},
    )  # fmt: skip
    assert p.returncode == 2, p.stderr[-3000:]
    record = json.loads((sweep / "1" / "metrics.json").read_text())
    assert record["run/status"] == "failed" and record["run/error"] == str(raised.value)
    (sweep / "1" / "run.log").unlink()  # the reason comes from the record, not from the log
    summarize(sweep)
    failed = (sweep / "summary.md").read_text().split("## Failed jobs")[1]
    assert f"corpus.pools.0.source={bad}): **failed**: {raised.value}\n" in failed and "`0`" not in failed


def test_a_bad_arm_stops_the_sweep_before_any_job_starts(tmp_path):
    """A value validate() rejects is found by the sweep's preflight: no job runs, no summary is written."""
    sweep = tmp_path / "sweep"
    p = subprocess.run(
        [sys.executable, str(ROOT / "run.py"), "-m", "debug=tiny", "stop_after=questions", "logger=none",
         f"paths.cache_dir={tmp_path / 'cache'}", "corpus.size=3,-3,4", f"hydra.sweep.dir={sweep}"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300, env={**os.environ, "WANDB_MODE": "offline"},
    )  # fmt: skip
    assert p.returncode == 2 and "Traceback" not in p.stderr
    assert "corpus.size: must be > 0 (or null: no cap), got -3" in p.stderr and "#1" in p.stderr
    assert "1 of 3 jobs cannot run here; nothing was started" in p.stderr and not sweep.exists()


def test_a_job_that_raises_gets_its_traceback_in_its_own_log(tmp_path):
    """Hydra 1.3 keeps a failed job's exception out of its run.log; the callback writes it there,
    so the summary can say why the job failed."""
    from hydra.core.utils import JobReturn, JobStatus

    from ded.reporting.results import error_line

    handler = logging.FileHandler(tmp_path / "run.log")
    logging.getLogger().addHandler(handler)
    try:
        try:
            raise RuntimeError("CUDA out of memory in training")
        except RuntimeError as e:
            ret = JobReturn(status=JobStatus.FAILED, _return_value=e)
        SweepSummary().on_job_end(OmegaConf.create({}), ret)
        SweepSummary().on_job_end(OmegaConf.create({}), JobReturn(status=JobStatus.COMPLETED, _return_value=0.5))
    finally:
        logging.getLogger().removeHandler(handler)
        handler.close()
    text = (tmp_path / "run.log").read_text()
    assert "job failed: RuntimeError: CUDA out of memory in training" in text and "Traceback" in text
    assert error_line(tmp_path) == "RuntimeError: CUDA out of memory in training"
