"""ded.reporting.results: run records as one table, and seed/question-level statistics checked by hand."""

import json
import math
import os
import re
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from ded.reporting.results import (aggregate, error_line, eval_record, load_runs, load_sweep, load_wandb_offline, newest_sweep, paired,
                                   paired_questions, read_record, run_history, run_row, run_table, sortable, wandb_row)  # fmt: skip

SORTABLE = re.compile(r"^[_a-zA-Z][_a-zA-Z0-9]*$")  # W&B's rule for metric names its UI sorts and filters on (docs.wandb.ai)

# The hand-made sweep: metric eval/heldout/trained/avg@<k> per (diversity, train.seed).
#   levenshtein: seeds 0, 1, 2 -> 0.5, 0.6, 0.7
#   random:      seeds 0, 1, 2, 3 -> 0.4, 0.45, 0.65, 0.5
#   none:        seed 0 -> 0.3, with eval.k=8 (all others k=4)
VALUES = {("levenshtein", 0): 0.5, ("levenshtein", 1): 0.6, ("levenshtein", 2): 0.7,
          ("random", 0): 0.4, ("random", 1): 0.45, ("random", 2): 0.65, ("random", 3): 0.5,
          ("none", 0): 0.3}  # fmt: skip
T975 = {2: 4.302653, 3: 3.182446, 4: 2.776445}  # Student t quantiles t(0.975, dof), from tables


def write_run(root, name, *, diversity, seed, k=4, value=None, status="finished", per_question=None, log=None, extra=None):
    d = root / name
    (d / ".hydra").mkdir(parents=True)
    overrides = [f"diversity={diversity}", f"train.seed={seed}", "debug=tiny"]
    (d / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    choices = {"diversity": diversity, "teacher": "smollm2_fewshot", "experiment": None, "hydra/launcher": "basic"}
    (d / ".hydra" / "hydra.yaml").write_text(yaml.safe_dump({"hydra": {"runtime": {"choices": choices}}}))
    config = {"teacher": {"name": "smollm2-135m-fewshot", "sampling": {"temperature": 0.5}},
              "diversity": {"metric": "levenshtein" if diversity == "levenshtein" else "none", "selector": "maxmin"},
              "corpus": {"size": 32, "levels": [1, 2]}, "train": {"seed": seed}, "eval": {"k": k}}  # fmt: skip
    (d / "config.yaml").write_text(yaml.safe_dump(config))
    metrics = {"corpus/examples": 32, "train/loss": 1.25}
    if value is not None:
        metrics.update({f"eval/heldout/trained/avg@{k}": value, f"eval/heldout/trained/avg@{k}_se": 0.05,
                        f"eval/heldout/delta_avg@{k}": value - 0.1, f"eval/heldout/trained/pass@{k}": 0.9,
                        "eval/heldout/trained/pass@1": value})  # fmt: skip
    if status is not None:
        metrics["run/status"] = status
    metrics.update(extra or {})
    (d / "metrics.json").write_text(json.dumps(metrics))
    if per_question is not None:
        (d / "eval.json").write_text(json.dumps({"results": {"heldout": {"trained": {f"avg@{k}": value, "per_question": per_question}}}}))
    if log is not None:
        (d / "run.log").write_text(log)
    return d


@pytest.fixture
def sweep(tmp_path):
    for i, ((div, seed), v) in enumerate(VALUES.items()):
        write_run(tmp_path, f"{i}_{div},{seed}", diversity=div, seed=seed, k=8 if div == "none" else 4, value=v)
    return tmp_path


def test_load_runs_columns_values_and_k_aliases(sweep):
    df = load_runs(sweep)
    assert len(df) == 8 and list(df.columns[:3]) == ["run_dir", "status", "overrides"]
    row = df[df["run_dir"].str.endswith("0_levenshtein,0")].iloc[0]
    assert row["status"] == "finished"
    assert row["overrides"] == ["diversity=levenshtein", "train.seed=0", "debug=tiny"]
    assert row["choice.diversity"] == "levenshtein" and row["choice.teacher"] == "smollm2_fewshot"
    assert "choice.hydra/launcher" not in df.columns  # Hydra's own groups are left out
    assert row["teacher.name"] == "smollm2-135m-fewshot" and row["teacher.sampling.temperature"] == 0.5
    assert row["diversity.metric"] == "levenshtein" and row["corpus.size"] == 32 and row["train.seed"] == 0 and row["eval.k"] == 4
    assert row["corpus.levels"] == [1, 2]  # lists stay values
    assert row["eval/heldout/trained/avg@4"] == 0.5 and row["corpus/examples"] == 32
    # k-free aliases from each row's own eval.k: the k=8 run lines up with the k=4 runs
    assert row["eval/heldout/trained/avg@k"] == 0.5 and row["eval/heldout/trained/avg@k_se"] == 0.05
    assert row["eval/heldout/delta_avg@k"] == pytest.approx(0.4) and row["eval/heldout/trained/pass@k"] == 0.9
    assert row["eval/heldout/trained/pass@1"] == 0.5 and "eval/heldout/trained/pass@k" in df.columns
    none = df[df["choice.diversity"] == "none"].iloc[0]
    assert none["eval.k"] == 8 and none["eval/heldout/trained/avg@k"] == 0.3 and none["eval/heldout/trained/avg@8"] == 0.3
    assert math.isnan(none["eval/heldout/trained/avg@4"])
    assert sorted(df["eval/heldout/trained/avg@k"]) == sorted(VALUES.values())
    # the summary train loss was renamed train/loss -> train/train_loss: older records get the new name too
    assert row["train/train_loss"] == 1.25
    # beside each k-free @k alias its sortable name (what the evaluation stage logs), from the run's own k
    assert row["eval_heldout_trained_avg_at_k"] == 0.5 and none["eval_heldout_trained_avg_at_k"] == 0.3
    assert row["eval_heldout_delta_avg_at_k"] == pytest.approx(0.4) and row["eval_heldout_trained_avg_at_k_se"] == 0.05
    assert all(SORTABLE.fullmatch(c) for c in df.columns if "_at_k" in c) and "eval_heldout_trained_pass_at_k" in df.columns


def test_status_failed_incomplete_and_finished_only(tmp_path):
    write_run(tmp_path, "0", diversity="random", seed=0, value=0.5)
    write_run(tmp_path, "1", diversity="random", seed=1, status=None, log="[2026-01-01 10:00:00,000][ded][INFO] - start\n"
              "[2026-01-01 10:00:01,000][ded][ERROR] - teacher.path: no such model\n")  # fmt: skip
    write_run(tmp_path, "2", diversity="random", seed=2, status=None)  # killed: no run/status, no error
    write_run(tmp_path, "3", diversity="random", seed=3, status="failed")
    df = load_runs(tmp_path)
    assert list(df["status"]) == ["finished", "failed", "incomplete", "failed"]
    assert list(load_runs(tmp_path, finished_only=True)["run_dir"]) == [str(tmp_path / "0")]
    assert error_line(tmp_path / "1") == "teacher.path: no such model"


def test_error_line_prefers_the_exception_that_ends_a_traceback(tmp_path):
    (tmp_path / "run.log").write_text(
        "[t][ded][ERROR] - job failed: ValueError: bad\nTraceback (most recent call last):\n  File \"x.py\", line 1, in f\n"
        "    raise ValueError('bad')\nValueError: bad\n[t][ded][INFO] - after\n")  # fmt: skip
    assert error_line(tmp_path) == "ValueError: bad"
    (tmp_path / "run.log").write_text("error: corpus.size: must be > 0, got -3\n")
    assert error_line(tmp_path) == "corpus.size: must be > 0, got -3"
    (tmp_path / "run.log").write_text("[t][ded][INFO] - all good\n")
    assert error_line(tmp_path) is None


def test_aggregate_against_hand_computed_values(sweep):
    df = load_runs(sweep)
    agg = aggregate(df, "eval/heldout/trained/avg@k", by="choice.diversity").set_index("choice.diversity")
    assert list(agg.index) == ["levenshtein", "random", "none"]  # the order of the runs
    lev = agg.loc["levenshtein"]
    # 0.5, 0.6, 0.7 -> mean 0.6; sd = sqrt((0.01 + 0 + 0.01) / 2) = 0.1; se = 0.1 / sqrt(3) = 0.057735
    # t(0.975, 2) = 4.302653 -> half-width 4.302653 * 0.057735 = 0.248414 -> [0.351586, 0.848414]
    assert lev["n"] == 3 and lev["mean"] == pytest.approx(0.6) and lev["se"] == pytest.approx(0.057735, abs=1e-6)
    assert lev["ci95_low"] == pytest.approx(0.351586, abs=1e-5) and lev["ci95_high"] == pytest.approx(0.848414, abs=1e-5)
    assert lev["seeds"] == [0, 1, 2]
    rnd = agg.loc["random"]
    # 0.4, 0.45, 0.65, 0.5 -> mean 0.5; squared deviations 0.01 + 0.0025 + 0.0225 + 0 = 0.035; sd = sqrt(0.035 / 3) = 0.108012
    # se = 0.108012 / 2 = 0.054006; t(0.975, 3) = 3.182446 -> half-width 0.171871
    assert rnd["n"] == 4 and rnd["mean"] == pytest.approx(0.5) and rnd["se"] == pytest.approx(0.054006, abs=1e-6)
    assert rnd["ci95_high"] - rnd["mean"] == pytest.approx(T975[3] * 0.054006, abs=1e-5)
    assert rnd["ci95_low"] == pytest.approx(0.5 - 0.171871, abs=1e-5)
    one = agg.loc["none"]  # one seed: a mean, no spread
    assert one["n"] == 1 and one["mean"] == 0.3 and all(math.isnan(one[c]) for c in ("se", "ci95_low", "ci95_high"))


def test_aggregate_counts_seeds_not_reruns_and_groups_by_several_columns(tmp_path):
    # levenshtein seed 0 run twice (0.5 and 0.7 -> 0.6 for that seed), seed 1 once (0.8):
    # two seeds 0.6, 0.8 -> mean 0.7, sd = sqrt(2 * 0.01 / 1) = 0.141421, se = 0.1, t(0.975, 1) = 12.706205
    for name, seed, v in [("0", 0, 0.5), ("1", 0, 0.7), ("2", 1, 0.8)]:
        write_run(tmp_path, name, diversity="levenshtein", seed=seed, value=v)
    agg = aggregate(load_runs(tmp_path), "eval/heldout/trained/avg@k", by=["choice.diversity", "corpus.size"])
    r = agg.iloc[0]
    assert (r["choice.diversity"], r["corpus.size"]) == ("levenshtein", 32)
    assert r["n"] == 2 and r["mean"] == pytest.approx(0.7) and r["se"] == pytest.approx(0.1)
    assert r["ci95_high"] == pytest.approx(0.7 + 12.706205 * 0.1, abs=1e-5)
    # without a seed column every run counts: 0.5, 0.7, 0.8 -> n 3, mean 0.666667
    per_run = aggregate(load_runs(tmp_path), "eval/heldout/trained/avg@k", by="choice.diversity", seed=None).iloc[0]
    assert per_run["n"] == 3 and per_run["mean"] == pytest.approx(2.0 / 3)


def test_paired_against_hand_computed_values(sweep):
    res = paired(load_runs(sweep), "eval/heldout/trained/avg@k", by="choice.diversity", a="random", b="levenshtein")
    # pairs by train.seed, b - a: seed 0: 0.5-0.4 = 0.1, seed 1: 0.6-0.45 = 0.15, seed 2: 0.7-0.65 = 0.05 (seed 3: random only)
    # mean 0.1; sd = sqrt((0 + 0.0025 + 0.0025) / 2) = 0.05; se = 0.05 / sqrt(3) = 0.028868
    # t(0.975, 2) = 4.302653 -> half-width 0.124211 -> [-0.024211, 0.224211]
    assert res["n"] == 3 and res["mean"] == pytest.approx(0.1) and res["se"] == pytest.approx(0.028868, abs=1e-6)
    assert res["ci95_low"] == pytest.approx(-0.024211, abs=1e-5) and res["ci95_high"] == pytest.approx(0.224211, abs=1e-5)
    assert res["unmatched"] == [3]
    assert res["diffs"] == pytest.approx({0: 0.1, 1: 0.15, 2: 0.05})
    assert (res["a"], res["b"], res["by"]) == ("random", "levenshtein", "choice.diversity")


def test_paired_questions_pairs_seed_and_question(tmp_path):
    pq = {("random", 0): {"q1": 0.5, "q2": 0.0, "q3": 1.0}, ("levenshtein", 0): {"q1": 0.75, "q2": 0.25, "q3": 1.0},
          ("random", 1): {"q1": 0.25, "q2": 0.5}, ("levenshtein", 1): {"q1": 0.5, "q2": 0.5, "q3": 0.25}}  # fmt: skip
    for i, ((div, seed), per_question) in enumerate(pq.items()):
        write_run(tmp_path, str(i), diversity=div, seed=seed, value=0.5, per_question=per_question)
    write_run(tmp_path, "9", diversity="random", seed=5, value=0.5)  # no eval.json: not in the frame passed below
    df = load_runs(tmp_path)
    res = paired_questions(df[df["train.seed"] < 5], by="choice.diversity", a="random", b="levenshtein")
    # (seed, question) pairs, b - a: (0,q1) 0.25, (0,q2) 0.25, (0,q3) 0, (1,q1) 0.25, (1,q2) 0; (1,q3) levenshtein only
    # mean 0.75 / 5 = 0.15; squared deviations 3 * 0.1^2 + 2 * 0.15^2 = 0.075; sd = sqrt(0.075 / 4) = 0.136931
    # se = 0.136931 / sqrt(5) = 0.061237; t(0.975, 4) = 2.776445 -> half-width 0.170021
    assert res["n"] == 5 and res["mean"] == pytest.approx(0.15) and res["se"] == pytest.approx(0.061237, abs=1e-6)
    assert res["ci95_low"] == pytest.approx(0.15 - 0.170021, abs=1e-5) and res["ci95_high"] == pytest.approx(0.15 + 0.170021, abs=1e-5)
    assert res["unmatched"] == [(1, "q3")] and res["on"] == ["train.seed", "question_id"]
    with pytest.raises(FileNotFoundError, match="eval.json"):
        paired_questions(df, by="choice.diversity", a="random", b="levenshtein")


def test_wandb_runs_get_the_same_columns_as_local_records(tmp_path):
    d = write_run(tmp_path, "0", diversity="random", seed=1, value=0.25)
    local = read_record(d)
    config = {**yaml.safe_load((d / "config.yaml").read_text()), "overrides": ["diversity=random", "train.seed=1", "debug=tiny"],
              "choices": {"diversity": "random", "teacher": "smollm2_fewshot", "experiment": None}}  # fmt: skip
    summary = {**json.loads((d / "metrics.json").read_text()), "_runtime": 12.0, "_step": 3,
               "plots/train_loss": {"_type": "image-file", "path": "media/x.png"}}  # fmt: skip
    run = SimpleNamespace(config=config, summary_metrics=summary, state="finished", path=["me", "ded", "abc123"])
    remote = wandb_row(run)
    assert remote["run_dir"] == "me/ded/abc123"
    assert {k: v for k, v in remote.items() if k != "run_dir"} == {k: v for k, v in local.items() if k != "run_dir"}
    crashed = wandb_row(SimpleNamespace(config={}, summary_metrics={}, state="crashed", path=["me", "ded", "x"]))
    assert crashed["status"] == "failed"


def test_sortable_names_follow_the_wandb_rule():
    for name in ["eval/heldout/trained/avg@k", "eval/out_of_domain/delta_avg@k", "eval/math-500/base/avg@k_se", "eval/heldout/rl_minus_base_avg@k"]:
        assert SORTABLE.fullmatch(sortable(name)), name
    assert sortable("eval/heldout/trained/avg@k") == "eval_heldout_trained_avg_at_k"
    assert not SORTABLE.fullmatch("eval/heldout/trained/avg@k")  # why the sortable names exist


def test_curves_give_their_last_point_and_a_broken_history_is_left_out(tmp_path, caplog):
    d = write_run(tmp_path, "0", diversity="random", seed=0, value=0.5)
    (d / "history.jsonl").write_text('{"step": 1, "train/loss": 2.0, "train/grad_norm": 3.0}\n{"step": 2, "train/loss": 1.5}\n')
    row = read_record(d)
    assert row["train/loss"] == 1.25  # metrics.json's value wins over the curve's
    assert row["train/grad_norm"] == 3.0 and "step" not in row  # the curve's last value, as W&B's summary holds it
    (d / "history.jsonl").write_text('{"step": 1, "train/grad_norm": 3.0}\n{"step": 2, "train/gr')  # cut short by a crash
    assert "train/grad_norm" not in read_record(d) and "history.jsonl: unreadable" in caplog.text


def test_newest_sweep_and_load_sweep_errors(tmp_path, monkeypatch):
    for name, when in (("2026-01-01/a", 1_000_000_000), ("2026-01-02/b", 1_100_000_000), ("2025-12-31/c", 900_000_000)):
        write_run(tmp_path / "multirun" / name, "0", diversity="random", seed=0, value=0.5)
        (tmp_path / "multirun" / name / "multirun.yaml").write_text("{}\n")
        os.utime(tmp_path / "multirun" / name / "multirun.yaml", (when, when))
    assert newest_sweep(tmp_path / "multirun") == tmp_path / "multirun" / "2026-01-02" / "b"
    monkeypatch.chdir(tmp_path)
    assert list(load_sweep("local")["run_dir"]) == [str(Path("multirun/2026-01-02/b/0"))]  # one sweep, not all three
    with pytest.raises(FileNotFoundError, match="no sweep folder"):
        newest_sweep(tmp_path / "nothing")
    with pytest.raises(ValueError, match="needs project"):
        load_sweep("wandb", project="me/ded")
    with pytest.raises(ValueError, match="expected one of local, wandb-offline, wandb"):
        load_sweep("mlflow", tmp_path)


def test_offline_wandb_runs_give_the_same_tables_as_the_run_records(tiny_sweep):
    """The session's real tiny sweep, read both ways: the runs table (every column, every value but
    run_dir) and, per run, the logged tables, eval.json and curves."""
    import pandas as pd

    local, offline = load_runs(tiny_sweep), load_wandb_offline(tiny_sweep)
    assert len(local) == 6 and list(offline.columns) == list(local.columns)
    for a, b in zip(local["run_dir"], offline["run_dir"]):
        assert Path(b).parent == Path(a) / "wandb" and Path(b).name.startswith("offline-run-")
    pd.testing.assert_frame_equal(offline.drop(columns="run_dir"), local.drop(columns="run_dir"), check_dtype=False)
    assert (local["eval_heldout_trained_avg_at_k"] == local["eval/heldout/trained/avg@k"]).all()
    a, b = local["run_dir"].iloc[0], offline["run_dir"].iloc[0]
    assert run_row(b) == {**run_row(a), "run_dir": b}
    for name in ["corpus", "passrate/pool", "filter/rejects", "analysis/entropy_per_example", "analysis/pca_points", "eval/summary"]:
        t = run_table(a, name)
        assert len(t), name
        pd.testing.assert_frame_equal(run_table(b, name), t, check_dtype=False, obj=name)
    assert eval_record(b) == eval_record(a) and eval_record(a)["results"]["heldout"]["trained"]["per_question"]
    pd.testing.assert_frame_equal(run_history(b)[run_history(a).columns], run_history(a), check_dtype=False)
