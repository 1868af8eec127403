"""The run's artifacts (ded/reporting/artifacts.py): the corpus as a `datasets` dataset with its card, the
cached checkpoint linked from the run folder with a model card, per-question evaluation results,
and the three W&B artifacts (corpus -> model -> evaluation) in the offline run's log.

One real tiny pipeline run (in-process, W&B offline) serves the module; the W&B-failure test
needs no model."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import pytest
import yaml
from huggingface_hub import DatasetCard

from conftest import compose
from ded.reporting.artifacts import CHECKPOINT_LINK, MODEL_CARD, corpus_artifact_name, eval_artifact_name, model_artifact_name

QUIET = {"WANDB_MODE": "offline", "WANDB__DISABLE_STATS": "true", "WANDB__DISABLE_META": "true",
         "WANDB__DISABLE_MACHINE_INFO": "true", "WANDB_ERROR_REPORTING": "false", "WANDB_SILENT": "true"}  # fmt: skip


@pytest.fixture(scope="module")
def tiny(tmp_path_factory, model_cache):
    """One full debug=tiny run with its offline W&B run: (run folder, returned metrics)."""
    from ded.pipeline import run

    root = tmp_path_factory.mktemp("artifacts")
    cache = root / "cache"
    cache.mkdir()
    (cache / "models").symlink_to(Path(model_cache) / "models", target_is_directory=True)
    out = root / "run"
    with pytest.MonkeyPatch.context() as mp:
        for k, v in QUIET.items():
            mp.setenv(k, v)
        metrics = run(compose(["debug=tiny", "logger=wandb", "analysis.enabled=false", "eval.size=3",
                               f"paths.cache_dir={cache}", f"paths.output_dir={out}"]))  # fmt: skip
    assert metrics["run/status"] == "finished"
    return out, metrics


def card_facts(text: str) -> dict[str, str]:
    """A card's facts table (| fact | value |, as cards.facts_table writes it) as {fact: value}."""
    rows = [[c.strip() for c in line.strip().strip("|").split("|")] for line in text.splitlines() if line.startswith("|")]
    return {r[0]: r[1] for r in rows[2:]}  # past the header and its rule


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines()]


def wandb_log(out: Path) -> list[dict]:
    """The records of the run folder's offline W&B run (ded.reporting.offline.records: wandb-core's reader)."""
    from ded.reporting.offline import records

    (log,) = (out / "wandb").glob("offline-run-*/run-*.wandb")
    return records(log)


def test_corpus_is_a_dataset_equal_to_corpus_jsonl_with_a_card(tiny):
    from datasets import load_from_disk

    out, m = tiny
    rows = _jsonl(out / "corpus.jsonl")
    ds = load_from_disk(str(out / "corpus"))
    assert ds.num_rows == len(rows) == m["corpus/examples"] and ds.to_list() == rows  # field for field
    assert not (out / "tables" / "corpus.jsonl").exists()  # written once locally (corpus.jsonl), the W&B table stays
    cfg = yaml.safe_load((out / "config.yaml").read_text())
    card = DatasetCard.load(out / "corpus" / "README.md")
    assert card.data.pretty_name == corpus_artifact_name(rows) and "text-generation" in card.data.task_categories
    table = card_facts(card.text)
    decontam = {k.removeprefix("data/decontam/"): v for k, v in m.items() if k.startswith("data/decontam/")}
    assert decontam  # debug=tiny decontaminates
    assert table["teacher"].startswith(f"{cfg['teacher']['name']} ({cfg['teacher']['path']}")
    assert table["diversity metric"].startswith(cfg["diversity"]["metric"])
    assert table["N (teacher trajectories per question)"] == str(cfg["corpus"]["trajectories"]["n"])
    assert table["P (kept per question)"] == str(cfg["corpus"]["trajectories"]["p"])
    assert table[f"pass-rate band (student, k={cfg['corpus']['pass_rate']['k']})"].startswith(
        f"[{cfg['corpus']['pass_rate']['min_rate']}, {cfg['corpus']['pass_rate']['max_rate']})")
    assert table["decontamination"] == ", ".join(f"{k} {v}" for k, v in decontam.items())
    assert table["corpus size"].startswith(f"{m['corpus/examples']} examples")
    assert table["questions"] == str(m["corpus/questions"]) and table["duplicate share"] == str(m["corpus/duplicate_share"])
    facts = json.loads((out / "corpus" / "facts.json").read_text())
    assert facts["decontam"] == decontam and facts["N"] == cfg["corpus"]["trajectories"]["n"] and facts["examples"] == len(rows)
    assert m["artifact/corpus"] == corpus_artifact_name(rows) and m["artifact/corpus_path"] == str(out / "corpus")


def test_checkpoint_is_linked_from_the_run_folder_with_a_model_card(tiny):
    out, m = tiny
    link = out / CHECKPOINT_LINK
    record = json.loads((out / "checkpoint.json").read_text())
    assert link.is_symlink() and link.resolve() == Path(record["path"]).resolve() and (link / "config.json").is_file()
    assert record["key"] in record["path"] and record["cached"] is False and record["cached"] == m["train/cached"]
    assert Path(record["manifest"]).is_file()
    manifest = json.loads(Path(record["manifest"]).read_text())
    assert not any(f.lower().endswith(".md") for f in manifest["files"])  # the shared checkpoint is untouched: the card is this run's
    card = (out / MODEL_CARD).read_text()
    cfg = yaml.safe_load((out / "config.yaml").read_text())
    for needle in [cfg["student"]["path"], record["key"], record["corpus_artifact"], f"eval-{record['key']}-<evaluation hash>",
                   f'"learning_rate": {cfg["train"]["learning_rate"]}', f"{m['train/steps']} steps"]:  # fmt: skip
        assert needle in card, needle
    assert str(out) not in card  # the card is the checkpoint's, the same for every run that reuses it (test_cards.py)
    assert m["artifact/model"] == model_artifact_name(record["key"]) == record["model_artifact"]
    assert m["artifact/model_path"] == str(link)


def test_per_question_accuracies_are_in_eval_json_only_and_average_to_avg_at_k(tiny):
    out, m = tiny
    ev = json.loads((out / "eval.json").read_text())
    for model in ("base", "trained"):
        r = ev["results"]["heldout"][model]
        pq = r["per_question"]
        assert len(pq) == r["questions"] == 3 and all(0 <= a <= 1 for a in pq.values())
        assert sum(pq.values()) / len(pq) == pytest.approx(r["avg@2"]) == pytest.approx(m[f"eval/heldout/{model}/avg@2"])
    assert set(ev["results"]["heldout"]["base"]["per_question"]) == set(ev["results"]["heldout"]["trained"]["per_question"])
    assert not any("per_question" in k for k in m)  # never a metric
    assert m["artifact/eval"].startswith(f"eval-{json.loads((out / 'checkpoint.json').read_text())['key']}-")  # + the evaluation's hash
    assert m["artifact/eval_path"] == str(out / "eval.json")


def test_offline_wandb_run_holds_corpus_model_and_eval_artifacts_with_their_lineage(tiny):
    out, m = tiny
    assert "wandb/error" not in m
    records = wandb_log(out)
    arts = {r["artifact"]["name"]: r["artifact"] for r in records if r["type"] == "artifact"}
    corpus, model, ev = (arts[m[f"artifact/{k}"]] for k in ("corpus", "model", "eval"))
    assert (corpus["type"], model["type"], ev["type"]) == ("dataset", "model", "evaluation")
    # lineage as far as offline allows: each artifact names its input; wandb refuses use_artifact offline
    meta = {a["name"]: json.loads(a["metadata"]) for a in (corpus, model, ev)}
    c, mo, e = corpus["name"], model["name"], ev["name"]
    assert meta[c]["inputs"] == [] and meta[mo]["inputs"] == [c] and meta[e]["inputs"] == [mo]
    assert not [r for r in records if r["type"] == "use_artifact"]
    # the dataset artifact: its files, the card's facts as metadata
    files = {x["path"]: x for x in corpus["manifest"]["contents"]}
    assert {"README.md", "facts.json", "dataset_info.json", "state.json"} <= set(files) and any(p.endswith(".arrow") for p in files)
    assert all(not x.get("ref") for x in files.values())  # copied into the artifact
    assert meta[c]["N"] == 2 and meta[c]["P"] == 1 and meta[c]["decontam"]
    # the model artifact: file:// references to the cached checkpoint (no copy, no checksum), the card and cache manifest as files
    record = json.loads((out / "checkpoint.json").read_text())
    entries = {x["path"]: x for x in model["manifest"]["contents"]}
    assert entries["checkpoint/config.json"]["ref"] == (Path(record["path"]) / "config.json").as_uri()
    weights = Path(record["path"]) / "model.safetensors"
    assert int(entries["checkpoint/model.safetensors"]["size"]) == weights.stat().st_size
    assert {"README.md", "cache_manifest.json"} <= set(entries) and not entries["README.md"].get("ref")
    assert "checkpoint.json" not in entries  # this run's record (cached or not) stays in the run folder and the metadata
    assert meta[mo]["cache_key"] == record["key"] and meta[mo]["corpus"]["artifact"] == c
    assert meta[mo]["cached"] is False and meta[mo]["run_dir"] == str(out)
    assert {x["path"] for x in ev["manifest"]["contents"]} == {"eval.json", "eval_summary.jsonl"}
    # the evaluation is named by the checkpoint and a hash of what changes its numbers, kept in its metadata
    ident = meta[e]["evaluation"]
    assert e == eval_artifact_name(record["key"], ident) and ident["k"] == 2 and ident["splits"] == ["heldout"] and ident["size"] == 3


def test_wandb_failure_while_logging_artifacts_keeps_the_local_record(tmp_path, monkeypatch, caplog):
    """A real offline W&B run whose log_artifact raises (corpus, then model): one warning each, the corpus
    dataset, card, checkpoint link and model card are all written, the run finishes."""
    from stages.test_stages import _hand_made  # tests/ is on the path (conftest's folder), tests/stages only when collected

    from ded.reporting.artifacts import record_checkpoint
    from ded.core.cache import StageCache
    from ded.plugins import validate
    from ded.stages import Run, curation
    from ded.stages.training import Trained
    from ded.reporting.tracking import Tracker

    for k, v in QUIET.items():
        monkeypatch.setenv(k, v)
    cfg = compose(["debug=tiny", "logger=wandb", f"paths.cache_dir={tmp_path / 'cache'}", f"paths.output_dir={tmp_path / 'run'}",
                   "corpus.size=4", "corpus.trajectories.n=4", "corpus.trajectories.p=2"])  # fmt: skip
    conf = validate(cfg)
    ctx = Run(conf, Tracker(cfg, conf.paths.output_dir), str(tmp_path / "cache"), StageCache(tmp_path / "cache"))
    assert ctx.tracker.wandb is not None
    calls, real = [], ctx.tracker.wandb.log_artifact

    def broken(art, *a, **kw):  # a logged wandb.Table is an artifact too: only ours fail
        if art.type not in ("dataset", "model", "evaluation"):
            return real(art, *a, **kw)
        calls.append(art.name)
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(ctx.tracker.wandb, "log_artifact", broken)
    out = Path(ctx.tracker.dir)
    with caplog.at_level(logging.WARNING, logger="ded.reporting.tracking"):
        corpus = curation.run(ctx, *_hand_made())
        assert ctx.tracker.wandb is not None  # one failed call: the run's other W&B calls go on
        ckpt = tmp_path / "cache" / "stages" / "train" / "k1"
        ckpt.mkdir(parents=True)
        (ckpt / "config.json").write_text("{}")
        (ckpt / "manifest.json").write_text(json.dumps({"files": {"config.json": {"size": 2}}}))
        record_checkpoint(ctx, Trained(str(ckpt), "k1", {"cached": True, "train_loss": 1.0, "steps": 1}), corpus)
        ctx.tracker.finish(ok=True)
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(calls) == len(warned) == 2 and "W&B artifact corpus-" in warned[0] and "W&B artifact model-" in warned[1]  # each call warned once
    assert "No space left" in warned[0]
    from datasets import load_from_disk

    assert load_from_disk(str(out / "corpus")).to_list() == _jsonl(out / "corpus.jsonl") == corpus.examples
    assert "diversity metric" in (out / "corpus" / "README.md").read_text()
    assert (out / CHECKPOINT_LINK / "config.json").is_file() and (out / MODEL_CARD).read_text().count("k1") >= 1
    m = json.loads((out / "metrics.json").read_text())
    assert m["run/status"] == "finished" and m["wandb/error"].startswith("artifact corpus-")
    assert m["artifact/corpus"] == corpus_artifact_name(corpus.examples) and m["artifact/model"] == "model-k1"
    assert os.path.realpath(m["artifact/model_path"]) == str(ckpt.resolve())
