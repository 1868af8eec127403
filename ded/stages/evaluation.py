"""Stage 8, evaluation: avg@k of the base and the trained student (and, after ``rl=grpo``, the RL
student) on the held-out split and every benchmark in ``eval.sets``, the in- and out-of-domain
deltas, and eval.json with everything that changes an evaluation number (provenance) beside the results."""

from __future__ import annotations

import json
from dataclasses import dataclass

from ded.data.evalsets import scope_of
from ded.evaluation.scoring import score
from ded.generation import generate_cached
from ded.generation.factory import make_backend
from ded.reporting import plots
from ded.reporting.artifacts import log_eval_artifact
from ded.reporting.results import with_sortable_k_free as k_free  # beside each avg@<k> name its sortable k-free name
from ded.stages import Run, prompt_prefix_for, sampling_args, stage
from ded.stages.questions import Questions
from ded.stages.training import Trained


@dataclass
class Evaluation:
    results: dict[str, dict[str, dict]]  # split -> "base" | "trained" | "rl" -> ded.evaluation.scoring.score(...) (per_question included)
    deltas: dict[str, float]  # split -> trained avg@k - base avg@k
    k: int

    def summary(self) -> list[str]:
        k, lines = self.k, []
        for split, r in self.results.items():
            b, t = r["base"], r["trained"]
            rl = f" -> rl {r['rl'][f'avg@{k}']:.3f} ± {r['rl'][f'avg@{k}_se']:.3f}" if "rl" in r else ""
            lines.append(
                f"{'held-out' if split == 'heldout' else split} avg@{k} over {b['questions']} questions: "
                f"base {b[f'avg@{k}']:.3f} ± {b[f'avg@{k}_se']:.3f} -> trained {t[f'avg@{k}']:.3f} ± {t[f'avg@{k}_se']:.3f} "
                f"(delta {self.deltas[split]:+.3f}){rl}"
            )
        return lines


def split_sampling(ctx: Run, split: str) -> dict:
    return sampling_args(ctx.cfg.eval.sampling_for(split)[0])


@stage("evaluation")
def run(ctx: Run, questions: Questions, trained: Trained, rl=None) -> Evaluation:
    """`rl`: the RL stage's ``RLTrained`` (rl=grpo), scored beside base and trained as ``eval/<split>/rl/...``."""
    cfg = ctx.cfg
    results: dict[str, dict] = {split: {} for split in questions.splits}
    models = [("base", None, None), ("trained", trained.path, {"model": f"ckpt:{trained.key}", "dtype": cfg.student.dtype})]
    if rl is not None:
        models.append(("rl", rl.path, {"model": f"ckpt:{rl.key}", "dtype": cfg.student.dtype}))
    for model, path, identity in models:
        backend = make_backend(cfg.student, ctx.cache_root, role="student", path=path, identity=identity)  # loads only if a sample is missing
        for split, qs in questions.splits.items():
            results[split][model], samples = sample_and_score(ctx, backend, model, split, qs)
            if split == "heldout" and cfg.eval.answer_entropy:
                results[split][model]["answer_entropy"] = answer_entropy(ctx, model, path, qs, samples)
        backend.close()
    k = cfg.eval.k
    ev = Evaluation(results, {split: r["trained"][f"avg@{k}"] - r["base"][f"avg@{k}"] for split, r in results.items()}, k)
    final = "rl" if rl is not None else "trained"  # the run's last model, under one name for suites that mix rl=none and rl=grpo arms
    ctx.tracker.log(k_free({f"eval/{split}/final/{key}": v for split, r in results.items() for key, v in r[final].items()
                            if key not in ("by_level", "per_question")}, k) | {"eval/final_model": final, "eval_k": k})  # fmt: skip
    if rl is not None:  # what RL added to distillation (rl.init=sft), or RL alone against the base (rl.init=base)
        ctx.tracker.log(k_free({f"eval/{split}/rl_minus_trained_avg@{k}": r["rl"][f"avg@{k}"] - r["trained"][f"avg@{k}"] for split, r in results.items()}, k))
        ctx.tracker.log(k_free({f"eval/{split}/rl_minus_base_avg@{k}": r["rl"][f"avg@{k}"] - r["base"][f"avg@{k}"] for split, r in results.items()}, k))
    log_evaluation(ctx, ev, trained, questions.trained_areas, rl)
    return ev


def sample_and_score(ctx: Run, backend, model: str, split: str, qs) -> dict:
    """ded.evaluation.scoring.score of `model` on one split; the samples come from (and go to) the cache."""
    samples, st = generate_cached(backend, ctx.cache_root, qs, ctx.cfg.eval.k, prefix=prompt_prefix_for(ctx.cfg.student),
                                  sampling=split_sampling(ctx, split), seed=ctx.seed, desc=f"eval {split} {model}")  # fmt: skip
    res = score(qs, samples, ctx.grading)
    scalars = {key: v for key, v in res.items() if key not in ("by_level", "per_question")}  # per_question: eval.json only
    ctx.tracker.log(k_free({f"eval/{split}/{model}/{key}": v for key, v in (scalars | {"new_samples": st.new_samples}).items()}, ctx.cfg.eval.k))
    if split == "heldout":
        ctx.tracker.log({f"eval/{split}/{model}/level{lv}": v for lv, v in res["by_level"].items()})
    return res, samples


def answer_entropy(ctx: Run, model: str, path: str | None, qs, samples: dict) -> float:
    """Mean token entropy (nats) of a model's own answers under that model, teacher-forced: the first
    answer to each of the first ``eval.answer_entropy`` held-out questions (ded/evaluation/probes.py)."""
    from ded.core.models import load_model, local_checkpoint  # transformers: loaded only when asked for
    from ded.evaluation.probes import example_stats  # torch: loaded only when asked for
    from ded.training.sft import to_dataset_rows  # trl: loaded only when asked for

    cfg = ctx.cfg
    lm, tok = load_model(path or local_checkpoint(cfg.student.path, ctx.cache_root, cfg.student.revision), "", cfg.student.dtype)
    rows = [{"question": q.text, "response": samples[q.id][0]["text"]} for q in qs[: cfg.eval.answer_entropy]]
    ent = example_stats(lm, tok, to_dataset_rows(tok, rows, prompt_prefix_for(cfg.student))).mean_entropy
    ctx.tracker.log({f"eval/heldout/{model}/answer_entropy": ent})
    return ent


def log_evaluation(ctx: Run, ev: Evaluation, trained: Trained, areas: frozenset[str] = frozenset({"math"}), rl=None) -> None:
    """`areas`: what the train pool covers; a benchmark of another area is out of domain."""
    k, t = ev.k, ctx.tracker
    t.log(k_free({f"eval/{split}/delta_avg@{k}": d for split, d in ev.deltas.items()}, k))
    for scope, label in (("in", "in_domain"), ("out", "out_of_domain")):  # DED's claim: a small curated corpus keeps out-of-domain skill
        if ds := [d for split, d in ev.deltas.items() if scope_of(split, areas) == scope]:
            t.log(k_free({f"eval/{label}/delta_avg@{k}": sum(ds) / len(ds)}, k))
    table = t.table("eval/summary", [
        {"split": split, "domain": scope_of(split, areas), **{f"{m}_avg@{k}": r[m][f"avg@{k}"] for m in r},
         **{f"{m}_se": r[m][f"avg@{k}_se"] for m in r}, "delta": ev.deltas[split]}
        for split, r in ev.results.items()
    ])  # fmt: skip
    record = t.write("eval.json", json.dumps({"provenance": provenance(ctx, trained, rl), "results": ev.results}, indent=1, default=str))
    log_eval_artifact(ctx, trained, record, table)  # W&B: eval.json + the summary table, the model artifact its input
    t.plot("eval/accuracy_by_level", plots.accuracy_by_level(ev.results["heldout"]["base"], ev.results["heldout"]["trained"], k))


def provenance(ctx: Run, trained: Trained, rl=None) -> dict:
    """Everything that changes an evaluation number, stored beside it."""
    import importlib.metadata as md
    from dataclasses import asdict

    cfg = ctx.cfg
    return {
        "student": {"path": cfg.student.path, "revision": cfg.student.revision, "dtype": cfg.student.dtype},
        "trained_checkpoint": trained.key,
        **({"rl_checkpoint": rl.key, "rl_init": rl.init} if rl is not None else {}),
        "backend": cfg.student.backend,
        "versions": {pkg: md.version(pkg) for pkg in ("torch", "transformers", "trl", "math-verify")},
        "sampling": {split: split_sampling(ctx, split) for split in ["heldout", *cfg.eval.sets]},
        "seed": ctx.seed,
        "k": cfg.eval.k,
        "eval_window": {"since": cfg.eval.since, "until": cfg.eval.until},
        "sandbox": asdict(cfg.sandbox),
        "prompt_prefix": prompt_prefix_for(cfg.student),
    }
