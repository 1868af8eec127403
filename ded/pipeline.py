"""The DED pipeline, stage by stage, owning the run's record and W&B run.

    python run.py                       # embedded CPU default, ~6 minutes on 2 cores
    python run.py debug=tiny            # a minute or two

questions -> pass rate -> trajectories -> verify/filter -> select -> train -> analyze -> evaluate
Every generation goes through the per-sample cache, the checkpoint through the stage cache,
so a rerun, a diversity change or a corpus-size change regenerates nothing.
"""

from __future__ import annotations

import json
import logging
import random
import time

import matplotlib.pyplot as plt
from omegaconf import DictConfig

from ded import plots
from ded.cache import StageCache, short_hash
from ded.config import validate, value
from ded.data import load_task
from ded.data.benchmarks import REGISTRY, load_benchmark
from ded.diversity import diversity_report
from ded.evaluate import score
from ded.generation import GenerationStats, generate_cached, prompt_prefix
from ded.generation.factory import make_backend, model_identity
from ded.models import load_model, local_checkpoint
from ded.filters import Complete, Correct, FilterLog, Language, Length, PassRateFilter, Repetition, ThinkFormat, run_filters
from ded.select import allocate, pass_rates, select
from ded.tracking import Tracker
from ded.train import check_environment as check_train_environment
from ded.train import train

log = logging.getLogger("ded")


def _prefix(mcfg, task: str) -> list[dict]:
    """System turn + `fewshot` worked examples. The arithmetic task's examples serve every task:
    what they teach a small model is the answer format (a final \\boxed{} answer)."""
    from ded.data.arithmetic import fewshot_messages

    return prompt_prefix(mcfg.system_prompt, fewshot_messages(mcfg.fewshot) if mcfg.fewshot else [])


def trajectory_filters(fc) -> list:
    """The configured trajectory filters, cheapest first (an item is dropped by the first that rejects it)."""
    fs = [Complete()]
    if fc.min_tokens or fc.max_tokens:
        fs.append(Length(fc.min_tokens, fc.max_tokens))
    if fc.think_format:
        fs.append(ThinkFormat())
    if fc.repetition:
        fs.append(Repetition())
    if fc.language:
        fs.append(Language())
    return fs + [Correct()]


def _domain(split: str) -> str:
    return "in" if split == "heldout" else REGISTRY[split].domain


def _sampling(s) -> dict:
    return {"temperature": float(s.temperature), "top_p": float(s.top_p), "max_new_tokens": int(s.max_new_tokens)}


def analyze(cfg, tracker, student_path, ckpt, corpus, kept, s_samples, prefix) -> None:
    """Entropy of the corpus under the base and trained student; PCA shifts (DESIGN.md definitions)."""
    from ded.analysis import pca_shift, response_stats
    from ded.train import to_dataset_rows

    n = cfg.analysis.probe_size
    rng = random.Random(short_hash(cfg.generation.seed, "probe"))
    probe = rng.sample(corpus, min(n, len(corpus)))
    # The student's own answers to the same kind of questions (its pass-rate samples).
    own = [{"question": q.text, "response": s_samples[q.id][0]["text"]} for q in kept]
    own = rng.sample(own, min(n, len(own)))
    base, tok = load_model(student_path, "", "float32")
    rows_corpus = to_dataset_rows(tok, probe, prefix)
    ent_base, h_corpus = response_stats(base, tok, rows_corpus)
    ent_own, h_own = response_stats(base, tok, to_dataset_rows(tok, own, prefix))
    del base
    trained, _ = load_model(ckpt, "", "float32")
    ent_trained, h_trained = response_stats(trained, tok, rows_corpus)
    del trained
    k = cfg.analysis.components
    before = pca_shift(h_own, h_corpus, k)  # teacher corpus vs the student's own answers (a pre-training predictor)
    after = pca_shift(h_corpus, h_trained, k)  # the student before vs after training, on the same probe
    tracker.log({
        "analysis/corpus/student_entropy": ent_base,
        "analysis/corpus/trained_entropy": ent_trained,
        "analysis/own_answers/student_entropy": ent_own,
        "analysis/pca_shift/corpus_vs_own": before["shift"],
        "analysis/pca_shift/trained_vs_base": after["shift"],
    })
    tracker.plot("analysis/pca_corpus_vs_own", plots.pca_scatter(before["ref_xy"], before["other_xy"], "student's own answers", "teacher corpus", before["shift"]))
    tracker.plot("analysis/pca_trained_vs_base", plots.pca_scatter(after["ref_xy"], after["other_xy"], "base student", "trained student", after["shift"]))
    plt.close("all")
    log.info("analysis: corpus entropy under the student %.3f nats (trained %.3f); PCA shift corpus-vs-own %.2f, trained-vs-base %.2f",
             ent_base, ent_trained, before["shift"], after["shift"])


def run(cfg: DictConfig) -> dict:
    validate(cfg)
    t_start = time.perf_counter()
    cache_root = str(cfg.paths.cache_dir)
    stages = StageCache(cache_root)
    tracker = Tracker(cfg, cfg.paths.output_dir)
    seed = int(cfg.generation.seed)
    ok = False
    try:
        # ── models ──────────────────────────────────────────────────────────────────────
        # Every backend says up front whether it can run here (model files, endpoint, vLLM, dataset),
        # so a run on the wrong machine stops before any work with what is missing.
        student = make_backend(cfg.student, cache_root, role="student")
        teacher = make_backend(cfg.teacher, cache_root, role="teacher")
        student.check()
        teacher.check()
        check_train_environment(cfg.train)  # liger-kernel / flash-attn where the config asks for them
        student_id = model_identity(cfg.student)
        student_path = local_checkpoint(cfg.student.path, cache_root, cfg.student.revision)  # what training loads

        # ── questions ───────────────────────────────────────────────────────────────────
        pool, held_out = load_task(cfg)
        # Benchmarks are read now so a missing file stops the run before any generation.
        splits = [("heldout", held_out)] + [
            (b, load_benchmark(b, cfg.eval.data_dir, cfg.eval.limit)) for b in cfg.eval.benchmarks
        ]
        dc = cfg.corpus.decontam
        if dc.enabled:
            from ded.data.decontam import decontaminate

            bench = {name: [q.text for q in qs] for name, qs in splits if name != "heldout"}
            cur = decontaminate(pool, bench, n=dc.n, min_overlap=dc.min_overlap, fuzzy_threshold=dc.fuzzy_threshold, dedup=value(dc.dedup))
            tracker.log({f"data/decontam/{reason.replace(':', '_')}": c for reason, c in cur.counts.items()} | {"data/decontam/kept": len(cur.kept)})
            tracker.table("data/decontam_rejects", cur.rejects)
            if len(cur.kept) < len(pool):
                log.info("decontamination: %d of %d pool questions dropped (%s)", len(pool) - len(cur.kept), len(pool), dict(cur.counts))
            pool = cur.kept
        tracker.log({f"data/{name}/questions": len(qs) for name, qs in [("pool", pool), *splits]})
        log.info("questions: pool %d, held-out %d", len(pool), len(held_out))

        student_prefix = _prefix(cfg.student, cfg.corpus.task)
        teacher_prefix = _prefix(cfg.teacher, cfg.corpus.task)
        data_stats = GenerationStats()

        # ── pass rate: sample the student k times per question, drop what it already solves
        pr = cfg.corpus.pass_rate
        s_samples, st = generate_cached(
            student, cache_root, pool, pr.k, prefix=student_prefix, sampling=_sampling(cfg.student.sampling), seed=seed, desc="student pass-rate"
        )
        data_stats.add(st)
        rates = pass_rates(pool, s_samples)
        qlog = FilterLog()
        kept = qlog.apply(pool, PassRateFilter(rates, pr.min_rate, pr.max_rate), lambda q: {"id": q.id, "question": q.text, "pass_rate": rates[q.id]})
        student.close()
        tracker.log(
            {
                "generation/student/new_samples": st.new_samples,
                "passrate/pool/mean": sum(rates.values()) / len(rates),
                "passrate/pool/kept": len(kept),
                **{f"passrate/pool/dropped_{r}": n for r, n in qlog.dropped.items()},
            }
        )
        tracker.table("passrate/pool", [{"id": q.id, "level": q.level, "question": q.text, "pass_rate": rates[q.id]} for q in pool])
        tracker.plot("passrate/histogram", plots.pass_rate_histogram(list(rates.values()), pr.k, pr.min_rate, pr.max_rate))
        plt.close("all")
        log.info("pass rate: mean %.3f; kept %d of %d (%s)", sum(rates.values()) / len(rates), len(kept), len(pool), dict(qlog.dropped))

        # ── trajectories: N teacher samples per kept question ──────────────────────────
        tr = cfg.corpus.trajectories
        t_samples, st = generate_cached(
            teacher, cache_root, kept, tr.n, prefix=teacher_prefix, sampling=_sampling(cfg.teacher.sampling), seed=seed, desc="teacher trajectories"
        )
        data_stats.add(st)
        teacher.close()
        tracker.log(
            {
                "generation/teacher/new_samples": st.new_samples,
                "generation/teacher/new_tokens": st.new_tokens,
                "generation/teacher/tokens_per_s": st.new_tokens / st.seconds if st.seconds else None,
                "generation/new_samples": data_stats.new_samples,
            }
        )

        # ── verify / filter: keep complete, correct trajectories ───────────────────────
        tlog = FilterLog()
        filters = trajectory_filters(cfg.corpus.filters)
        candidates = {}
        for q in kept:
            items, _ = run_filters([(q, s) for s in t_samples[q.id]], filters, lambda it: {"id": it[0].id, "response": it[1]["text"]}, tlog)
            candidates[q.id] = [s["text"] for _, s in items]
        tracker.log({"filter/teacher/kept": tlog.kept, **{f"filter/teacher/dropped_{r}": n for r, n in tlog.dropped.items()}})
        tracker.table("filter/rejects", tlog.rejects + qlog.rejects)

        # ── select: P most diverse per question, then allocate corpus.size over questions
        dv = cfg.diversity
        order = [q for q in kept if candidates[q.id]]
        picks = {}
        for q in order:
            rng = random.Random(short_hash(seed, q.id, "select"))
            texts = candidates[q.id]
            idx = select(texts, tr.p, value(dv.metric), rng, dv.normalized, selector=value(dv.selector), level=value(dv.level))
            picks[q.id] = [texts[i] for i in idx]  # most valuable first: a smaller take is a prefix
        counts = allocate([len(picks[q.id]) for q in order], cfg.corpus.size, value(cfg.corpus.allocation), per_question=tr.p) if order else []
        corpus, groups = [], []
        for q, c in zip(order, counts):
            chosen = picks[q.id][:c]
            if not chosen:
                continue
            groups.append(chosen)
            corpus += [{"id": q.id, "level": q.level, "question": q.text, "answer": q.answer, "pass_rate": rates[q.id], "response": t} for t in chosen]
        duplicates = sum(len(g) - len(set(g)) for g in groups)
        if not corpus:
            why = ", ".join(f"{n} {r}" for r, n in sorted(tlog.dropped.items(), key=lambda x: -x[1])) or "none generated"
            raise RuntimeError(
                f"the corpus is empty: no kept question has a correct teacher trajectory (teacher trajectories "
                f"dropped: {why}; each one is in the run's filter/rejects table). Raise corpus.trajectories.n, "
                f"corpus.pool_size or teacher.sampling.max_new_tokens, loosen corpus.pass_rate, or use a stronger teacher."
            )
        if len(corpus) < cfg.corpus.size:
            log.warning(
                "corpus holds %d examples, fewer than corpus.size=%d: the pool yields no more. Raise corpus.pool_size "
                "or corpus.trajectories.n to reach it.",
                len(corpus),
                cfg.corpus.size,
            )
        tracker.log(
            {
                "corpus/examples": len(corpus),
                "corpus/questions": len({e["id"] for e in corpus}),
                "corpus/shortfall": max(0, cfg.corpus.size - len(corpus)),
                "corpus/duplicate_share": duplicates / len(corpus),
                # the selected set's diversity under every metric, whichever one selected it
                **{f"corpus/diversity/{k}": v for k, v in diversity_report(groups).items()},
            }
        )
        tracker.write("corpus.jsonl", "".join(json.dumps(e, ensure_ascii=False) + "\n" for e in corpus))
        tracker.table("corpus", corpus)
        log.info("corpus: %d examples from %d questions", len(corpus), len({e['id'] for e in corpus}))

        # ── train: SFT of the student on the corpus (cached by corpus + config) ─────────
        ckpt, ckpt_key, info = train(student_path, student_id, corpus, student_prefix, cfg.train, stages)
        tracker.log(
            {
                "train/cached": info["cached"],
                "train/loss": info["train_loss"],
                "train/steps": info["steps"],
                "train/seconds": info["seconds"],
                "train/loss_tokens_per_epoch": info.get("completion_tokens_per_epoch"),
                "train/batch_layout": info.get("batch_layout"),
            }
        )
        for step, loss in info["loss_curve"]:
            tracker.log({"train/loss_curve": loss}, step=step)
        tracker.plot("train/loss", plots.loss_curve(info["loss_curve"]))
        plt.close("all")

        # ── analyze: token entropy of the corpus, PCA shift of the student's representations
        if cfg.analysis.enabled:
            analyze(cfg, tracker, student_path, ckpt, corpus, kept, s_samples, student_prefix)

        # ── evaluate: base and trained student on the held-out split (+ benchmarks) ────
        ev = cfg.eval
        k = ev.k
        results: dict[str, dict[str, dict]] = {name: {} for name, _ in splits}
        for model_name, path, identity in [
            ("base", None, None),
            ("trained", ckpt, {"model": f"ckpt:{ckpt_key}", "dtype": value(cfg.student.dtype)}),
        ]:
            # loaded once, only if a sample is missing
            backend = make_backend(cfg.student, cache_root, role="student", path=path, identity=identity)
            for split, questions in splits:
                sampling = _sampling(ev.per_benchmark[split] if split in ev.per_benchmark else ev.sampling)
                samples, st = generate_cached(
                    backend, cache_root, questions, k, prefix=student_prefix, sampling=sampling, seed=seed,
                    desc=f"eval {split} {model_name}",
                )
                res = score(questions, samples)
                results[split][model_name] = res
                tracker.log({f"eval/{split}/{model_name}/{key}": v for key, v in res.items() if key != "by_level"})
                if split == "heldout":
                    tracker.log({f"eval/{split}/{model_name}/level{lv}": v for lv, v in res["by_level"].items()})
                tracker.log({f"eval/{split}/{model_name}/new_samples": st.new_samples})
            backend.close()
        deltas = {split: r["trained"][f"avg@{k}"] - r["base"][f"avg@{k}"] for split, r in results.items()}
        tracker.log({f"eval/{split}/delta_avg@{k}": d for split, d in deltas.items()})
        for dom in ("in", "out"):  # DED's claim: a small curated corpus keeps out-of-domain skill
            ds = [d for split, d in deltas.items() if _domain(split) == dom]
            if ds:
                tracker.log({f"eval/{'in_domain' if dom == 'in' else 'out_of_domain'}/delta_avg@{k}": sum(ds) / len(ds)})
        tracker.table("eval/summary", [
            {"split": split, "domain": _domain(split), **{f"{m}_avg@{k}": r[m][f"avg@{k}"] for m in r},
             **{f"{m}_se": r[m][f"avg@{k}_se"] for m in r}, "delta": deltas[split]}
            for split, r in results.items()
        ])
        import importlib.metadata as md

        provenance = {  # everything that changes an evaluation number, stored beside it
            "student": {"path": cfg.student.path, "revision": cfg.student.revision, "dtype": value(cfg.student.dtype)},
            "trained_checkpoint": ckpt_key,
            "backend": value(cfg.student.backend),
            "versions": {pkg: md.version(pkg) for pkg in ("torch", "transformers", "trl", "math-verify")},
            "sampling": {split: _sampling(ev.per_benchmark[split] if split in ev.per_benchmark else ev.sampling) for split, _ in splits},
            "seed": seed,
            "k": k,
            "prompt_prefix": student_prefix,
        }
        tracker.write("eval.json", json.dumps({"provenance": provenance, "results": results}, indent=1, default=str))
        tracker.plot("eval/accuracy_by_level", plots.accuracy_by_level(results["heldout"]["base"], results["heldout"]["trained"], k))
        plt.close("all")

        tracker.log({"run/seconds": time.perf_counter() - t_start})
        lines = []
        for split, r in results.items():
            b, t = r["base"], r["trained"]
            lines.append(
                f"{'held-out' if split == 'heldout' else split} avg@{k} over {b['questions']} questions: "
                f"base {b[f'avg@{k}']:.3f} ± {b[f'avg@{k}_se']:.3f} -> trained {t[f'avg@{k}']:.3f} ± {t[f'avg@{k}_se']:.3f} "
                f"(delta {deltas[split]:+.3f})"
            )
        lines.append(f"corpus {len(corpus)} examples; newly generated pass-rate + teacher samples: {data_stats.new_samples}")
        summary = "\n".join(lines)
        print(summary, flush=True)
        log.info(summary)
        ok = True
        return dict(tracker.metrics)
    finally:
        tracker.finish(ok)
