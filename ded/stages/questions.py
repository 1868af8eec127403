"""Stage 1, questions: the train pool, the held-out split and every evaluation benchmark.

Benchmarks are read here, before any generation, so a missing file stops the run at once; the
pool is then decontaminated against them (n-gram overlap, optional fuzzy match) and deduplicated.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from ded.config import PromptedModelConfig
from ded.core.errors import UserError
from ded.core.models import local_checkpoint
from ded.data import Question
from ded.data.decontam import decontaminate as drop_overlaps
from ded.data.evalsets import area_of, load_eval_set
from ded.data.tasks import load_task
from ded.generation import build_messages
from ded.stages import Run, prompt_prefix_for, stage

log = logging.getLogger("ded")


@dataclass
class Questions:
    pool: list[Question]  # decontaminated train pool
    splits: dict[str, list[Question]]  # evaluation splits: "heldout" first, then eval.sets

    @property
    def held_out(self) -> list[Question]:
        return self.splits["heldout"]

    @property
    def trained_areas(self) -> frozenset[str]:
        """The areas (math, code, ...) the train pool covers: what counts as in domain."""
        return frozenset(area_of(q.domain, q.kind) for q in self.pool)


@stage("questions")
def run(ctx: Run) -> Questions:
    cfg = ctx.cfg
    pool, held_out = load_task(cfg.corpus, cfg.eval.size)
    splits = {"heldout": held_out} | {b: load_eval_set(b, cfg.eval.data_dir, cfg.eval.limit, cfg.eval.since, cfg.eval.until) for b in cfg.eval.sets}
    if cfg.corpus.decontam.enabled:
        pool = decontaminate(ctx, pool, splits)
    ctx.tracker.log({f"data/{name}/questions": len(qs) for name, qs in [("pool", pool), *splits.items()]})
    log.info("questions: pool %d, held-out %d", len(pool), len(held_out))
    return Questions(pool, splits)


def decontaminate(ctx: Run, pool: list[Question], splits: dict[str, list[Question]]) -> list[Question]:
    dc = ctx.cfg.corpus.decontam
    bench = {name: [q.text for q in qs] for name, qs in splits.items() if name != "heldout"}
    res = drop_overlaps(pool, bench, n=dc.n, min_overlap=dc.min_overlap, fuzzy_threshold=dc.fuzzy_threshold, dedup=dc.dedup)
    ctx.tracker.log({f"data/decontam/{reason.replace(':', '_')}": c for reason, c in res.counts.items()} | {"data/decontam/kept": len(res.kept)})
    ctx.tracker.table("data/decontam_rejects", res.rejects)
    if len(res.kept) < len(pool):
        log.info("decontamination: %d of %d pool questions dropped (%s)", len(pool) - len(res.kept), len(pool), dict(res.counts))
    return res.kept


# --- do the prompts fit the models? --------------------------------------------------------------

TEMPLATE_BYTES = 256  # room for a chat template's markup around the turns


def check_fit(ctx: Run, qs: Questions) -> None:
    """Every prompt the run will send, plus its longest answer, fits the context of the model that
    gets it; checked before any model's weights load (a 200k-character question would otherwise
    fail minutes later, in evaluation). Only the tokenizer loads, and only for prompts long enough
    to be in doubt: a byte-level tokenizer spends at most one token per byte."""
    cfg = ctx.cfg
    uses: dict[str, list] = {"student": [], "teacher": []}  # role -> [(questions, max_new_tokens key, value)]
    if ctx.runs("passrate"):
        uses["student"].append((qs.pool, "student.sampling.max_new_tokens", cfg.student.sampling.max_new_tokens))
    if ctx.runs("trajectories"):
        uses["teacher"].append((qs.pool, "teacher.sampling.max_new_tokens", cfg.teacher.sampling.max_new_tokens))
    if ctx.runs("evaluation"):
        for split, questions in qs.splits.items():
            s, key = cfg.eval.sampling_for(split)
            uses["student"].append((questions, f"{key}.max_new_tokens", s.max_new_tokens))
    for role, checks in uses.items():
        if checks:
            _check_role(ctx, role, checks)


def _check_role(ctx: Run, role: str, checks: list[tuple[list[Question], str, int]]) -> None:
    """One model's context against each (questions, key, max_new_tokens) it serves; its config
    and tokenizer are read once."""
    mcfg = getattr(ctx.cfg, role)
    prefix = prompt_prefix_for(mcfg, role)  # a fewshot style or count the task lacks: named here, before any weights load
    found = model_context(mcfg, ctx.cache_root)
    if found is None:  # a replayed dataset, or a served model whose files are not here
        return
    where, n_ctx = found
    prefix_bytes = sum(len(m["content"].encode()) for m in prefix) + TEMPLATE_BYTES
    tok = None
    for questions, key, new_tokens in checks:
        if new_tokens >= n_ctx:
            raise UserError(f"{key}={new_tokens}: the {role} model's context is {n_ctx} tokens ({mcfg.path})")
        for q in questions:
            if prefix_bytes + len(q.text.encode()) + new_tokens <= n_ctx:
                continue  # fits even at one token per byte
            if tok is None:
                from transformers import AutoTokenizer

                tok = AutoTokenizer.from_pretrained(where)
            text = tok.apply_chat_template(build_messages(q, prefix), add_generation_prompt=True, tokenize=False)
            n = len(tok(text, add_special_tokens=False).input_ids)
            if n + new_tokens > n_ctx:
                raise UserError(
                    f"question {q.id!r} ({q.source or 'built-in task'}): its prompt is {n} tokens; with {key}={new_tokens} it "
                    f"needs {n + new_tokens}, more than the {role} model's context of {n_ctx} tokens ({mcfg.path}). Remove or "
                    "shorten it in its file, or use a model with a longer context."
                )


def model_context(mcfg, cache_root: str) -> tuple[str, int] | None:
    """(where the tokenizer is, the context length in tokens) of a model config's weights, from its
    config.json, without loading the model; None where no weights are known here."""
    import json
    import os

    if not isinstance(mcfg, PromptedModelConfig):  # a replay config: it names a dataset, not weights
        return None
    try:
        where = local_checkpoint(mcfg.path, cache_root, mcfg.revision)
        if os.path.isdir(where):
            config = os.path.join(where, "config.json")
        else:
            from huggingface_hub import hf_hub_download

            config = hf_hub_download(where, "config.json", revision=mcfg.revision, local_files_only=True)
        c = json.loads(open(config).read())
    except Exception:  # not downloaded, no config.json: the backend's own check speaks for it
        return None
    c = c.get("text_config", c)
    n_ctx = next((c[k] for k in ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length") if isinstance(c.get(k), int)), None)
    return (where, n_ctx) if n_ctx else None
