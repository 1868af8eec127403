"""ded.training.grpo and the rl stage: the reward is the evaluation's verdict, GRPO runs for real on
the embedded student (TRL's GRPOTrainer), its checkpoint is cached by what sets its weights, and a
killed RL stage publishes nothing and is trained again by the same command."""

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import ROOT, compose

from ded.config import ConfigError
from ded.core.cache import StageCache
from ded.data import Question
from ded.evaluation.scoring import score
from ded.grading.answers import GradingSettings
from ded.grading.code import make_spec
from ded.plugins import validate
from ded.sandbox import check_isolation
from ded.training import grpo

SQUARE = make_spec("assert", entry_point="square", test_code="def check(candidate):\n    assert candidate(4) == 16\n    assert candidate(-3) == 9\n")


def _code_block(code: str) -> str:
    return f"Here it is.\n\n```python\n{code}\n```\n"


CASES = {  # kind: (question, responses: right, wrong, unanswered, answered only inside the thought)
    "math": (Question("m", "Solve.", "\\frac{1}{2}"), ["\\boxed{0.5}", "\\boxed{2}", "a half", "<think>\\boxed{1/2}</think> no idea"]),
    "gsm8k": (Question("g", "How many?", "1234", kind="gsm8k"), ["#### 1,234", "The answer is $1,235.", "many", "<think>1234</think> dunno"]),
    "choice": (Question("c", "Which? A. x B. y", "B", kind="choice"), ["The answer is (B).", "The answer is (A).", "hmm", "<think>B</think>"]),
    "code": (Question("s", "Write square(x).", SQUARE, kind="code"),
             [_code_block("def square(x):\n    return x * x"), _code_block("def square(x):\n    return 2 * x"), "no code",
              f"<think>{_code_block('def square(x):    return x * x')}</think>"]),
}  # fmt: skip


@pytest.mark.parametrize("kind", list(CASES))
def test_the_reward_is_the_evaluations_verdict_on_the_same_answers(kind):
    if kind == "code" and (why := check_isolation()):
        pytest.skip(f"no sandbox here: {why}")
    q, responses = CASES[kind]
    settings = GradingSettings()
    funcs, weights = grpo.reward_funcs(compose(["rl=grpo"]).rl, settings)
    rewards = funcs[0](prompts=["p"] * len(responses), completions=responses, answer=[q.answer] * len(responses), kind=[q.kind] * len(responses))
    verdicts = [score([q], {q.id: [{"text": r, "n_tokens": 1, "finish": "stop"}]}, settings)["per_question"][q.id] for r in responses]
    assert rewards == verdicts
    assert rewards[:3] == [1.0, 0.0, 0.0]  # and the cases are what they say: right, wrong, unanswered
    assert weights == [1.0]


def test_the_format_reward_asks_for_an_answer_where_the_checker_looks():
    funcs, weights = grpo.reward_funcs(compose(["rl=grpo", "rl.format_weight=0.5"]).rl, GradingSettings())
    assert [f.__name__ for f in funcs] == ["correct", "format"] and weights == [1.0, 0.5]
    got = funcs[1](prompts=[""] * 4, completions=["\\boxed{7}", "seven", "```python\nx = 1\n```", "x = 1"],
                   answer=["7", "7", "", ""], kind=["math", "math", "code", "code"])  # fmt: skip
    assert got == [1.0, 0.0, 1.0, 0.0]


def test_the_rl_settings_compose_validate_and_name_the_key_at_fault():
    conf = validate(compose(["rl=grpo", "paths.output_dir=/nonexistent/out"]))
    assert conf.rl.enabled and conf.rl.init == "sft" and not validate(compose(["paths.output_dir=/x"])).rl.enabled
    with pytest.raises(ConfigError, match="rl.num_generations.*divide"):
        validate(compose(["rl=grpo", "rl.num_generations=3", "paths.output_dir=/x"]))
    with pytest.raises(ConfigError, match="rl.init"):
        validate(compose(["rl=grpo", "rl.init=scratch", "paths.output_dir=/x"]))
    args = grpo.grpo_args(conf.rl)  # TRL's names, and none of the harness's own
    assert args["num_generations"] == conf.rl.num_generations and not {"method", "init", "prompts", "band"} & set(args)


@pytest.mark.parametrize("preset", ["rlvr_cpu", "paper_32b_rl"])
def test_the_rl_presets_compose_and_validate(preset):
    conf = validate(compose([f"experiment={preset}", "paths.output_dir=/x"]))
    assert conf.rl.enabled
    batch = conf.rl.per_device_train_batch_size * conf.rl.gradient_accumulation_steps
    assert batch % conf.rl.num_generations == 0


def test_the_paper_rl_preset_passes_the_preflight_for_another_machine_and_names_what_this_one_lacks():
    from ded.preflight import problems

    cfg = compose(["experiment=paper_32b_rl", "paths.output_dir=x"])
    assert problems(cfg, here=False) == []  # its values: what a submitit job checks before it is sent to the cluster
    here = problems(cfg)
    assert any("rl.use_vllm=true" in p and "GPUs" in p for p in here), here  # and here, the GPUs GRPO's vLLM needs


def _rows(tok, n=2):
    qs = [Question(f"q{i}", f"What is {i} + {i}? Put the answer in \\boxed{{}}.", str(2 * i)) for i in range(1, n + 1)]
    return grpo.render_prompts(tok, qs, [])


TINY_RL = ["rl=grpo", "rl.num_generations=4", "rl.per_device_train_batch_size=4", "rl.max_completion_length=8", "rl.max_steps=1",
           "rl.learning_rate=1e-4", "rl.temperature=1.0", "paths.output_dir=/x"]  # fmt: skip


def test_grpo_learns_only_from_groups_whose_rewards_differ_and_caches_its_checkpoint(tmp_path, smollm_path, monkeypatch):
    """What a tiny CPU run can show without luck: with one reward for every completion (each group's
    rewards alike: no advantage) and no KL term, GRPO's gradient is zero and the weights stay put;
    with a reward that tells completions apart, the same run moves them. Live entries reach the sink
    at every step; a rerun is a cache hit that trains nothing; another setting is another checkpoint."""
    import torch
    from safetensors.torch import load_file
    from transformers import AutoTokenizer

    conf = validate(compose(TINY_RL)).rl
    rows = _rows(AutoTokenizer.from_pretrained(smollm_path))
    cache = StageCache(tmp_path / "cache")
    start = {"model": "smollm2-test"}
    before = load_file(str(Path(smollm_path) / "model.safetensors"))

    monkeypatch.setitem(grpo.REWARDS._items, "correct", lambda completions, answer, kind, settings: [0.5] * len(completions))
    entries = []
    flat_path, flat_key, info = grpo.train(smollm_path, start, rows, conf, cache, GradingSettings(), on_log=lambda s, e: entries.append((s, e)))
    assert not info["cached"] and info["steps"] == 1
    live = [e for _, e in entries if "reward" in e]
    assert len(live) == 1 and all(e["frac_reward_zero_std"] == 1.0 and e["grad_norm"] == 0.0 for e in live)
    flat = load_file(str(Path(flat_path) / "model.safetensors"))
    assert all(torch.equal(before[k], flat[k]) for k in before if k in flat)

    # a reward that prefers shorter completions: groups differ, the weights move
    monkeypatch.setitem(grpo.REWARDS._items, "correct", lambda completions, answer, kind, settings: [-float(len(c)) for c in completions])
    moved_conf = validate(compose([*TINY_RL, "rl.version=2"])).rl  # another key: the monkeypatched reward is not in the key
    moved_path, moved_key, info = grpo.train(smollm_path, start, rows, moved_conf, cache, GradingSettings())
    assert moved_key != flat_key
    moved = load_file(str(Path(moved_path) / "model.safetensors"))
    assert any(not torch.equal(before[k], moved[k]) for k in before if k in moved)
    assert any(e["frac_reward_zero_std"] < 1.0 for e in info["log_history"] if "frac_reward_zero_std" in e)

    # a cache hit builds no trainer at all: constructing one now fails the test
    import trl

    def no_trainer(*a, **kw):
        raise AssertionError("a cache hit constructed a GRPOTrainer")

    monkeypatch.setattr(trl, "GRPOTrainer", no_trainer)
    again_path, again_key, again = grpo.train(smollm_path, start, rows, conf, cache, GradingSettings())
    assert again["cached"] and (again_path, again_key) == (flat_path, flat_key)
    assert again["log_history"] == json.loads((Path(flat_path) / "rl_info.json").read_text())["log_history"]


def _run(args, cache, out, **kw):
    return subprocess.Popen([sys.executable, str(ROOT / "run.py"), *args, f"paths.cache_dir={cache}", f"hydra.run.dir={out}"],
                            cwd=out.parent, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)  # fmt: skip


@pytest.mark.slow  # three tiny runs with GRPO, about 6 minutes on 2 cores (340 s measured under load)
def test_a_killed_rl_stage_publishes_nothing_and_the_same_command_trains_it_then_reuses_it(tmp_path, cache_dir):
    args = ["debug=tiny", "logger=none", "analysis.enabled=false", "corpus.pool_size=12", *TINY_RL[:-1], "rl.prompts=2"]
    rl_dir = Path(cache_dir) / "stages" / "rl"
    proc = _run(args, cache_dir, tmp_path / "killed")
    deadline = time.time() + 900
    while time.time() < deadline and proc.poll() is None and not list(rl_dir.glob("*.tmp")):
        time.sleep(0.1)
    assert proc.poll() is None, "the run ended before the rl stage"
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    assert not [p for p in rl_dir.iterdir() if p.is_dir() and not p.name.endswith(".tmp")]  # nothing published
    for name, cached in (("resumed", False), ("again", True)):
        p = _run(args, cache_dir, tmp_path / name)
        _, err = p.communicate(timeout=900)
        assert p.returncode == 0, err[-3000:]
        record = json.loads((tmp_path / name / "metrics.json").read_text())
        assert record["rl/cached"] is cached and record["rl/steps"] == 1
        assert "eval/heldout/rl/avg@2" in record and "eval/heldout/rl_minus_trained_avg@2" in record
        history = [json.loads(line) for line in (tmp_path / name / "history.jsonl").read_text().splitlines()]
        assert [h["step"] for h in history if "rl/reward" in h] == [1]  # the live curve (replayed on a cache hit)
        prov = json.loads((tmp_path / name / "eval.json").read_text())["provenance"]
        assert prov["rl_init"] == "sft" and len(prov["rl_checkpoint"]) == 16 and prov["rl_checkpoint"] != prov["trained_checkpoint"]


@pytest.mark.slow  # 24 real samples from the base student, ~1 min on 2 cores under load
def test_the_band_keeps_only_prompts_the_starting_policy_solves_sometimes(tmp_path, cache_dir):
    """rl.band: the base student (three worked examples) samples 4 answers to each of 4 easy sums and
    2 sums whose gold is wrong (no answer can match) at GRPO's temperature; a prompt it always or
    never solves is dropped."""
    from ded.core.cache import StageCache
    from ded.data import arithmetic
    from ded.reporting.tracking import Tracker
    from ded.stages import Run
    from ded.stages.rl import in_band

    cfg = compose(["debug=tiny", "logger=none", "rl=grpo", "rl.band=true", "rl.num_generations=4", "rl.per_device_train_batch_size=4",
                   "rl.max_completion_length=24", "student.fewshot=3", f"paths.cache_dir={cache_dir}", f"paths.output_dir={tmp_path / 'run'}"])  # fmt: skip
    conf = validate(cfg)
    ctx = Run(conf, Tracker(cfg, conf.paths.output_dir), cache_dir, StageCache(cache_dir))
    never = [Question("never-1", "What is $2 + 2$?", "-7", domain="arithmetic"), Question("never-2", "What is $3 + 3$?", "-9", domain="arithmetic")]
    prompts = arithmetic.build(4, 1, [1, 2], seed=3)[0] + never
    kept, rates = in_band(ctx, prompts, None, None)
    assert set(rates) == {q.id for q in prompts}
    assert kept == [q for q in prompts if 0 < rates[q.id] < 1]  # in pool order, only the mixed ones
    assert rates["never-1"] == rates["never-2"] == 0 and not {"never-1", "never-2"} & {q.id for q in kept}
    assert kept, rates  # the easy sums: solved sometimes at temperature 1 (all four measured here, 0.25-0.75)
