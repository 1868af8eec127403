"""sweep.py: suites load with clear errors, and a finished sweep's jobs become one table and plot."""

import json
import re
import subprocess
import sys

import pytest
import yaml

from conftest import ROOT


def _job(root, num, overrides, metrics):
    d = root / str(num)
    (d / ".hydra").mkdir(parents=True)
    (d / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    (d / "metrics.json").write_text(json.dumps(metrics))


def test_summary_table_from_job_records(tmp_path):
    _job(tmp_path, 0, ["diversity=levenshtein", "corpus.size=32"], {"eval/heldout/trained/avg@4": 0.5, "eval/heldout/trained/avg@4_se": 0.1})
    _job(tmp_path, 1, ["diversity=random", "corpus.size=32"], {"eval/heldout/trained/avg@4": 0.25, "eval/heldout/trained/avg@4_se": 0.05})
    (tmp_path / "2").mkdir()  # an unfinished job (no metrics.json) is left out
    p = subprocess.run([sys.executable, str(ROOT / "sweep.py"), "diversity_ablation", "--summarize-only", str(tmp_path)],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    rows = (tmp_path / "summary.csv").read_text().splitlines()
    assert len(rows) == 3 and "diversity=random corpus.size=32" in rows[2] and ",0.25," in rows[2]
    md = re.sub(" +", " ", (tmp_path / "summary.md").read_text())  # to_markdown pads the cells
    assert (tmp_path / "summary.png").stat().st_size > 0 and "| 0.5 |" in md


def test_unknown_suite_lists_known_ones():
    p = subprocess.run([sys.executable, str(ROOT / "sweep.py"), "no_such_suite"], capture_output=True, text=True, timeout=60)
    assert p.returncode != 0 and "diversity_ablation" in p.stderr



def _sweep_module():
    import importlib.util

    spec = importlib.util.spec_from_file_location("sweep", ROOT / "sweep.py")
    sweep = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(sweep)
    return sweep


def _write_run(*args, **kwargs):
    """tests/reporting/test_results.py's run-record writer (imported by path: any test selection finds it)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("_results_helpers", ROOT / "tests" / "reporting" / "test_results.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.write_run(*args, **kwargs)


def _suite_runs(root, arms, replicates=4, questions=12, seed=0):
    """A suite's run records: every arm x replicate with per-question avg@2 (arms: name -> true accuracy)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    for a, (arm, p) in enumerate(arms.items()):
        for r in range(1, replicates + 1):
            pq = {f"q{i}": rng.binomial(2, p) / 2 for i in range(questions)}
            _write_run(root, f"{arm},{r}", diversity=arm, seed=0, k=2, value=sum(pq.values()) / questions, per_question=pq,
                      extra={"entropy": 1.0 - p + rng.normal(0, 0.01)})  # fmt: skip
            rec = root / f"{arm},{r}" / ".hydra" / "overrides.yaml"
            rec.write_text(rec.read_text().replace("train.seed=0", f"replicate={r}"))
            cfg = root / f"{arm},{r}" / "config.yaml"
            cfg.write_text(cfg.read_text() + f"replicate: {r}\n")


def test_comparisons_are_crossed_holm_corrected_and_plotted(tmp_path):
    """sweep.py's statistics: each arm minus the baseline with the crossed interval over replicate x
    question, its noncentral-t detectable difference and Holm over the declared family; an arm that
    solves nothing gets an exact bound, a declared `explore` pair is marked exploratory; forest.png; an
    arm label holding "|" stays one cell of comparisons.md."""
    from scipy import stats

    from ded.reporting.comparisons import _forest_label, forest_plot, load_comparisons
    from ded.reporting.results import load_runs
    from ded.reporting.stats import detectable

    _suite_runs(tmp_path, {"random": 0.3, "levenshtein": 0.8, "embedding": 0.32, "none": 0.0}, replicates=5, questions=30)
    suite = {"compare": {"by": "choice.diversity", "baseline": "random", "explore": [["embedding", "levenshtein"]]},
             "predict": {"by": "choice.diversity", "predictors": ["entropy"]}, "plot": "eval/heldout/trained/avg@k", "description": "t"}
    suite["compare"]["labels"] = {"embedding": "embedding|e5"}  # a "|" in an arm's name: escaped in the markdown table
    comps, arms, preds = _sweep_module().statistics(tmp_path, suite, load_runs(tmp_path, finished_only=True))
    rows = {(r["baseline"], r["arm"]): r for r in comps}
    lev, emb, none = rows[("random", "levenshtein")], rows[("random", "embedding|e5")], rows[("random", "none")]
    assert lev["replicates"] == 5 and lev["questions"] == 30 and lev["family"] == "primary"
    assert lev["ci95_low"] > 0 and lev["survives Holm"] and not emb["survives Holm"]
    se = (lev["ci95_high"] - lev["difference"]) / stats.t.ppf(0.975, lev["df"])
    assert lev["detectable"] == pytest.approx(detectable(se, lev["df"]), rel=1e-6)  # noncentral t on the test's own df
    few = min(comps, key=lambda r: r["df"])  # few df (the replicate term carries it): far above the normal rule's 2.8 se
    few_se = (few["ci95_high"] - few["difference"]) / stats.t.ppf(0.975, few["df"])
    assert few["df"] < 5 and few["detectable"] > 3.3 * few_se
    assert none["difference"] < 0
    family = [r for r in comps if r["family"] == "primary"]  # the declared comparisons; the predictors are their own family
    assert len(family) == 3 and min(r["p (Holm)"] for r in family) == pytest.approx(3 * min(r["p"] for r in family))
    assert preds[0]["p (Holm)"] == pytest.approx(preds[0]["p"])  # a family of one
    assert rows[("embedding|e5", "levenshtein")]["family"] == "exploratory" and "p (Holm)" not in rows[("embedding|e5", "levenshtein")]
    zero = next(a for a in arms if a["arm"] == "none")
    assert zero["interval"].startswith("exact") and zero["ci95_low"] == 0 and 0 < zero["ci95_high"] < 0.05
    md = (tmp_path / "comparisons.md").read_text()
    assert "crossed replicate x question" in md and "exploratory" in md and "Clopper-Pearson" in md
    tables = [block.splitlines() for block in md.split("\n\n") if block.startswith("|")]  # comparisons, arms
    per_row = [{len(re.split(r"(?<!\\)\|", line)) for line in t} for t in tables]  # cells per row; an escaped "\|" splits none
    assert len(tables) == 2 and all(len(n) == 1 for n in per_row) and r"embedding\|e5" in md
    assert (tmp_path / "forest.png").stat().st_size > 10_000 and (tmp_path / "arms.csv").exists()
    back = load_comparisons(tmp_path / "comparisons.csv")  # a committed comparisons.csv redraws its figure without the records
    assert [(r["arm"], r["survives Holm"], r["difference"]) for r in back] == [(r["arm"], r.get("survives Holm"), r["difference"]) for r in comps]
    assert _forest_label(back[0]) == _forest_label(comps[0]) and "[" in _forest_label(back[0])
    forest_plot(back, tmp_path / "again.png", "redrawn")
    assert (tmp_path / "again.png").stat().st_size > 10_000


def test_predictors_rank_correlate_arm_means_with_the_target(tmp_path):
    """Spearman over the arms' means with an exact permutation p and a bootstrap interval: a
    predictor that orders the arms as the target does gets +1, a reversed one -1."""
    from ded.reporting.results import load_runs

    scores = {"levenshtein": [0.5, 0.7], "random": [0.3, 0.35], "none": [0.1, 0.2], "embedding": [0.8, 0.9]}
    for arm, values in scores.items():
        for seed, v in enumerate(values):
            mean = sum(values) / 2
            _write_run(tmp_path, f"{arm},{seed}", diversity=arm, seed=seed, value=v,
                      extra={"up": mean * 10 + seed * 0.01, "down": -mean, "absent_here": None})  # fmt: skip
    suite = {"predict": {"by": "choice.diversity", "predictors": ["up", "down", "absent"]}, "plot": "eval/heldout/trained/avg@k"}
    _, _, preds = _sweep_module().statistics(tmp_path, suite, load_runs(tmp_path, finished_only=True))
    rows = {r["predictor"]: r for r in preds}
    assert rows["up"]["spearman rho"] == pytest.approx(1.0) and rows["down"]["spearman rho"] == pytest.approx(-1.0)
    assert rows["up"]["p"] == pytest.approx(2 / 24)  # exact: 2 of the 4! orderings are as extreme
    assert "absent" not in rows and rows["up"]["arms"] == 4 and rows["up"]["replicates per arm"] == "2"
    md = (tmp_path / "predictors.md").read_text()
    assert "exact permutation" in md and "up" in md and "descriptive" in md


def test_a_question_missing_from_one_arm_leaves_both_and_pairs_stay_aligned():
    """Cells are paired by (replicate, question) name, never by position: a question one arm lacks
    leaves the comparison for both, and an arm with one replicate gets no interval."""
    import numpy as np
    import pandas as pd

    from ded.reporting.comparisons import arm_score, difference

    a = pd.DataFrame(np.full((3, 4), 0.5), index=["1", "2", "3"], columns=["q0", "q1", "q2", "q3"])
    b = a + 0.1
    b.iloc[1, 3] = 0.9  # one odd cell, so the tables are not constant
    a.loc["1", "q1"], b.loc["2", "q2"] = np.nan, np.nan
    d = difference(a, b.iloc[:, ::-1])  # columns in another order too
    assert d["questions"] == 2 and d["difference"] == pytest.approx(b[["q0", "q3"]].to_numpy().mean() - 0.5)
    one = arm_score(a.iloc[:1])
    assert one["interval"].startswith("none") and one["ci95_low"] != one["ci95_low"]  # NaN: one replicate says nothing of a new one
    assert arm_score(a)["questions"] == 3  # q1 lacks a cell: left out, not a crash


def test_into_refuses_replicates_already_in_the_folder(tmp_path):
    (tmp_path / "r1_a0").mkdir()
    for extra in ([], ["--replicates", "1,2"]):
        p = subprocess.run([sys.executable, str(ROOT / "sweep.py"), "components", "--into", str(tmp_path), *extra],
                           capture_output=True, text=True, timeout=60)  # fmt: skip
        assert p.returncode != 0 and "replicates [1]" in p.stderr and not (tmp_path / "multirun.yaml").exists()
    p = subprocess.run([sys.executable, str(ROOT / "sweep.py"), "components", "--replicates", "one"], capture_output=True, text=True, timeout=60)
    assert p.returncode != 0 and "separated by commas" in p.stderr


@pytest.mark.parametrize("reps", [3, 1])
def test_per_student_predictors_and_transfer_tables_and_figures(tmp_path, reps):
    """A suite with `predict.within` and `transfer`: per-student predictor rows (and predictors.png),
    and the cross-student rule in both directions against the accuracy baseline (transfer.md/csv,
    transfer_ranks.csv, transfer.png), from run records on disk; one replicate: rho and p, no interval."""
    import numpy as np

    from ded.reporting.results import load_runs

    rng = np.random.default_rng(0)
    quality = {f"t{i}": q for i, q in enumerate([0.1, 0.3, 0.2, 0.6, 0.5, 0.9])}
    for student in ["smollm2", "gemma3_270m"]:
        for teacher, q in quality.items():
            for r in range(1, reps + 1):
                d = _write_run(tmp_path, f"{student},{teacher},{r}", diversity="levenshtein", seed=0, value=q + rng.normal(0, 0.02),
                               extra={"sim": q + rng.normal(0, 0.01), "acc": rng.uniform()})  # fmt: skip
                (d / ".hydra" / "hydra.yaml").write_text(yaml.safe_dump({"hydra": {"runtime": {"choices": {"teacher": teacher, "student": student}}}}))
                (d / "config.yaml").write_text((d / "config.yaml").read_text() + f"replicate: {r}\n")
    suite = {"predict": {"by": "choice.teacher", "within": "choice.student", "predictors": ["sim", "acc"]},
             "transfer": {"student": "choice.student", "baseline": "acc"}, "plot": "eval/heldout/trained/avg@k"}
    df = load_runs(tmp_path, finished_only=True)
    sweep = _sweep_module()
    _, _, preds = sweep.statistics(tmp_path, suite, df)
    assert {(r["within"], r["predictor"]) for r in preds} == {(s, p) for s in ["gemma3_270m", "smollm2"] for p in ["sim", "acc"]}
    assert all(r["spearman rho"] == pytest.approx(1.0) for r in preds if r["predictor"] == "sim")
    md = (tmp_path / "predictors.md").read_text()
    assert "per choice.student" in md and "| gemma3_270m" in md and (tmp_path / "predictors.png").stat().st_size > 10_000
    rows = sweep.transfer_report(tmp_path, suite, df)
    rule = {(r["fitted on"], r["rule"]): r for r in rows}
    assert set(rule) == {(s, r) for s in ["gemma3_270m", "smollm2"] for r in ["predictors", "baseline: acc"]}
    assert all(rule[(s, "predictors")]["spearman rho"] > 0.9 for s in ["gemma3_270m", "smollm2"])
    assert all("p (Holm)" in r for r in rows) and rows[0]["replicate key"] == ("replicate" if reps > 1 else None)  # none varies
    tmd = (tmp_path / "transfer.md").read_text()
    assert "fitted on" in tmd and "baseline: acc" in tmd and "rho minus baseline" in tmd
    assert (tmp_path / "transfer.png").stat().st_size > 10_000 and len((tmp_path / "transfer_ranks.csv").read_text().splitlines()) == 1 + 4 * 6
    one = "none: one replicate"
    assert (one in md and one in tmd) == (reps == 1) and all((r["95% CI"] == one) == (reps == 1) for r in rows)


def test_comparisons_of_the_final_model_pair_the_rl_models_answers(tmp_path):
    """A suite that plots eval/heldout/final/avg@k (rl=none arms beside rl=grpo arms) compares each run's
    last model: the RL model's per-question accuracies where it has one, else the trained model's; a
    plot metric without per-question accuracies is refused when the suite loads, naming it."""
    import numpy as np

    from ded.reporting.comparisons import compare
    from ded.reporting.results import load_runs

    rng = np.random.default_rng(0)
    for arm, rl in (("sft", None), ("sft_grpo", 0.9)):
        for r in (1, 2, 3):
            trained = {f"q{i}": rng.binomial(2, 0.2) / 2 for i in range(10)}
            d = _write_run(tmp_path, f"{arm},{r}", diversity=arm, seed=0, k=2, value=0.2, per_question=trained)
            rec = json.loads((d / "eval.json").read_text())
            if rl is not None:  # its RL model solves most questions; its trained (SFT) model is the other arm's kind
                rec["results"]["heldout"]["rl"] = {"per_question": {f"q{i}": rng.binomial(2, rl) / 2 for i in range(10)}}
            (d / "eval.json").write_text(json.dumps(rec))
            (d / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump([f"diversity={arm}", f"replicate={r}"]))
            (d / "config.yaml").write_text((d / "config.yaml").read_text() + f"replicate: {r}\n")
    df = load_runs(tmp_path, finished_only=True)
    _, final = compare(df, "choice.diversity", "sft", metric="eval/heldout/final/avg@k")
    _, trained = compare(df, "choice.diversity", "sft", metric="eval/heldout/trained/avg@k")
    score = lambda arms, a: next(x["score"] for x in arms if x["arm"] == a)  # noqa: E731
    assert score(final, "sft_grpo") > 0.7 and score(trained, "sft_grpo") < 0.4
    assert score(final, "sft") == score(trained, "sft")  # no RL model: final is the trained one
    with pytest.raises(ValueError, match="pass@k"):
        compare(df, "choice.diversity", "sft", metric="eval/heldout/trained/pass@k")
    suite = yaml.safe_load((ROOT / "experiments" / "rlvr_after_ded.yaml").read_text()) | {"plot": "eval/heldout/final/mean_tokens"}
    sweep = _sweep_module()
    sweep.ROOT = tmp_path / "root"  # a project whose one suite plots a metric without per-question accuracies
    (sweep.ROOT / "experiments").mkdir(parents=True)
    (sweep.ROOT / "experiments" / "bad_plot.yaml").write_text(yaml.safe_dump(suite))
    with pytest.raises(SystemExit, match="mean_tokens"):
        sweep.load_suite("bad_plot")
