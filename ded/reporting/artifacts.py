"""The run's artifacts: the curated corpus, the trained checkpoint and the evaluation, each kept in
the run folder with a card, and logged to W&B as an artifact feeding the next one.

    <run>/corpus/            the corpus as a Hugging Face dataset (``datasets.load_from_disk``) + README.md (dataset card)
    <run>/checkpoint         a symlink to the checkpoint in the shared stage cache
    <run>/checkpoint.json    its path, cache key, whether this run reused it, the corpus it was trained on
    <run>/MODEL_CARD.md      the model card (next to the link, not inside the shared checkpoint: see write_model_card)
    <run>/eval.json          the evaluation (ded/stages/evaluation.py), per-question accuracies included

W&B: ``corpus-<content hash>`` (type dataset) -> ``model-<checkpoint key>`` (type model, file://
references to the cached checkpoint) -> ``eval-<checkpoint key>`` (type evaluation). Each names
its inputs in its metadata (``inputs``); online the run also declares them used, offline wandb
cannot (see ``Tracker.artifact``). Names are content-addressed like the caches, so runs that
share a corpus or a checkpoint share the W&B artifact (a new version only when the files differ).
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, is_dataclass
from pathlib import Path

from ded.core.cache import short_hash

log = logging.getLogger(__name__)

CORPUS_DIR = "corpus"
CHECKPOINT_LINK = "checkpoint"
CHECKPOINT_RECORD = "checkpoint.json"
MODEL_CARD = "MODEL_CARD.md"


def corpus_artifact_name(examples: list[dict]) -> str:
    return f"corpus-{short_hash([(e['id'], e['response']) for e in examples])}"


def model_artifact_name(key: str) -> str:
    return f"model-{key}"


def eval_artifact_name(key: str) -> str:
    return f"eval-{key}"


# ── the corpus ────────────────────────────────────────────────────────────────────────────────


def corpus_facts(ctx, corpus) -> dict:
    """What made the corpus and what it holds: the dataset card, and the W&B artifact's metadata."""
    cfg, m = ctx.cfg, ctx.tracker.metrics
    pr = cfg.corpus.pass_rate
    return {
        "teacher": {"name": cfg.teacher.name, "model": cfg.teacher.path, "backend": cfg.teacher.backend},
        "student": {"name": cfg.student.name, "model": cfg.student.path},
        "task": cfg.corpus.task,
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


def corpus_card(name: str, f: dict) -> str:
    pr, dc = f["pass_rate"], f["decontam"]
    decontam = ", ".join(f"{k} {v}" for k, v in dc.items()) or "not run (corpus.decontam.enabled=false)"
    return f"""---
pretty_name: {name}
tags: [ded, reasoning-distillation]
---
# {name}

A DED reasoning-distillation corpus: teacher trajectories for the questions the student finds
hard, the most diverse correct ones kept per question.

| fact | value |
|---|---|
| teacher | {f['teacher']['name']} ({f['teacher']['model']}, backend {f['teacher']['backend']}) |
| student | {f['student']['name']} ({f['student']['model']}) |
| task | {f['task']} |
| diversity metric | {f['diversity']['metric']} (selector {f['diversity']['selector']}, level {f['diversity']['level']}) |
| N (teacher trajectories per question) | {f['N']} |
| P (kept per question) | {f['P']} |
| pass-rate band (student, k={pr['k']}) | {pr['band']}: kept if {pr['min_rate']} <= pass rate < {pr['max_rate']} |
| decontamination | {decontam} |
| corpus size | {f['examples']} examples (corpus.size={f['size']}, allocation {f['allocation']}) |
| questions | {f['questions']} |
| duplicate share | {f['duplicate_share']} |
| seed | {f['seed']} |

## How it was made

1. Pool questions decontaminated against the evaluation sets (n-gram overlap) and deduplicated.
2. The student answered each pool question k={pr['k']} times; questions outside the pass-rate band were dropped.
3. The teacher wrote N={f['N']} trajectories per kept question; only complete, correct ones passing the trajectory filters were kept.
4. Per question the P={f['P']} most diverse under `{f['diversity']['metric']}` were selected, and
   corpus.size allocated over questions ({f['allocation']}).

Columns: `id`, `level`, `question`, `answer`, `pass_rate` (the student's), `response` (the teacher's).
Open with `datasets.load_from_disk(<this folder>)`; the same rows are in `corpus.jsonl` beside it.
Facts as JSON: `facts.json`.
"""


def save_corpus(ctx, corpus) -> Path:
    """<run>/corpus/: the corpus as a `datasets` dataset, its card (README.md) and facts.json; and
    the W&B dataset artifact."""
    from datasets import Dataset

    run_dir = Path(ctx.tracker.dir)
    out = run_dir / CORPUS_DIR
    Dataset.from_list(corpus.examples).save_to_disk(str(out))
    name = corpus_artifact_name(corpus.examples)
    facts = corpus_facts(ctx, corpus)
    (out / "README.md").write_text(corpus_card(name, facts))
    (out / "facts.json").write_text(json.dumps(facts, indent=1, default=str))
    ctx.tracker.artifact("corpus", name, "dataset", local=out, files={".": out}, metadata=facts,
                         description=f"DED corpus: {facts['examples']} examples from {facts['questions']} questions")  # fmt: skip
    return out


# ── the checkpoint ────────────────────────────────────────────────────────────────────────────


def record_checkpoint(ctx, trained, corpus) -> dict:
    """Link the cached checkpoint from the run folder (``checkpoint`` symlink, ``checkpoint.json``),
    write the model card, log the W&B model artifact (the corpus artifact as its input)."""
    run_dir, cfg = Path(ctx.tracker.dir), ctx.cfg
    corpus_name, name = corpus_artifact_name(corpus.examples), model_artifact_name(trained.key)
    facts, ckpt = corpus_facts(ctx, corpus), Path(trained.path).absolute()
    link = run_dir / CHECKPOINT_LINK
    if link.is_symlink() or link.exists():
        link.unlink()
    try:
        link.symlink_to(ckpt, target_is_directory=True)
    except OSError as e:  # a filesystem without symlinks: checkpoint.json still says where it is
        log.warning("cannot link %s -> %s (%s); checkpoint.json records the path", link, trained.path, e)
    record = {
        "path": str(ckpt),
        "key": trained.key,
        "cached": bool(trained.info.get("cached")),  # True: this run reused a checkpoint another run trained
        "manifest": str(ckpt / "manifest.json"),
        "base_model": {"name": cfg.student.name, "path": cfg.student.path, "revision": getattr(cfg.student, "revision", None)},
        "corpus_artifact": corpus_name,
        "model_artifact": name,
        "model_card": MODEL_CARD,
    }
    (run_dir / CHECKPOINT_RECORD).write_text(json.dumps(record, indent=1))
    card = write_model_card(ctx, trained, facts, record)
    ctx.tracker.artifact(
        "model", name, "model", local=link,
        files={"README.md": card, CHECKPOINT_RECORD: run_dir / CHECKPOINT_RECORD, "cache_manifest.json": ckpt / "manifest.json"},
        references={"checkpoint": trained.path},
        metadata={"base_model": record["base_model"], "cache_key": trained.key, "cached": record["cached"],
                  "train": _plain(cfg.train), "train_loss": trained.info.get("train_loss"), "steps": trained.info.get("steps"),
                  "corpus": {"artifact": corpus_name, **facts}},
        inputs=[corpus_name],
        description=f"{cfg.student.name} after DED SFT on {corpus_name} (checkpoint in the stage cache, by reference)",
    )  # fmt: skip
    return record


def write_model_card(ctx, trained, f: dict, record: dict) -> Path:
    """<run>/MODEL_CARD.md (the README.md to publish with the checkpoint).

    It lives in the run folder, not in the checkpoint folder: the checkpoint is a shared
    stage-cache artifact, reused by every run whose student, corpus content and train config
    hash to the same key (a rerun, a sweep job whose selection came out the same), and its
    manifest lists every file with its sha256. A card written inside the build would describe
    only the run that trained it first (its corpus artifact, its evaluation) and every later run
    would point at a card naming another run; one added after publication would change a shared
    folder under other runs. The run folder holds what is this run's: the link, checkpoint.json
    and this card. The W&B model artifact carries the card as its README.md."""
    cfg = ctx.cfg
    train = json.dumps(_plain(cfg.train), indent=1)
    run_dir = Path(ctx.tracker.dir)
    if ctx.runs("evaluation"):
        evaluation = (f"`{run_dir / 'eval.json'}` (`results[split][\"base\" or \"trained\"]`, per-question accuracies under "
                      f"`per_question`); W&B artifact `{eval_artifact_name(trained.key)}`")  # fmt: skip
    else:
        evaluation = f"not run by this run (`stop_after={cfg.stop_after}`): the same config without `stop_after` evaluates this checkpoint (it is cached)"
    text = f"""---
library_name: transformers
pipeline_tag: text-generation
tags: [ded, reasoning-distillation, sft, trl]
---
# {cfg.student.name} + DED SFT ({trained.key})

| | |
|---|---|
| base model | {cfg.student.name}: `{cfg.student.path}` (revision {record['base_model']['revision']}) |
| checkpoint | `{record['path']}` (stage-cache key {trained.key}; {'reused from the cache' if record['cached'] else 'trained by this run'}) |
| corpus | W&B artifact `{record['corpus_artifact']}`; `{run_dir / CORPUS_DIR}` (dataset card: README.md there) |
| teacher | {f['teacher']['name']} (`{f['teacher']['model']}`) |
| selection | N={f['N']} trajectories, P={f['P']} kept per question by `{f['diversity']['metric']}`; pass-rate band {f['pass_rate']['band']} |
| corpus size | {f['examples']} examples from {f['questions']} questions |
| training | {trained.info.get('steps')} steps, train loss {trained.info.get('train_loss')} |
| evaluation | {evaluation} |

Supervised fine-tuning (TRL SFTTrainer, loss on the completion only) of the base model on the
corpus: each example's prompt is the student's own prompt for the question, the completion the
teacher's trajectory.

## Train config

```json
{train}
```
"""
    path = run_dir / MODEL_CARD
    path.write_text(text)
    return path


# ── the evaluation ────────────────────────────────────────────────────────────────────────────


def log_eval_artifact(ctx, trained, eval_json: Path, summary_table: Path) -> None:
    """The W&B evaluation artifact: eval.json and the summary table, the model artifact its input."""
    ctx.tracker.artifact(
        "eval", eval_artifact_name(trained.key), "evaluation", local=eval_json,
        files={"eval.json": eval_json, "eval_summary.jsonl": summary_table},
        metadata={"checkpoint": trained.key, "k": ctx.cfg.eval.k, "splits": ["heldout", *ctx.cfg.eval.sets]},
        inputs=[model_artifact_name(trained.key)],
        description="avg@k of the base and the trained student, per split and per question",
    )  # fmt: skip


def _plain(x):
    """A config dataclass as plain JSON values."""
    return json.loads(json.dumps(asdict(x) if is_dataclass(x) else x, default=str))

