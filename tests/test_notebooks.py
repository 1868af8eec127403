"""The notebooks in notebooks/ run top to bottom (papermill, a failing cell fails the test) on a
small real sweep, write their figures and tables, give the same tables read the W&B way (the
sweep's offline W&B runs, SOURCE=wandb-offline) as from the run records, and are stored without
outputs (as the README's `jupyter nbconvert --clear-output` leaves them)."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pandas as pd
import pytest

from conftest import HOT, ROOT, TEACHER

NOTEBOOKS = ROOT / "notebooks"


@pytest.fixture(scope="module")
def kernel(tmp_path_factory):
    """A Jupyter kernel spec that runs this interpreter (the one ded is installed in), found through
    JUPYTER_PATH: no `ipykernel install` needed on a fresh `pip install -e .[dev]`."""
    d = tmp_path_factory.mktemp("jupyter")
    spec = d / "kernels" / "ded-test"
    spec.mkdir(parents=True)
    argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    env = {"PYTHONPATH": str(ROOT)}  # ded importable from any working folder, installed or not
    (spec / "kernel.json").write_text(json.dumps({"argv": argv, "display_name": "ded (tests)", "language": "python", "env": env}))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("JUPYTER_PATH", str(d))
        yield "ded-test"


RAN: dict[str, Path] = {}  # one papermill run per notebook and parameters in this session


def execute(kernel: str, name: str, out: Path, cwd: Path = ROOT, **params) -> Path:
    """Run notebooks/<name>.ipynb with `params` (FIGURES = out/<name>); the folder its figures and
    tables went to. A notebook already run with the same parameters is not run again."""
    import papermill

    key = json.dumps([name, str(cwd), params], sort_keys=True)
    if key in RAN:
        return RAN[key]
    figures = out / name
    out.mkdir(parents=True, exist_ok=True)
    papermill.execute_notebook(str(NOTEBOOKS / f"{name}.ipynb"), str(out / f"{name}.out.ipynb"),
                               parameters={**params, "FIGURES": str(figures)}, kernel_name=kernel, cwd=str(cwd),
                               progress_bar=False)  # fmt: skip
    RAN[key] = figures
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


@pytest.mark.parametrize("name, params", [("teacher_table", {"WHERE": {"choice.diversity": "levenshtein"}}), ("diversity_and_size", {})])
def test_notebook_tables_are_the_same_read_the_wandb_way(tiny_sweep, kernel, tmp_path, name, params):
    """SOURCE=wandb-offline reads the sweep's offline W&B runs (config, summary, tables, the eval
    artifact's eval.json): every table the notebook writes equals the one from the run records."""
    local = execute(kernel, name, tmp_path / "local", SWEEP=str(tiny_sweep), **params)
    wandb = execute(kernel, name, tmp_path / "wandb", SWEEP=str(tiny_sweep), SOURCE="wandb-offline", **params)
    tables = sorted(p.name for p in local.glob("*.csv"))
    assert len(tables) >= 2 and tables == sorted(p.name for p in wandb.glob("*.csv"))
    for t in tables:
        pd.testing.assert_frame_equal(pd.read_csv(wandb / t), pd.read_csv(local / t), obj=t)


def test_run_deep_dive_reads_an_offline_wandb_run(tiny_sweep, kernel, tmp_path):
    (run,) = (p.parent for p in sorted((tiny_sweep / "sweep1").rglob("run-*.wandb"))[:1])  # an offline W&B run folder
    out = execute(kernel, "run_deep_dive", tmp_path, SOURCE="wandb-offline", RUN=str(run))
    local = execute(kernel, "run_deep_dive", tmp_path / "local", SWEEP=str(tiny_sweep))
    assert sorted(p.name for p in out.glob("*.png")) == sorted(p.name for p in local.glob("*.png")) and len(list(out.glob("*.png"))) == 6


def test_nbconvert_clear_output_leaves_the_stored_notebooks_as_they_are(tmp_path):
    """The README's `jupyter nbconvert --clear-output --inplace` (the [analysis] extra installs it) runs, and changes nothing."""
    for path in sorted(NOTEBOOKS.glob("*.ipynb")):
        copy = tmp_path / path.name
        copy.write_text(path.read_text())
        r = subprocess.run([sys.executable, "-m", "jupyter", "nbconvert", "--clear-output", "--inplace", str(copy)],
                           capture_output=True, text=True, timeout=120)  # fmt: skip
        assert r.returncode == 0, r.stderr
        assert [c.source for c in nbformat.read(copy, as_version=4).cells] == [c.source for c in nbformat.read(path, as_version=4).cells]


def test_without_sweep_a_notebook_reads_the_newest_sweep_only(tiny_sweep, kernel, tmp_path):
    """SWEEP left at None: the newest sweep folder below multirun/ (ded.reporting.results.newest_sweep),
    not every sweep there: with two teachers' sweeps, the teacher table has the newer sweep's teacher only."""
    for name, when in (("sweep2", 1_000_000_000), ("sweep1", 1_100_000_000)):  # sweep1 (the default teacher) is the newer
        copy = tmp_path / "multirun" / name
        shutil.copytree(tiny_sweep / name, copy, symlinks=True)
        os.utime(copy / "multirun.yaml", (when, when))
    out = execute(kernel, "teacher_table", tmp_path / "out", cwd=tmp_path, WHERE={"choice.diversity": "levenshtein"})
    table = pd.read_csv(out / "teacher_table.csv")
    assert len(table) == 1 and list(table["n"]) == [2]  # one teacher: the newer sweep's; both sweeps give two
    newer = execute(kernel, "teacher_table", tmp_path / "newer", SWEEP=str(tiny_sweep / "sweep1"), WHERE={"choice.diversity": "levenshtein"})
    pd.testing.assert_frame_equal(table, pd.read_csv(newer / "teacher_table.csv"))
    for path in sorted(NOTEBOOKS.glob("*.ipynb")):
        params = next(c for c in nbformat.read(path, as_version=4).cells if "parameters" in c.metadata.get("tags", []))
        assert "SWEEP = None" in params.source and 'SOURCE = "local"' in params.source, path.name


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
