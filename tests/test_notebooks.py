"""The notebooks in notebooks/ run top to bottom (papermill, a failing cell fails the test) on a
small real sweep, write their figures and tables, and are stored without outputs."""

import json
import subprocess
import sys
from pathlib import Path

import nbformat
import pandas as pd
import pytest

from conftest import ROOT

NOTEBOOKS = ROOT / "notebooks"
from conftest import HOT, TEACHER


@pytest.fixture(scope="module")
def kernel(tmp_path_factory):
    """A Jupyter kernel spec that runs this interpreter (the one ded is installed in), found through
    JUPYTER_PATH: no `ipykernel install` needed on a fresh `pip install -e .[dev]`."""
    d = tmp_path_factory.mktemp("jupyter")
    spec = d / "kernels" / "ded-test"
    spec.mkdir(parents=True)
    argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    (spec / "kernel.json").write_text(json.dumps({"argv": argv, "display_name": "ded (tests)", "language": "python"}))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("JUPYTER_PATH", str(d))
        yield "ded-test"


def execute(kernel: str, name: str, out: Path, **params) -> Path:
    """Run notebooks/<name>.ipynb with `params` (FIGURES = out/<name>); the folder its figures and tables went to."""
    import papermill

    figures = out / name
    papermill.execute_notebook(str(NOTEBOOKS / f"{name}.ipynb"), str(out / f"{name}.out.ipynb"),
                               parameters={**params, "FIGURES": str(figures)}, kernel_name=kernel, cwd=str(ROOT),
                               progress_bar=False)  # fmt: skip
    return figures


def test_analysis_stage_records_per_example_entropy_and_pca_points(tiny_sweep):
    run = next(p.parent for p in sorted(tiny_sweep.rglob("metrics.json")))
    m = json.loads((run / "metrics.json").read_text())
    ent = pd.read_json(run / "tables" / "analysis_entropy_per_example.jsonl", lines=True)
    assert set(zip(ent["set"], ent["model"])) == {("corpus", "base"), ("corpus", "trained"), ("own_answers", "base")}
    corpus = ent[(ent["set"] == "corpus") & (ent["model"] == "base")]
    assert len(corpus) == min(8, m["corpus/examples"]) and (corpus["tokens"] > 0).all()  # debug=tiny: probe_size 8
    weighted = (corpus["entropy"] * corpus["tokens"]).sum() / corpus["tokens"].sum()
    assert weighted == pytest.approx(m["analysis/corpus/student_entropy"], rel=1e-5)  # the metric is their token-weighted mean
    pts = pd.read_json(run / "tables" / "analysis_pca_points.jsonl", lines=True)
    assert set(pts["comparison"]) == {"corpus_vs_own", "trained_vs_base"}
    assert (pts[pts["comparison"] == "trained_vs_base"].groupby("set").size() == len(corpus)).all()
    assert pts[["pc1", "pc2"]].notna().all().all()


def test_teacher_table_notebook(tiny_sweep, kernel, tmp_path):
    out = execute(kernel, "teacher_table", tmp_path, SWEEP=str(tiny_sweep), WHERE={"choice.diversity": "levenshtein"})
    assert (out / "teacher_predictors.png").stat().st_size > 10_000
    table = pd.read_csv(out / "teacher_table.csv")
    assert sorted(table["teacher"]) == [TEACHER, HOT] and (table["n"] == 2).all()
    assert table["teacher_accuracy"].between(0, 1).all() and (table["response_tokens"] > 0).all()
    assert table["analysis/corpus/student_entropy"].notna().all()
    rho = pd.read_csv(out / "teacher_spearman.csv")
    assert len(rho) == 4 and rho["spearman_rho"].isna().all()  # 2 teachers: no rank correlation, and the note says why
    assert rho["note"].str.contains("at least 3").all()


def test_diversity_and_size_notebook(tiny_sweep, kernel, tmp_path):
    out = execute(kernel, "diversity_and_size", tmp_path, SWEEP=str(tiny_sweep))  # two teachers: keeps the one with both arms
    for fig in ("diversity_at_size", "diversity_paired", "size_curve"):
        assert (out / f"{fig}.png").stat().st_size > 10_000, fig
    bars = pd.read_csv(out / "diversity_at_size.csv").set_index("arm")
    assert sorted(bars.index) == ["levenshtein", "random"] and (bars["n"] == 2).all()
    diffs = pd.read_csv(out / "diversity_paired.csv")
    assert list(diffs["arm"]) == ["levenshtein"] and diffs["replicates"].iloc[0] == 2  # the sweep replicates over train.seed 1, 2
    assert diffs["questions"].iloc[0] == 6  # debug=tiny's held-out questions, crossed with the 2 seeds
    assert diffs["diff_crossed"].iloc[0] == pytest.approx(bars.loc["levenshtein", "mean"] - bars.loc["random", "mean"])
    curve = pd.read_csv(out / "size_curve.csv")
    assert len(curve) == 2 and set(curve["corpus.size"]) == {8}


def test_run_deep_dive_notebook(tiny_sweep, kernel, tmp_path):
    out = execute(kernel, "run_deep_dive", tmp_path, SWEEP=str(tiny_sweep))  # RUN: the first run below SWEEP
    figures = ["passrate_histogram", "filter_rejects", "entropy_per_example", "pca_scatter", "pass_at_k", "training_curves"]
    for fig in figures:
        assert (out / f"{fig}.png").stat().st_size > 10_000, fig


@pytest.mark.parametrize("path", sorted(NOTEBOOKS.glob("*.ipynb")), ids=lambda p: p.name)
def test_notebooks_are_stored_without_outputs(path):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    assert nb.cells[0].cell_type == "markdown" and "**Run.**" in nb.cells[0].source
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert [c for c in code if "parameters" in c.metadata.get("tags", [])], "no cell tagged `parameters` (papermill)"
    for c in code:
        assert c.outputs == [] and c.execution_count is None, f"{path.name}: stored with outputs: {c.source[:60]!r}"


def test_the_three_notebooks_exist():
    names = {p.stem for p in NOTEBOOKS.glob("*.ipynb")}
    assert {"teacher_table", "diversity_and_size", "run_deep_dive"} <= names
