"""notebooks/dashboard.py: the W&B workspace is built offline (panels, metric keys, axes, filters)
and the CLI prints its outline, or fails to save without a key in one line (exit 2). By default
it names the sortable k-free metrics every run logs (checked on the real tiny sweep's records)."""

import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("wandb_workspaces")

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "notebooks" / "dashboard.py"
GROUP = "multirun/2025-01-01/12-00-00"
SORTABLE = re.compile(r"^[_a-zA-Z][_a-zA-Z0-9]*$")  # W&B's rule for metric names its UI sorts and filters on (docs.wandb.ai)


def _load():
    spec = importlib.util.spec_from_file_location("ded_dashboard", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def dash():
    return _load()


@pytest.fixture(scope="module")
def built(dash):
    return dash.build_workspace("me", "ded", group=GROUP, k=2)


def _section(w, name):
    return next(s for s in w.sections if s.name == name)


def _name(m):
    return m if isinstance(m, str) else m.name


def test_sections(built):
    import wandb_workspaces.workspaces as ws

    assert isinstance(built, ws.Workspace)
    assert [s.name for s in built.sections] == ["Training (live)", "Results", "Predictors", "Corpus", "Media"]
    assert (built.entity, built.project, built.name) == ("me", "ded", f"DED sweep {GROUP}")


def test_training_curves_on_train_step(built):
    sec = _section(built, "Training (live)")
    assert sec.panel_settings.x_axis == "train/step"
    plots = {_name(p.y[0]): p for p in sec.panels}
    assert list(plots) == ["train/loss", "train/learning_rate", "train/grad_norm", "train/mean_token_accuracy"]
    for p in sec.panels:
        assert type(p).__name__ == "LinePlot" and p.x == "train/step"
    # serialized as W&B stores it: the custom x axis, not the global step
    spec = sec._to_model().model_dump(by_alias=True, exclude_none=True)
    assert {p["config"]["xAxis"] for p in spec["panels"]} == {"train/step"}


def test_results_use_k_and_group_by_config(built):
    panels = _section(built, "Results").panels
    scalars = [_name(p.metric) for p in panels if type(p).__name__ == "ScalarChart"]
    assert scalars == ["eval/heldout/trained/avg@2", "eval/heldout/base/avg@2", "eval/heldout/delta_avg@2", "eval/out_of_domain/delta_avg@2"]
    bars = [p for p in panels if type(p).__name__ == "BarPlot"]
    assert {p.groupby.name for p in bars} == {"choices.diversity", "corpus.size", "teacher.name"}
    by_teacher = [p for p in bars if p.groupby.name == "teacher.name"]
    assert sorted(_name(m) for p in by_teacher for m in p.metrics) == sorted(scalars)
    # a nested config key is stored as W&B keeps a nested config: teacher.value.name
    groupby = {p._to_model().config.group_by for p in bars}
    assert groupby == {"choices.value.diversity", "corpus.value.size", "teacher.value.name"}
    assert not any("avg@4" in _name(m) for p in bars for m in p.metrics)


def test_predictor_scatters(built):
    panels = _section(built, "Predictors").panels
    pairs = {(_name(p.x), _name(p.y)) for p in panels}
    assert ("analysis/corpus/student_entropy", "eval/heldout/trained/avg@2") in pairs
    assert ("analysis/pca_shift/corpus_vs_own", "eval/heldout/trained/avg@2") in pairs
    assert all(type(p).__name__ == "ScatterPlot" for p in panels)


def test_corpus_and_media(built):
    corpus = {_name(m) for p in _section(built, "Corpus").panels for m in p.metrics}
    assert corpus == {"corpus/diversity/levenshtein/char", "corpus/duplicate_share", "corpus/examples", "passrate/pool/mean"}
    media = {k for p in _section(built, "Media").panels for k in p.media_keys}
    assert media == {"train/curves", "passrate/histogram", "analysis/pca_corpus_vs_own", "analysis/pca_trained_vs_base", "eval/accuracy_by_level"}
    # every media key is a plot a stage logs: ctx.tracker.plot("<name>", ...) (the PCA pair as f"analysis/pca_{comparison}")
    sources = "".join(p.read_text() for p in (ROOT / "ded" / "stages").glob("*.py"))
    for k in media:
        pca = k.removeprefix("analysis/pca_")
        assert f'plot("{k}"' in sources or (pca != k and 'plot(f"analysis/pca_{comparison}"' in sources and f'("{pca}"' in sources), k


def test_runset_filter_names_the_group(built, dash):
    rs = built.runset_settings
    assert f"Metric(\"Group\") == '{GROUP}'" in rs.filters
    assert "State" in rs.filters
    filters = built._to_model().spec.model_dump(by_alias=True, exclude_none=True)["section"]["runSets"][0]["filters"]["filters"]
    assert {"key": {"section": "run", "name": "group"}, "op": "=", "value": GROUP, "disabled": False} in filters
    assert any(f["key"]["name"] == "state" and f["value"] == ["running", "finished"] for f in filters)
    finished = dash.build_workspace("me", "ded", group=GROUP, k=2, finished_only=True, runset_groupby=["teacher.name"])
    assert "['finished']" in finished.runset_settings.filters
    assert [g.name for g in finished.runset_settings.groupby] == ["teacher.name"]
    assert "Group" not in dash.build_workspace("me", "ded").runset_settings.filters  # no group: the whole project


def _cli(*args, env_extra=None, tmp_path=None):
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}
    env.update(HOME=str(tmp_path), WANDB_CONFIG_DIR=str(tmp_path), WANDB_DIR=str(tmp_path), WANDB_BASE_URL="http://127.0.0.1:9")
    env.update(env_extra or {})
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, env=env, timeout=90, stdin=subprocess.DEVNULL)


def test_cli_prints_outline(tmp_path):
    r = _cli("--entity", "me", "--project", "ded", "--group", GROUP, "--k", "2", tmp_path=tmp_path)
    assert r.returncode == 0, r.stderr
    for line in ("== Training (live)", "== Results", "== Predictors", "== Corpus", "== Media", GROUP,
                 "line     train/loss  (x: train/step)", "eval/heldout/delta_avg@2", "analysis/pca_shift/corpus_vs_own"):  # fmt: skip
        assert line in r.stdout


@pytest.mark.parametrize("mode", ["offline", None])
def test_cli_save_without_key_fails_in_one_line(tmp_path, mode):
    # offline: refused before any network; no mode: wandb finds no API key (HOME is empty)
    r = _cli("--entity", "me", "--group", GROUP, "--save", "--timeout", "5", env_extra={"WANDB_MODE": mode} if mode else None, tmp_path=tmp_path)
    assert r.returncode == 2, (r.stdout, r.stderr)
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: could not save"), r.stderr
    assert "Traceback" not in r.stderr and r.stdout == ""


def test_by_default_results_use_sortable_k_free_names_and_sort_by_one(dash):
    w = dash.build_workspace("me", "ded", group=GROUP)  # no k
    panels = _section(w, "Results").panels
    scalars = [_name(p.metric) for p in panels if type(p).__name__ == "ScalarChart"]
    assert scalars == ["eval_heldout_trained_avg_at_k", "eval_heldout_base_avg_at_k", "eval_heldout_delta_avg_at_k", "eval_out_of_domain_delta_avg_at_k"]
    named = {_name(m) for p in panels if type(p).__name__ == "BarPlot" for m in p.metrics} | {_name(p.y) for p in _section(w, "Predictors").panels}
    assert named <= set(scalars) and all(SORTABLE.fullmatch(m) for m in named) and not any("@" in m for m in named)
    # the runs table sorts by the trained score, under a name W&B can sort on (as stored: summary key, descending)
    sort = w._to_model().spec.model_dump(by_alias=True, exclude_none=True)["section"]["runSets"][0]["sort"]["keys"]
    assert sort == [{"key": {"section": "summary", "name": "eval_heldout_trained_avg_at_k"}, "ascending": False}]
    assert SORTABLE.fullmatch(sort[0]["key"]["name"])


def test_every_result_metric_is_logged_by_a_real_run(dash, tiny_sweep):
    """Each run of the session's tiny sweep logged every k-free name the dashboard shows, equal to its avg@<eval.k> twin."""
    records = [json.loads(m.read_text()) for m in sorted(tiny_sweep.rglob("metrics.json"))]
    assert len(records) == 6
    for m in records:
        k = m["eval_k"]
        assert k == m["eval/heldout/trained/k"]
        for key, name in dash.result_metrics().items():
            if key == "ood_delta" and f"eval/out_of_domain/delta_avg@{k}" not in m:
                continue  # debug=tiny evaluates the held-out split only: no out-of-domain set
            assert m[name] == m[dash.result_metrics(k)[key]], name
        assert m["eval_heldout_trained_avg_at_k_se"] == m[f"eval/heldout/trained/avg@{k}_se"]


def test_cli_prints_k_free_outline_without_k(tmp_path):
    r = _cli("--entity", "me", "--group", GROUP, tmp_path=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "sorted by: eval_heldout_trained_avg_at_k desc" in r.stdout and "@" not in r.stdout.split("== Results")[1].split("== Corpus")[0]


def test_cli_needs_an_entity(tmp_path):
    r = _cli("--group", GROUP, tmp_path=tmp_path)
    assert r.returncode == 2 and r.stderr.startswith("error: --entity")
