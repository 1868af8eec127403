"""Stage 6, analysis: token entropy of the corpus under the base and trained student, the
PCA shift of the student's representations and their similarity (definitions in
ded/evaluation/probes.py).

Two shifts: teacher corpus vs the student's own answers under the base student (a predictor
available before training), and the base vs the trained student on the same probe. One
similarity, also known before training: ``analysis/repr_sim/corpus_vs_own``, the base student's
hidden states on the teacher's corpus against those on its own answers (1 - MMD^2 / 2 under an
RBF kernel, 1 = the same distribution; ``probes.repr_similarity``). The own answers are
drawn from the generation seed alone, so every teacher and replicate of a student is measured
against the same reference set. Besides the
metrics and the two PCA figures, the run record gets the numbers behind them: tables
``analysis/entropy_per_example`` (set, model, id, entropy, tokens: one row per probe example and
model) and ``analysis/pca_points`` (comparison, set, reference, pc1, pc2: one row per point).
"""

from __future__ import annotations

import logging
import math
import random
from dataclasses import dataclass

from ded.core.cache import short_hash
from ded.core.models import load_model, local_checkpoint
from ded.reporting import plots
from ded.stages import Run, prompt_prefix_for, stage
from ded.stages.curation import Corpus
from ded.stages.passrate import PassRateResult
from ded.stages.training import Trained
from ded.training.sft import to_dataset_rows

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
    rng = random.Random(short_hash(ctx.corpus_seed, "probe"))
    probe = rng.sample(corpus.examples, min(n, len(corpus.examples)))
    own = [{"id": q.id, "question": q.text, "response": passrate.samples[q.id][0]["text"]} for q in passrate.kept]
    # the reference set from the shared seed alone: the same own answers for every teacher and replicate of a student
    return probe, random.Random(short_hash(ctx.seed, "probe_own")).sample(own, min(n, len(own)))


def representation_stats(ctx: Run, trained: Trained, corpus_rows: list[dict], own_rows: list[dict]) -> dict:
    """Per-example stats of each probe set, keyed (set, model), and the two PCA shifts."""
    from ded.evaluation.probes import example_stats, pca_shift, repr_similarity  # torch: loaded only when the analysis stage runs

    cfg = ctx.cfg
    prefix = prompt_prefix_for(cfg.student)
    base, tok = load_model(local_checkpoint(cfg.student.path, ctx.cache_root, cfg.student.revision), "", cfg.student.dtype)
    rows_corpus = to_dataset_rows(tok, corpus_rows, prefix)
    sets = {("corpus", "base"): example_stats(base, tok, rows_corpus),
            ("own_answers", "base"): example_stats(base, tok, to_dataset_rows(tok, own_rows, prefix))}  # fmt: skip
    del base
    model, _ = load_model(trained.path, "", cfg.student.dtype)
    sets["corpus", "trained"] = example_stats(model, tok, rows_corpus)
    del model
    k, corpus_base = cfg.analysis.components, sets["corpus", "base"].feats
    return {"sets": sets, "ids": {"corpus": [r.get("id") for r in corpus_rows], "own_answers": [r.get("id") for r in own_rows]},
            "before": pca_shift(sets["own_answers", "base"].feats, corpus_base, k),
            "repr_sim": repr_similarity(sets["own_answers", "base"].feats, corpus_base),
            "after": pca_shift(corpus_base, sets["corpus", "trained"].feats, k)}  # fmt: skip


# (comparison, reference label, other label): the two PCA figures and the analysis/pca_points table
PCA_VIEWS = {"before": ("corpus_vs_own", "student's own answers", "teacher corpus"),
             "after": ("trained_vs_base", "base student", "trained student")}  # fmt: skip


def log_analysis(ctx: Run, stats: dict) -> Analysis:
    sets, before, after = stats["sets"], stats["before"], stats["after"]
    ent_base, ent_trained, ent_own = (sets[k].mean_entropy for k in [("corpus", "base"), ("corpus", "trained"), ("own_answers", "base")])
    metrics = {
        "analysis/corpus/student_entropy": ent_base,
        "analysis/corpus/trained_entropy": ent_trained,
        "analysis/own_answers/student_entropy": ent_own,
        "analysis/pca_shift/corpus_vs_own": before["shift"],
        "analysis/pca_shift/trained_vs_base": after["shift"],
        "analysis/repr_sim/corpus_vs_own": stats["repr_sim"],
    }
    ctx.tracker.log(metrics)
    for which, (comparison, ref_label, other_label) in PCA_VIEWS.items():
        r = stats[which]
        ctx.tracker.plot(f"analysis/pca_{comparison}", plots.pca_scatter(r["ref_xy"], r["other_xy"], ref_label, other_label, r["shift"]))
    ctx.tracker.table("analysis/entropy_per_example", entropy_rows(sets, stats["ids"]))
    ctx.tracker.table("analysis/pca_points", pca_rows(stats))
    log.info("analysis: corpus entropy under the student %.3f nats (trained %.3f); PCA shift corpus-vs-own %.2f, trained-vs-base %.2f; "
             "representation similarity corpus-vs-own %.3f", ent_base, ent_trained, before["shift"], after["shift"], stats["repr_sim"])  # fmt: skip
    return Analysis(metrics)


def entropy_rows(sets: dict, ids: dict) -> list[dict]:
    """One row per probe example and model: set (corpus | own_answers), model (base | trained), entropy (nats), tokens."""
    rows = []
    for (name, model), s in sets.items():
        for qid, ent, n in zip(ids[name], s.entropy, s.tokens):
            rows.append({"set": name, "model": model, "id": qid, "entropy": None if math.isnan(ent) else float(ent), "tokens": int(n)})
    return rows


def pca_rows(stats: dict) -> list[dict]:
    """One row per point of the two PCA scatters: comparison, set (the figure's label), reference (PCA fit on it), pc1, pc2."""
    rows = []
    for which, (comparison, ref_label, other_label) in PCA_VIEWS.items():
        for label, xy, ref in [(ref_label, stats[which]["ref_xy"], True), (other_label, stats[which]["other_xy"], False)]:
            for p in xy:
                pc2 = float(p[1]) if len(p) > 1 else 0.0  # analysis.components=1: drawn on a line
                rows.append({"comparison": comparison, "set": label, "reference": ref, "pc1": float(p[0]), "pc2": pc2})
    return rows
