"""The run's artifacts: the curated corpus, the trained checkpoint and the evaluation, each kept in
the run folder with a card (ded/reporting/cards.py), and logged to W&B as an artifact feeding the next one.

    <run>/corpus/            the corpus as a Hugging Face dataset (``datasets.load_from_disk``) + README.md (dataset card)
    <run>/checkpoint         a symlink to the checkpoint in the shared stage cache
    <run>/checkpoint.json    its path, cache key, whether this run reused it, the corpus it was trained on
    <run>/MODEL_CARD.md      the model card (next to the link, not inside the shared checkpoint: see record_checkpoint)
    <run>/eval.json          the evaluation (ded/stages/evaluation.py), per-question accuracies included

W&B: ``corpus-<content hash>`` (type dataset) -> ``model-<checkpoint key>`` (type model, file://
references to the cached checkpoint) -> ``eval-<checkpoint key>-<evaluation hash>`` (type
evaluation). Each names its inputs in its metadata (``inputs``); online the run also declares
them used, offline wandb cannot (see ``Tracker.artifact``).

Each name is keyed by what determines the artifact, and its files depend on nothing else, so a
run that changes nothing makes no new version (W&B versions an artifact when the digest of its
files changes; the digest is over each file's path and content hash, never the metadata):

- ``model-<key>``: the card and the cache manifest, both the same for every run that trains or
  reuses the checkpoint; what is this run's (its folder, ``cached``) is in the run's
  ``checkpoint.json`` and the artifact's metadata.
- ``eval-<key>-<hash>``: the hash covers what changes an evaluation's numbers besides the
  checkpoint (``evaluation_identity``: k, the evaluation sets, their sampling, size and limit,
  the seed, the RL checkpoint...), so evaluations that differ are different artifacts, and a
  rerun of the same one is a version of it.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, is_dataclass
from pathlib import Path

from ded.core.cache import short_hash
from ded.reporting.cards import dataset_card, model_card, push_corpus

log = logging.getLogger(__name__)

CORPUS_DIR = "corpus"
CHECKPOINT_LINK = "checkpoint"
CHECKPOINT_RECORD = "checkpoint.json"
MODEL_CARD = "MODEL_CARD.md"


def corpus_artifact_name(examples: list[dict]) -> str:
    return f"corpus-{short_hash([(e['id'], e['response']) for e in examples])}"


def model_artifact_name(key: str) -> str:
    return f"model-{key}"


def eval_artifact_name(key: str, identity: dict) -> str:
    """``eval-<checkpoint key>-<hash of evaluation_identity>``."""
    return f"eval-{key}-{short_hash(identity, n=8)}"


# ── the corpus ────────────────────────────────────────────────────────────────────────────────


def corpus_facts(ctx, corpus) -> dict:
    """What made the corpus and what it holds: the dataset card, and the W&B artifact's metadata."""
    cfg, m = ctx.cfg, ctx.tracker.metrics
    pr = cfg.corpus.pass_rate
    return {
        "teacher": {"name": cfg.teacher.name, "model": cfg.teacher.path, "backend": cfg.teacher.backend},
        "student": {"name": cfg.student.name, "model": cfg.student.path},
        "task": cfg.corpus.task,
        "sources": {"pools": [{"name": p.name, "source": p.source} for p in cfg.corpus.pools] if cfg.corpus.task == "pool" else []},
        "diversity": {"metric": cfg.diversity.metric, "selector": cfg.diversity.selector, "level": cfg.diversity.level,
                      "normalized": cfg.diversity.normalized},  # fmt: skip
        "N": cfg.corpus.trajectories.n,  # teacher trajectories per question
        "P": cfg.corpus.trajectories.p,  # kept per question
        "pass_rate": {"k": pr.k, "min_rate": pr.min_rate, "max_rate": pr.max_rate, "band": f"[{pr.min_rate}, {pr.max_rate})"},
        "decontam": {k.removeprefix("data/decontam/"): v for k, v in sorted(m.items()) if k.startswith("data/decontam/")},
        "allocation": cfg.corpus.allocation,
        "size": cfg.corpus.size,  # asked for
        "examples": len(corpus.examples),
        "questions": len(corpus.groups),
        "duplicate_share": m.get("corpus/duplicate_share"),
        "diversity_of_selection": {k.removeprefix("corpus/diversity/"): v for k, v in sorted(m.items())
                                   if k.startswith("corpus/diversity/")},  # fmt: skip
        "seed": ctx.seed,
    }


def save_corpus(ctx, corpus) -> Path:
    """<run>/corpus/: the corpus as a `datasets` dataset, its card (README.md) and facts.json; and
    the W&B dataset artifact."""
    from datasets import Dataset

    run_dir = Path(ctx.tracker.dir)
    out = run_dir / CORPUS_DIR
    Dataset.from_list(corpus.examples).save_to_disk(str(out))
    name = corpus_artifact_name(corpus.examples)
    facts = corpus_facts(ctx, corpus)
    dataset_card(name, facts).save(out / "README.md")
    (out / "facts.json").write_text(json.dumps(facts, indent=1, default=str))
    ctx.tracker.artifact("corpus", name, "dataset", local=out, files={".": out}, metadata=facts,
                         description=f"DED corpus: {facts['examples']} examples from {facts['questions']} questions")  # fmt: skip
    if repo := ctx.cfg.corpus.push_to_hub:  # after the local corpus and W&B: a failed push stops the run with nothing lost (cards.py)
        ctx.tracker.log({"artifact/corpus_hub": push_corpus(out, repo, ctx.cfg.corpus.push_private)})
        log.info("corpus pushed to the Hugging Face Hub: %s", repo)
    return out


# ── the checkpoint ────────────────────────────────────────────────────────────────────────────

def checkpoint_facts(ctx, trained, corpus, train_config: dict) -> dict:
    """What determines the checkpoint, and so its card: the key and the cache manifest, the base
    model, the corpus it was trained on, the train config it was trained with (`train_config`:
    the part the key hashes, ded.training.sft.checkpoint_config, the replicate's seed in it) and
    what training recorded with it (steps, train loss: the checkpoint's train_info.json, the same
    whether this run trained it or reused it)."""
    cfg = ctx.cfg
    return {
        "key": trained.key,
        "manifest": json.loads((Path(trained.path) / "manifest.json").read_text()),
        "base_model": {"name": cfg.student.name, "path": cfg.student.path, "revision": cfg.student.revision},
        "corpus": {"artifact": corpus_artifact_name(corpus.examples), "hub": cfg.corpus.push_to_hub,
                   "examples": len(corpus.examples), "questions": len(corpus.groups)},  # fmt: skip
        "train": _plain(train_config),
        "steps": trained.info.get("steps"),
        "train_loss": trained.info.get("train_loss"),
    }


def record_checkpoint(ctx, trained, corpus, train_config: dict | None = None) -> dict:
    """Link the cached checkpoint from the run folder (``checkpoint`` symlink, ``checkpoint.json``),
    write the model card, log the W&B model artifact (the corpus artifact as its input).
    `train_config`: the part of the train config the checkpoint's key hashes (the training
    stage passes ``ded.training.sft.checkpoint_config``; default: all of ``cfg.train``).

    The card lives in the run folder, not in the checkpoint folder: the checkpoint is a shared
    stage-cache artifact whose manifest lists every file with its sha256, and a card added
    after publication would change a shared folder under other runs. The card says only what
    the checkpoint is (cards.model_card), so each run that reuses it writes the same one, and
    the W&B artifact's files (the card as README.md, the cache manifest) are the same too: no
    new version. What is this run's (``cached``, its folder) goes in ``checkpoint.json`` here
    and in the artifact's metadata."""
    run_dir, cfg = Path(ctx.tracker.dir), ctx.cfg
    corpus_name, name = corpus_artifact_name(corpus.examples), model_artifact_name(trained.key)
    ckpt = Path(trained.path).absolute()
    link = run_dir / CHECKPOINT_LINK
    if link.is_symlink() or link.exists():
        link.unlink()
    try:
        link.symlink_to(ckpt, target_is_directory=True)
    except OSError as e:  # a filesystem without symlinks: checkpoint.json still says where it is
        log.warning("cannot link %s -> %s (%s); checkpoint.json records the path", link, trained.path, e)
    facts = checkpoint_facts(ctx, trained, corpus, _plain(cfg.train) if train_config is None else train_config)
    record = {
        "path": str(ckpt),
        "key": trained.key,
        "cached": bool(trained.info.get("cached")),  # True: this run reused a checkpoint another run trained
        "manifest": str(ckpt / "manifest.json"),
        "base_model": facts["base_model"],
        "corpus_artifact": corpus_name,
        "model_artifact": name,
        "model_card": MODEL_CARD,
    }
    (run_dir / CHECKPOINT_RECORD).write_text(json.dumps(record, indent=1))
    model_card(facts).save(run_dir / MODEL_CARD)
    ctx.tracker.artifact(
        "model", name, "model", local=link,
        files={"README.md": run_dir / MODEL_CARD, "cache_manifest.json": ckpt / "manifest.json"},
        references={"checkpoint": trained.path},
        metadata={"base_model": record["base_model"], "cache_key": trained.key, "cached": record["cached"], "run_dir": str(run_dir),
                  "train": facts["train"], "train_loss": facts["train_loss"], "steps": facts["steps"],
                  "corpus": {"artifact": corpus_name, **corpus_facts(ctx, corpus)}},
        inputs=[corpus_name],
        description=f"{cfg.student.name} after DED SFT on {corpus_name} (checkpoint in the stage cache, by reference)",
    )  # fmt: skip
    return record


# ── the evaluation ────────────────────────────────────────────────────────────────────────────


def evaluation_identity(cfg, provenance: dict) -> dict:
    """What an evaluation's numbers depend on besides the trained checkpoint: eval.json's
    provenance (k, sampling per split, seed, base student, backend, RL checkpoint, date window,
    sandbox, prompt) without the library versions (a rerun under newer libraries is a new
    version of the same evaluation) and the sandbox's worker count (speed only), plus which
    questions: the splits, eval.size and eval.limit."""
    ident = {k: v for k, v in provenance.items() if k not in ("trained_checkpoint", "versions")}
    ident["sandbox"] = {k: v for k, v in ident.get("sandbox", {}).items() if k != "workers"}
    return ident | {"splits": ["heldout", *cfg.eval.sets], "size": cfg.eval.size, "limit": cfg.eval.limit}


def log_eval_artifact(ctx, trained, eval_json: Path, summary_table: Path) -> None:
    """The W&B evaluation artifact: eval.json and the summary table, the model artifact its input,
    named by the checkpoint and the evaluation (``evaluation_identity``, from eval.json's provenance)."""
    ident = evaluation_identity(ctx.cfg, json.loads(Path(eval_json).read_text())["provenance"])
    ctx.tracker.artifact(
        "eval", eval_artifact_name(trained.key, ident), "evaluation", local=eval_json,
        files={"eval.json": eval_json, "eval_summary.jsonl": summary_table},
        metadata={"checkpoint": trained.key, "k": ctx.cfg.eval.k, "splits": ident["splits"], "evaluation": ident},
        inputs=[model_artifact_name(trained.key)],
        description="avg@k of the base and the trained student, per split and per question",
    )  # fmt: skip


def _plain(x):
    """A config dataclass as plain JSON values."""
    return json.loads(json.dumps(asdict(x) if is_dataclass(x) else x, default=str))

