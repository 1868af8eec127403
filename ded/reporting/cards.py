"""The corpus's dataset card and the checkpoint's model card, made with huggingface_hub
(``DatasetCard`` / ``ModelCard`` from a template and their card data, so the YAML header is card
data the Hub reads: ``base_model``, ``datasets``, tags, size and task categories), and the push
of the corpus to the Hugging Face Hub (``corpus.push_to_hub``).

What the model card says depends on the checkpoint only (its key and manifest, the base model,
the corpus it was trained on, the train config it was trained with): every run that reuses a
cached checkpoint writes the same card, so the W&B model artifact that carries it does not
version (ded/reporting/artifacts.py). What belongs to one run (its folder, whether it reused the
checkpoint, its evaluation) is in that run's ``checkpoint.json`` and the artifact's metadata.

The push: ``corpus.push_to_hub: <user or org>/<name>`` pushes the saved corpus and its card after
the corpus is written locally. A failed push stops the run with one line naming the key, the
repo and the Hub's answer (``UserError``): the researcher asked for the corpus on the Hub, and a
run that went on would hide the missing push in a log; stopping costs nothing, since the local
corpus (``<run>/corpus/``, ``corpus.jsonl``) is written first and every sample is cached, so the
rerun after the fix reaches the push again in seconds. ``ded.preflight`` checks before any work
that a push can be tried at all (a token, not offline).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd
from huggingface_hub import DatasetCard, DatasetCardData, ModelCard, ModelCardData

from ded.config import POOL_SUFFIXES
from ded.core.errors import UserError
from ded.reporting.summary import md_cell

TAGS = ["ded", "reasoning-distillation"]
PUSH_KEY = "corpus.push_to_hub"


def facts_table(rows: list[tuple[str, object]]) -> str:
    """A two-column markdown table (each value through summary.md_cell: a "|" escaped)."""
    return pd.DataFrame([(k, md_cell(str(v))) for k, v in rows], columns=["fact", "value"]).to_markdown(index=False)


def size_category(n: int) -> str:
    """The Hub's size category of a dataset of `n` rows (DatasetCardData ``size_categories``)."""
    for bound, name in ((10**3, "n<1K"), (10**4, "1K<n<10K"), (10**5, "10K<n<100K"), (10**6, "100K<n<1M"), (10**7, "1M<n<10M")):
        if n < bound:
            return name
    return "n>10M"  # a DED corpus is thousands of examples; the Hub's larger bins are never reached


def pool_source(source: str, name: str) -> str:
    """A pool as the card names it: the hub dataset id, or the local file's pool name (never a path)."""
    local = source.endswith(POOL_SUFFIXES) or os.path.isabs(source) or Path(source).exists()
    return f"local file ({name})" if local else source


# ── the dataset card ──────────────────────────────────────────────────────────────────────────

DATASET_TEMPLATE = """---
{{ card_data }}
---
# {{ pretty_name }}

A DED reasoning-distillation corpus: teacher trajectories for the questions the student finds
hard, the most diverse correct ones kept per question.

{{ facts }}

## How it was made

1. Pool questions decontaminated against the evaluation sets (n-gram overlap) and deduplicated.
2. The student answered each pool question k={{ k }} times; questions outside the pass-rate band were dropped.
3. The teacher wrote N={{ N }} trajectories per kept question; only complete, correct ones passing the trajectory filters were kept.
4. Per question the P={{ P }} most diverse under `{{ metric }}` were selected, and
   corpus.size allocated over questions ({{ allocation }}).

Columns: `id`, `level`, `question`, `answer`, `pass_rate` (the student's), `response` (the teacher's).
Open with `datasets.load_from_disk(<this folder>)`; the same rows are in `corpus.jsonl` beside it.
Facts as JSON: `facts.json`.
"""


def dataset_card(name: str, f: dict) -> DatasetCard:
    """The corpus's card from its facts (``ded.reporting.artifacts.corpus_facts``)."""
    pr, dc = f["pass_rate"], f["decontam"]
    sources = [pool_source(p["source"], p["name"]) for p in f["sources"]["pools"]]
    data = DatasetCardData(
        pretty_name=name,
        tags=TAGS + ["distillation", "synthetic"],
        size_categories=[size_category(f["examples"])],
        task_categories=["text-generation"],
        language=["en"],
        annotations_creators=["machine-generated"],  # the answers are the teacher's, checked by the task's grader
        language_creators=["machine-generated"],
        # the questions: a built-in generated task is original; pool questions extend their source (hub ids only: a local file is not one)
        source_datasets=[f"extended|{s}" for s in sources if not s.startswith("local file")] or ["original"],
        teacher=f["teacher"]["model"],  # free keys: the Hub keeps them in the card data
        student=f["student"]["model"],
    )
    decontam = ", ".join(f"{k} {v}" for k, v in dc.items()) or "not run (corpus.decontam.enabled=false)"
    facts = facts_table([
        ("teacher", f"{f['teacher']['name']} ({f['teacher']['model']}, backend {f['teacher']['backend']})"),
        ("student", f"{f['student']['name']} ({f['student']['model']})"),
        ("task", f["task"]),
        ("question sources", ", ".join(sources) or f"the built-in {f['task']} task (generated)"),
        ("diversity metric", f"{f['diversity']['metric']} (selector {f['diversity']['selector']}, level {f['diversity']['level']})"),
        ("N (teacher trajectories per question)", f["N"]),
        ("P (kept per question)", f["P"]),
        (f"pass-rate band (student, k={pr['k']})", f"{pr['band']}: kept if {pr['min_rate']} <= pass rate < {pr['max_rate']}"),
        ("decontamination", decontam),
        ("corpus size", f"{f['examples']} examples (corpus.size={f['size']}, allocation {f['allocation']})"),
        ("questions", f["questions"]),
        ("duplicate share", f["duplicate_share"]),
        ("seed", f["seed"]),
    ])  # fmt: skip
    return DatasetCard.from_template(data, template_str=DATASET_TEMPLATE, facts=facts, k=pr["k"], N=f["N"], P=f["P"],
                                     metric=f["diversity"]["metric"], allocation=f["allocation"])  # fmt: skip


# ── the model card ────────────────────────────────────────────────────────────────────────────

MODEL_TEMPLATE = """---
{{ card_data }}
---
# {{ title }}

{{ facts }}

Supervised fine-tuning (TRL SFTTrainer, loss on the completion only) of the base model on the
corpus: each example's prompt is the student's own prompt for the question, the completion the
teacher's trajectory. How the corpus was made (teacher, N, P, diversity metric, pass-rate band,
decontamination) is in its dataset card.

## Train config

The part of the train config that changes the weights, as the checkpoint's cache key hashes it
(TRL's `SFTConfig` fields under `trl`, the harness's own under `harness`; logging and launch
settings left out):

```json
{{ train }}
```
"""


def model_card(c: dict) -> ModelCard:
    """The checkpoint's card from its facts (``ded.reporting.artifacts.checkpoint_facts``): the
    same for every run that trains or reuses this checkpoint."""
    base, corpus = c["base_model"], c["corpus"]
    data = ModelCardData(
        base_model=base["path"],  # the student as configured: a hub id, a local path or a pkg: reference (ded.core.models)
        datasets=[corpus["hub"] or corpus["artifact"]],  # the Hub repo when corpus.push_to_hub pushed it, else the W&B artifact
        library_name="transformers",
        pipeline_tag="text-generation",
        tags=TAGS + ["sft", "trl"],
        model_name=f"{base['name']}-ded-{c['key']}",
    )
    files = c["manifest"]["files"]
    size = sum(x["size"] for x in files.values())
    facts = facts_table([
        ("base model", f"{base['name']}: `{base['path']}`" + (f" (revision {base['revision']})" if base["revision"] else "")),
        ("checkpoint", f"stage-cache key {c['key']}; {len(files)} file{'s' if len(files) != 1 else ''}, {size / 1e6:.1f} MB "
                       "(each with its size and, up to the cache's limit, sha256: `cache_manifest.json`)"),
        ("corpus", f"W&B artifact `{corpus['artifact']}`" + (f", Hub dataset `{corpus['hub']}`" if corpus["hub"] else "")
                   + f": {corpus['examples']} examples from {corpus['questions']} questions (dataset card: its README.md)"),
        ("training", f"{c['steps']} steps, train loss {c['train_loss']}, seed {c['train'].get('trl', c['train']).get('seed')}"),
        ("evaluation", f"each run that evaluates this checkpoint writes `eval.json` in its folder and logs the W&B artifact "
                       f"`eval-{c['key']}-<evaluation hash>` (one name per k, evaluation sets and sampling)"),
    ])  # fmt: skip
    return ModelCard.from_template(data, template_str=MODEL_TEMPLATE, title=f"{base['name']} + DED SFT ({c['key']})", facts=facts,
                                   train=json.dumps(c["train"], indent=1))  # fmt: skip


# ── the push ──────────────────────────────────────────────────────────────────────────────────


def push_problem(repo: str) -> str | None:
    """Why a push to `repo` cannot even be tried here (offline, no token), else None: the
    preflight's check, before any work."""
    from huggingface_hub import get_token, is_offline_mode

    if is_offline_mode():
        return f"{PUSH_KEY}={repo}: HF_HUB_OFFLINE is set, so the corpus cannot be pushed; unset it, or set {PUSH_KEY}=null"
    if get_token() is None:
        return f"{PUSH_KEY}={repo}: no Hugging Face token; log in (`hf auth login`) or set HF_TOKEN, or set {PUSH_KEY}=null"
    return None


def push_corpus(folder: str | os.PathLike, repo: str, private: bool = True) -> str:
    """Push the corpus saved in `folder` (``save_to_disk``, README.md its card) to the Hub dataset
    repo `repo`; return the repo's URL. The card goes first, so ``Dataset.push_to_hub`` adds its
    ``dataset_info`` and ``configs`` to it instead of writing a bare one. Any failure: UserError
    naming the key and the repo (the local folder is untouched)."""
    from datasets import load_from_disk
    from huggingface_hub import HfApi

    folder = Path(folder)
    try:
        url = HfApi().create_repo(repo, repo_type="dataset", private=private, exist_ok=True)  # private: only a new repo's visibility
        DatasetCard((folder / "README.md").read_text()).push_to_hub(repo, repo_type="dataset", commit_message="DED corpus: dataset card")
        load_from_disk(str(folder)).push_to_hub(repo, private=private, commit_message="DED corpus")
    except Exception as e:  # huggingface_hub's HTTP errors, a refused connection, a bad token: one line, the local corpus kept
        lines = str(e).strip().splitlines() or [""]
        said = getattr(e, "server_message", None)  # the Hub's own words (HfHubHTTPError), beside the status line
        why = lines[0][:300] + (f"; the Hub says: {' '.join(said.split())[:200]}" if said else "")
        raise UserError(f"{PUSH_KEY}={repo}: the push to the Hugging Face Hub failed ({type(e).__name__}: {why}); "
                        f"the corpus is kept in {folder}. Fix the access and rerun (every sample is cached), or set {PUSH_KEY}=null") from e
    return str(url)
