"""Stage 6, analysis: token entropy of the corpus under the base and trained student, and the
PCA shift of the student's representations (definitions in ded/analysis.py).

Two shifts: teacher corpus vs the student's own answers under the base student (a predictor
available before training), and the base vs the trained student on the same probe.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass

from ded import plots
from ded.cache import short_hash
from ded.stages import Run, prompt_prefix_for, stage
from ded.stages.curation import Corpus
from ded.stages.passrate import PassRateResult
from ded.stages.training import Trained

log = logging.getLogger("ded")


@dataclass
class Analysis:
    metrics: dict[str, float]  # analysis/... names, as logged


@stage("analysis")
def run(ctx: Run, corpus: Corpus, passrate: PassRateResult, trained: Trained) -> Analysis | None:
    if not ctx.cfg.analysis.enabled:
        return None
    corpus_rows, own_rows = probe_rows(ctx, corpus, passrate)
    stats = representation_stats(ctx, trained, corpus_rows, own_rows)
    return log_analysis(ctx, stats)


def probe_rows(ctx: Run, corpus: Corpus, passrate: PassRateResult) -> tuple[list[dict], list[dict]]:
    """Up to ``analysis.probe_size`` corpus examples and as many of the student's own pass-rate answers."""
    n = ctx.cfg.analysis.probe_size
    rng = random.Random(short_hash(ctx.seed, "probe"))
    probe = rng.sample(corpus.examples, min(n, len(corpus.examples)))
    own = [{"question": q.text, "response": passrate.samples[q.id][0]["text"]} for q in passrate.kept]
    return probe, rng.sample(own, min(n, len(own)))


def representation_stats(ctx: Run, trained: Trained, corpus_rows: list[dict], own_rows: list[dict]) -> dict:
    from ded.analysis import pca_shift, response_stats
    from ded.models import load_model, local_checkpoint
    from ded.train import to_dataset_rows

    cfg = ctx.cfg
    prefix = prompt_prefix_for(cfg.student)
    base, tok = load_model(local_checkpoint(cfg.student.path, ctx.cache_root, cfg.student.revision), "", cfg.student.dtype)
    rows_corpus = to_dataset_rows(tok, corpus_rows, prefix)
    ent_base, h_corpus = response_stats(base, tok, rows_corpus)
    ent_own, h_own = response_stats(base, tok, to_dataset_rows(tok, own_rows, prefix))
    del base
    model, _ = load_model(trained.path, "", cfg.student.dtype)
    ent_trained, h_trained = response_stats(model, tok, rows_corpus)
    del model
    k = cfg.analysis.components
    return {"entropy": (ent_base, ent_trained, ent_own), "before": pca_shift(h_own, h_corpus, k), "after": pca_shift(h_corpus, h_trained, k)}


def log_analysis(ctx: Run, stats: dict) -> Analysis:
    (ent_base, ent_trained, ent_own), before, after = stats["entropy"], stats["before"], stats["after"]
    metrics = {
        "analysis/corpus/student_entropy": ent_base,
        "analysis/corpus/trained_entropy": ent_trained,
        "analysis/own_answers/student_entropy": ent_own,
        "analysis/pca_shift/corpus_vs_own": before["shift"],
        "analysis/pca_shift/trained_vs_base": after["shift"],
    }
    ctx.tracker.log(metrics)
    ctx.tracker.plot("analysis/pca_corpus_vs_own", plots.pca_scatter(before["ref_xy"], before["other_xy"], "student's own answers", "teacher corpus", before["shift"]))
    ctx.tracker.plot("analysis/pca_trained_vs_base", plots.pca_scatter(after["ref_xy"], after["other_xy"], "base student", "trained student", after["shift"]))
    log.info("analysis: corpus entropy under the student %.3f nats (trained %.3f); PCA shift corpus-vs-own %.2f, trained-vs-base %.2f",
             ent_base, ent_trained, before["shift"], after["shift"])  # fmt: skip
    return Analysis(metrics)
