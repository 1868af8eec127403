"""sweep.py: suites load with clear errors, and a finished sweep's jobs become one table and plot."""

import json
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
    assert (tmp_path / "summary.png").stat().st_size > 0 and "| 0.5 |" in (tmp_path / "summary.md").read_text()


def test_unknown_suite_lists_known_ones():
    p = subprocess.run([sys.executable, str(ROOT / "sweep.py"), "no_such_suite"], capture_output=True, text=True, timeout=60)
    assert p.returncode != 0 and "diversity_ablation" in p.stderr



def test_comparisons_pair_each_arm_with_the_baseline_and_give_the_detectable_difference(tmp_path):
    """sweep.py's comparisons.md: arm minus baseline paired over seeds, with 2.8 x its s.e. as the
    difference the suite detects 80% of the time (values by hand in tests/reporting/test_results.py)."""
    import importlib.util

    from test_results import VALUES, write_run

    for i, ((div, seed), v) in enumerate(VALUES.items()):
        if div != "none":
            write_run(tmp_path, f"{i}", diversity=div, seed=seed, value=v, per_question={"q1": v, "q2": v / 2})
    write_run(tmp_path, "9", diversity="none", seed=0, value=0.2, extra={}, per_question={"q1": 0.2, "q2": 0.1})
    spec = importlib.util.spec_from_file_location("sweep", ROOT / "sweep.py")
    sweep = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(sweep)
    rows = sweep.compare(tmp_path, {"compare": {"by": ["choice.experiment", "choice.diversity"], "baseline": "random"},
                                    "plot": "eval/heldout/trained/avg@k"})  # fmt: skip
    by_arm = {(r["arm"], r["paired over"]): r for r in rows}
    lev = by_arm[("levenshtein", "seeds")]
    # levenshtein - random over seeds 0, 1, 2: 0.1, 0.15, 0.05 -> mean 0.1, se 0.028868
    assert lev["n pairs"] == 3 and lev["difference"] == pytest.approx(0.1) and lev["detectable (80% power)"] == pytest.approx(2.8 * 0.028868, abs=1e-5)
    q = by_arm[("levenshtein", "seed x question")]
    assert q["n pairs"] == 6 and q["difference"] == pytest.approx((0.1 + 0.05) / 2)  # q2 halves each difference
    none = by_arm[("none", "seeds")]
    assert none["n pairs"] == 1 and none["difference"] == pytest.approx(0.2 - 0.4)  # one shared seed: no interval
    assert "detectable" in (tmp_path / "comparisons.md").read_text() and (tmp_path / "comparisons.csv").exists()


def test_predictors_rank_correlate_arm_means_with_the_target(tmp_path):
    """Spearman over the arms' means: a predictor that orders the arms as the target does gets +1,
    a reversed one -1; arms and seeds per arm are reported."""
    import importlib.util

    from test_results import write_run

    spec = importlib.util.spec_from_file_location("sweep", ROOT / "sweep.py")
    sweep = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(sweep)
    scores = {"levenshtein": [0.5, 0.7], "random": [0.3, 0.35], "none": [0.1, 0.2]}  # means 0.6 > 0.325 > 0.15
    for arm, values in scores.items():
        for seed, v in enumerate(values):
            mean = sum(values) / 2
            write_run(tmp_path, f"{arm},{seed}", diversity=arm, seed=seed, value=v,
                      extra={"up": mean * 10 + seed * 0.01, "down": -mean, "flat_then_noise": [3, 1, 2][list(scores).index(arm)]})  # fmt: skip
    rows = {r["predictor"]: r for r in sweep.predict(tmp_path, {"predict": {"by": "choice.diversity", "predictors": ["up", "down", "flat_then_noise", "absent"]},
                                                                  "plot": "eval/heldout/trained/avg@k"})}  # fmt: skip
    assert rows["up"]["spearman rho"] == pytest.approx(1.0) and rows["down"]["spearman rho"] == pytest.approx(-1.0)
    assert rows["flat_then_noise"]["spearman rho"] == pytest.approx(0.5)  # ranks 3,1,2 vs 3,2,1
    assert "absent" not in rows and rows["up"]["arms"] == 3 and rows["up"]["seeds per arm"] == "2"
    md = (tmp_path / "predictors.md").read_text()
    assert "Spearman" in md and "levenshtein" in md and (tmp_path / "predictors_per_arm.csv").exists()
