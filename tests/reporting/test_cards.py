"""The cards and artifact names of ded/reporting/cards.py and artifacts.py, without a pipeline run:

- the model card and the dataset card are huggingface_hub cards whose card data round-trips;
- two runs sharing one cached checkpoint log a W&B model artifact with one digest (real offline runs);
- the evaluation artifact's name changes with what changes an evaluation (k, sets, sampling) and nothing else;
- corpus.push_to_hub: validated in the schema, checked by the preflight, and a push to an
  unreachable Hub (a real local HTTP server answering 401/503) fails with one line naming the key and the repo.
"""

from __future__ import annotations

import http.server
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from huggingface_hub import DatasetCard, ModelCard

from conftest import ROOT, compose
from ded.config import ConfigError
from ded.core.cache import StageCache
from ded.plugins import validate
from ded.reporting.artifacts import (CHECKPOINT_RECORD, MODEL_CARD, corpus_artifact_name, eval_artifact_name, evaluation_identity,
                                     model_artifact_name, record_checkpoint)  # fmt: skip
from ded.reporting.offline import read_run
from ded.reporting.tracking import Tracker
from ded.stages import Run
from ded.stages.curation import Corpus
from ded.stages.training import Trained
from ded.training.sft import checkpoint_config
from test_artifacts import QUIET, card_facts

EXAMPLES = [{"id": f"q{i}", "level": 1, "question": f"What is {i} + {i}?", "answer": str(2 * i), "pass_rate": 0.25,
             "response": f"{i} + {i} = {2 * i}. The answer is \\boxed{{{2 * i}}}."} for i in range(1, 4)]  # fmt: skip
CORPUS = Corpus(EXAMPLES, [[e["response"]] for e in EXAMPLES])


def make_ctx(tmp: Path, run: str, overrides=(), logger="none") -> Run:
    """A run of debug=tiny writing to tmp/<run>, the stage cache tmp/cache shared by every run of the test."""
    cfg = compose(["debug=tiny", f"logger={logger}", f"paths.cache_dir={tmp / 'cache'}", f"paths.output_dir={tmp / run}", *overrides])
    conf = validate(cfg)
    return Run(conf, Tracker(cfg, conf.paths.output_dir), str(tmp / "cache"), StageCache(tmp / "cache"))


def fake_checkpoint(tmp: Path, key: str = "k1", weights: bytes = b"\0" * 64) -> Path:
    """A published stage-cache checkpoint: a config, weights and its manifest (as StageCache writes it)."""
    ckpt = tmp / "cache" / "stages" / "train" / key
    ckpt.mkdir(parents=True, exist_ok=True)
    (ckpt / "config.json").write_text("{}")
    (ckpt / "model.safetensors").write_bytes(weights)
    (ckpt / "manifest.json").write_text(json.dumps({"stage": "train", "key": key, "files": {
        "config.json": {"size": 2}, "model.safetensors": {"size": len(weights)}}}))  # fmt: skip
    return ckpt


# ── the cards ─────────────────────────────────────────────────────────────────────────────────


def test_dataset_and_model_cards_are_hub_cards_whose_data_round_trips(tmp_path):
    ctx = make_ctx(tmp_path, "run", ["corpus.push_to_hub=me/ded-corpus"])  # a pushed corpus: the card's datasets names the Hub repo
    ckpt = fake_checkpoint(tmp_path)
    record_checkpoint(ctx, Trained(str(ckpt), "k1", {"cached": False, "train_loss": 0.5, "steps": 3}), CORPUS, checkpoint_config(ctx.cfg.train))
    run = Path(ctx.tracker.dir)

    model = ModelCard.load(run / MODEL_CARD)
    data = model.data.to_dict()
    assert data["base_model"] == ctx.cfg.student.path and data["datasets"] == ["me/ded-corpus"]  # the pushed corpus names it
    assert data["library_name"] == "transformers" and data["pipeline_tag"] == "text-generation" and {"ded", "sft"} <= set(data["tags"])
    assert ModelCard(str(model)).data.to_dict() == data  # YAML header -> card data -> YAML header: the same
    table = card_facts(model.text)
    assert list(table) == ["base model", "checkpoint", "corpus", "training", "evaluation"]
    assert table["base model"] == f"{ctx.cfg.student.name}: `{ctx.cfg.student.path}`"  # no revision pinned: none shown
    assert table["checkpoint"].startswith("stage-cache key k1; 2 files, 0.0 MB")  # from the cache manifest
    assert table["corpus"] == (f"W&B artifact `{corpus_artifact_name(EXAMPLES)}`, Hub dataset `me/ded-corpus`: 3 examples from 3 questions "
                               "(dataset card: its README.md)")  # fmt: skip
    assert table["training"] == "3 steps, train loss 0.5, seed 0" and "eval-k1-<evaluation hash>" in table["evaluation"]
    assert '"learning_rate": 5e-05' in model.text
    assert str(tmp_path) not in str(model)  # nothing of this run's folders: the card is the checkpoint's
    assert '"logging_steps"' not in model.text  # what the checkpoint key leaves out, the card leaves out


def test_dataset_card_data_names_size_task_and_sources(tmp_path):
    from ded.reporting.artifacts import corpus_facts
    from ded.reporting.cards import dataset_card, size_category

    ctx = make_ctx(tmp_path, "run")
    facts = corpus_facts(ctx, CORPUS)
    facts["sources"]["pools"] = [{"name": "gsm8k", "source": "openai/gsm8k"}, {"name": "mine", "source": str(tmp_path / "mine.jsonl")}]
    card = dataset_card("corpus-x", facts)
    card.save(tmp_path / "README.md")
    data = DatasetCard.load(tmp_path / "README.md").data.to_dict()
    assert data == card.data.to_dict()
    assert data["pretty_name"] == "corpus-x" and data["size_categories"] == ["n<1K"] and data["task_categories"] == ["text-generation"]
    assert data["source_datasets"] == ["extended|openai/gsm8k"] and {"ded", "reasoning-distillation"} <= set(data["tags"])
    assert data["teacher"] == ctx.cfg.teacher.path
    table = card_facts(card.text)
    assert list(table) == ["teacher", "student", "task", "question sources", "diversity metric", "N (teacher trajectories per question)",
                           "P (kept per question)", "pass-rate band (student, k=2)", "decontamination", "corpus size", "questions",
                           "duplicate share", "seed"]  # fmt: skip
    assert table["question sources"] == "openai/gsm8k, local file (mine)" and table["N (teacher trajectories per question)"] == "2"
    assert str(tmp_path) not in str(card)  # a local pool is named, not its path
    assert [size_category(n) for n in (0, 999, 1000, 54_000, 2_000_000)] == ["n<1K", "n<1K", "1K<n<10K", "10K<n<100K", "1M<n<10M"]


# ── the model artifact of a shared checkpoint ─────────────────────────────────────────────────


def closed_run(run_folder: Path, wait_s: float = 60):
    """The run folder's offline W&B run (ded.reporting.offline.read_run) once its exit record is written (wandb-core may still be closing the file)."""
    (log,) = (run_folder / "wandb").glob("offline-run-*/run-*.wandb")
    deadline = time.time() + wait_s
    while (run := read_run(log)).exit_code is None:
        assert time.time() < deadline, f"{log}: no exit record after {wait_s} s"
        time.sleep(0.5)
    return run


def test_runs_sharing_a_cached_checkpoint_log_one_model_artifact_digest(tmp_path, monkeypatch):
    """Run a trains the checkpoint and evaluates it; run b reuses it from the cache, stops after
    training and logs with another logging_steps: their W&B model artifacts (read back from the two
    offline run files) have one digest, so W&B keeps one version; what differs (cached, the run
    folder) is in each run's checkpoint.json and the metadata, which the digest leaves out."""
    for k, v in QUIET.items():
        monkeypatch.setenv(k, v)
    ckpt = fake_checkpoint(tmp_path)
    logged = {}
    for run, cached, overrides in (("a", False, []), ("b", True, ["stop_after=training", "train.logging_steps=1"])):
        ctx = make_ctx(tmp_path, run, overrides, logger="wandb")
        record_checkpoint(ctx, Trained(str(ckpt), "k1", {"cached": cached, "train_loss": 0.5, "steps": 3}), CORPUS, checkpoint_config(ctx.cfg.train))
        ctx.tracker.finish(ok=True)
        assert json.loads((tmp_path / run / CHECKPOINT_RECORD).read_text())["cached"] is cached
        assert "wandb/error" not in ctx.tracker.metrics
        (logged[run],) = [a for a in closed_run(tmp_path / run).artifacts if a["name"] == model_artifact_name("k1")]
    a, b = logged["a"], logged["b"]
    assert a["digest"] and a["digest"] == b["digest"]
    referenced = {f"checkpoint/{f}" for f in ("config.json", "model.safetensors", "manifest.json")}  # the cached folder, by file:// reference
    assert set(a["files"]) == set(b["files"]) == {"README.md", "cache_manifest.json", *referenced}
    meta_a, meta_b = a["metadata"], b["metadata"]
    assert (meta_a["cached"], meta_b["cached"]) == (False, True) and meta_a["run_dir"] != meta_b["run_dir"]
    assert (tmp_path / "a" / MODEL_CARD).read_bytes() == (tmp_path / "b" / MODEL_CARD).read_bytes()
    assert ModelCard.load(tmp_path / "a" / MODEL_CARD).data.datasets == [corpus_artifact_name(EXAMPLES)]  # not pushed: the W&B artifact


def test_model_artifact_digest_changes_with_the_checkpoint(tmp_path):
    """The converse, as W&B builds the manifest (wandb.Artifact): a rebuilt checkpoint (another
    manifest) or another train config gives another digest."""
    import wandb

    def digest(run: str, overrides=(), weights=b"\0" * 64) -> str:
        ctx = make_ctx(tmp_path, run, overrides)
        ckpt = fake_checkpoint(tmp_path, weights=weights)
        record_checkpoint(ctx, Trained(str(ckpt), "k1", {"cached": True, "train_loss": 0.5, "steps": 3}), CORPUS, checkpoint_config(ctx.cfg.train))
        art = wandb.Artifact("m", type="model")
        art.add_file(str(tmp_path / run / MODEL_CARD), name="README.md")
        art.add_file(str(ckpt / "manifest.json"), name="cache_manifest.json")
        return art.manifest.digest()

    same = digest("a")
    assert digest("b", ["train.logging_steps=1", "stop_after=training"]) == same
    assert digest("c", weights=b"\0" * 65) != same  # the manifest records another size
    assert digest("d", ["train.learning_rate=1e-4"]) != same


# ── the evaluation artifact's name ────────────────────────────────────────────────────────────


def eval_name(tmp_path: Path, run: str, overrides=()) -> str:
    from ded.stages.evaluation import provenance

    ctx = make_ctx(tmp_path, run, overrides)
    return eval_artifact_name("k1", evaluation_identity(ctx.cfg, provenance(ctx, Trained("ckpt", "k1", {}))))


def test_eval_artifact_name_changes_with_what_changes_the_evaluation(tmp_path):
    base = eval_name(tmp_path, "a")
    assert base.startswith("eval-k1-") and len(base) == len("eval-k1-") + 8
    # the same evaluation from another run folder, logger, worker count or training: the same name
    assert eval_name(tmp_path, "b", ["sandbox.workers=3", "train.learning_rate=1e-4", "logger.project=other"]) == base
    changed = {"k": ["eval.k=4"], "sets": ["eval.sets=[gsm8k]"], "sampling": ["eval.sampling.temperature=0.1"],
               "per-set sampling": ["+eval.per_set={heldout:{temperature:0.3}}"], "size": ["eval.size=7"], "seed": ["generation.seed=5"]}  # fmt: skip
    names = {what: eval_name(tmp_path, what.replace(" ", "_"), o) for what, o in changed.items()}
    assert all(n != base for n in names.values()), names
    assert len(set(names.values())) == len(names)


# ── corpus.push_to_hub ────────────────────────────────────────────────────────────────────────


@pytest.mark.parametrize("repo,why", [("ded-corpus", "one '/'"), ("me/bad name", "repo"), ("a/b/c", "one '/'")])
def test_push_key_rejects_a_bad_repo_id_naming_the_key(repo, why):
    with pytest.raises(ConfigError) as e:
        validate(compose([f"corpus.push_to_hub='{repo}'", "paths.output_dir=/tmp/x"]))
    assert str(e.value).startswith("corpus.push_to_hub: ") and why in str(e.value) and repo in str(e.value)
    assert validate(compose(["corpus.push_to_hub=me/ded-corpus", "paths.output_dir=/tmp/x"])).corpus.push_to_hub == "me/ded-corpus"


def test_preflight_names_the_push_key_when_a_push_cannot_be_tried(tmp_path, monkeypatch):
    from huggingface_hub import constants

    from ded.preflight import problems

    cfg = compose(["debug=tiny", "corpus.push_to_hub=me/ded-corpus", f"paths.output_dir={tmp_path / 'run'}", f"paths.cache_dir={tmp_path / 'c'}"])
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    assert [p for p in problems(cfg) if p.startswith("corpus.push_to_hub=me/ded-corpus: HF_HUB_OFFLINE is set")]
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "no-token"))
    monkeypatch.setattr(constants, "HF_STORED_TOKENS_PATH", str(tmp_path / "no-tokens"))
    assert [p for p in problems(cfg) if p.startswith("corpus.push_to_hub=me/ded-corpus: no Hugging Face token")]
    monkeypatch.setenv("HF_TOKEN", "hf_test")
    assert not [p for p in problems(cfg) if "push_to_hub" in p]
    assert not [p for p in problems(compose(["debug=tiny", "corpus.push_to_hub=me/ded-corpus", "stop_after=passrate",
                                             f"paths.output_dir={tmp_path / 'r'}"])) if "push_to_hub" in p]  # fmt: skip


class RecordingHub(http.server.BaseHTTPRequestHandler):
    """A Hub that answers every request with `status` and records (method, path, body, auth)."""

    status, seen = 503, []

    def answer(self):
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.seen.append((self.command, self.path, body.decode(errors="replace"), self.headers.get("Authorization")))
        text = json.dumps({"error": f"test hub says {self.status}"}).encode()
        self.send_response(self.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(text)))
        self.end_headers()
        self.wfile.write(text)

    do_GET = do_POST = do_PUT = do_HEAD = answer

    def log_message(self, *args):
        pass


@pytest.mark.parametrize("status", [401, 503])
def test_push_to_an_unreachable_hub_fails_naming_key_and_repo_and_keeps_the_corpus(tmp_path, status):
    """The push runs in a child process: huggingface_hub and datasets read HF_ENDPOINT and
    HF_HUB_OFFLINE once, at import."""
    from datasets import Dataset

    from ded.reporting.cards import dataset_card

    folder = tmp_path / "corpus"
    Dataset.from_list(EXAMPLES).save_to_disk(str(folder))
    ctx = make_ctx(tmp_path, "run")
    from ded.reporting.artifacts import corpus_facts

    dataset_card("corpus-x", corpus_facts(ctx, CORPUS)).save(folder / "README.md")
    before = {p.name: p.read_bytes() for p in folder.iterdir()}

    handler = type("Hub", (RecordingHub,), {"status": status, "seen": []})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    env = {**os.environ, "HF_ENDPOINT": f"http://127.0.0.1:{server.server_port}", "HF_HOME": str(tmp_path / "hf"), "HF_TOKEN": "hf_test"}
    for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
        env.pop(var, None)
    code = ("import sys\nfrom ded.core.errors import UserError\nfrom ded.reporting.cards import push_corpus\n"
            "try:\n    push_corpus(sys.argv[1], 'me/ded-corpus')\nexcept UserError as e:\n    print('ERROR', e)\n    sys.exit(2)\n")  # fmt: skip
    try:
        r = subprocess.run([sys.executable, "-c", code, str(folder)], env=env, cwd=ROOT, capture_output=True, text=True, timeout=120)
    finally:
        server.shutdown()
    assert r.returncode == 2, r.stdout + r.stderr[-3000:]
    (line,) = [x for x in r.stdout.splitlines() if x.startswith("ERROR")]
    assert line.startswith("ERROR corpus.push_to_hub=me/ded-corpus: the push to the Hugging Face Hub failed (") and str(status) in line
    assert f"the Hub says: test hub says {status}" in line and f"the corpus is kept in {folder}" in line and "corpus.push_to_hub=null" in line
    # the request reached the Hub naming the repo, with the token: the first step creates the dataset repo (private by default)
    create = [s for s in handler.seen if s[:2] == ("POST", "/api/repos/create")]
    assert create, handler.seen
    body = json.loads(create[0][2])
    assert (body["organization"], body["name"], body["type"], body["visibility"]) == ("me", "ded-corpus", "dataset", "private")
    assert create[0][3] == "Bearer hf_test"
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before  # the local corpus is untouched
