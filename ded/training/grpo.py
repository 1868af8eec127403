"""RLVR after distillation: GRPO with TRL's ``GRPOTrainer``, rewarded by the task's own answer check.

    python run.py experiment=rlvr_cpu            # DED, then GRPO on the multi-step task (CPU, ~15 min)
    python run.py rl=grpo rl.init=base           # RL alone, from the base student

The reward is ``ded.grading.answers.check_answers``, the function the evaluation scores with, so a
reward and a score can never disagree; code is graded in the sandbox, in parallel. A reward is a
plug-in (``REWARDS``): a new one is one function of (completions, answer, kind). The checkpoint
is cached like the SFT one, by a key of everything that sets its weights; a killed run leaves no
half-published checkpoint and the next run trains it again from its start.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from dataclasses import asdict
from pathlib import Path

from ded.config import HARNESS_RL_FIELDS
from ded.core.cache import StageCache, short_hash
from ded.core.memory import PeakMemory
from ded.core.models import ModelNotAvailable
from ded.core.reasoning import split_reasoning
from ded.core.registry import Registry
from ded.grading.answers import GradingSettings, check_answers, final_text
from ded.training.sft import check_optim, checkpointing_by_its_name, log_callback

log = logging.getLogger(__name__)

REWARDS: Registry = Registry("rl.rewards")


@REWARDS.register("correct")
def correct(completions: list[str], answer: list[str], kind: list[str], settings: GradingSettings) -> list[float]:
    """1 where the task's checker accepts the answer, else 0: the evaluation's own verdict."""
    return [float(v.correct) for v in check_answers(list(zip(completions, answer, kind)), settings=settings)]


@REWARDS.register("format")
def has_answer(completions: list[str], answer: list[str], kind: list[str], settings: GradingSettings) -> list[float]:
    """1 where the response commits to an answer where its checker looks (code: a ```python block)."""
    def ok(text: str, k: str) -> bool:
        _, text = split_reasoning(text)
        return "```python" in text if k == "code" else final_text(text) is not None

    return [float(ok(c, k)) for c, k in zip(completions, kind)]


def reward_funcs(rl_cfg, settings: GradingSettings) -> tuple[list, list[float]]:
    """TRL reward callables (named, for TRL's ``rewards/<name>/mean``) and their weights."""
    names = ["correct"] + (["format"] if rl_cfg.format_weight > 0 else [])

    def bind(name):
        def reward(prompts, completions, answer, kind, **_):
            return REWARDS[name](list(completions), list(answer), list(kind), settings)

        reward.__name__ = name
        return reward

    return [bind(n) for n in names], [1.0] + ([float(rl_cfg.format_weight)] if rl_cfg.format_weight > 0 else [])


def check_environment(rl_cfg) -> None:
    """Raise ModelNotAvailable, naming the key, when the RL settings ask for what this machine lacks:
    vLLM generation inside GRPO needs vLLM and GPUs (TRL colocates the engine with training on CUDA)."""
    import importlib.util

    check_optim(rl_cfg.optim, "rl.optim")
    if not rl_cfg.use_vllm:
        return
    need = []
    if importlib.util.find_spec("vllm") is None:
        need.append("rl.use_vllm=true needs vLLM (pip install vllm)")
    import torch

    if (have := torch.cuda.device_count()) < rl_cfg.vllm_tensor_parallel_size:
        need.append(f"rl.use_vllm=true with rl.vllm_tensor_parallel_size={rl_cfg.vllm_tensor_parallel_size} needs as many GPUs and this "
                    f"machine has {have}")  # fmt: skip
    if need:
        raise ModelNotAvailable("; ".join(need) + ". On CPU GRPO generates with transformers: rl.use_vllm=false.")


def grpo_args(rl_cfg) -> dict:
    """The RL config's TRL fields, under GRPOConfig's own names."""
    return {k: v for k, v in asdict(rl_cfg).items() if k not in HARNESS_RL_FIELDS}


def build_grpo_config(rl_cfg, output_dir: str, weights: list[float]):
    """TRL's own GRPOConfig, so TRL's argument checks run."""
    import torch
    from trl import GRPOConfig

    args = grpo_args(rl_cfg)
    checkpointing_by_its_name(args, GRPOConfig)
    return GRPOConfig(
        output_dir=output_dir,
        **args,
        reward_weights=weights,
        use_cpu=not torch.cuda.is_available(),
        data_seed=args["seed"],
        save_strategy="no",
        report_to="none",  # entries reach the run record and W&B through log_callback, as they happen
        disable_tqdm=False,
    )


def render_prompts(tok, questions, prefix: list[dict]) -> list[dict]:
    """Dataset rows: the prompt exactly as the evaluation renders it, and what the reward checks against."""
    rows = []
    for q in questions:
        msgs = list(prefix) + [{"role": "user", "content": q.text}]
        rows.append({"prompt": tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True),
                     "answer": q.answer, "kind": q.kind, "id": q.id})  # fmt: skip
    return rows


def rl_key(start: dict, rows: list[dict], rl_cfg) -> str:
    """Everything that sets the RL checkpoint's weights: the model it starts from, its prompts, the
    GRPO settings (logging aside), the rewards and their weights, the harness's version."""
    args = {k: v for k, v in grpo_args(rl_cfg).items() if k != "logging_steps"}
    return short_hash(start, [(r["prompt"], r["answer"], r["kind"]) for r in rows], args, rl_cfg.format_weight, rl_cfg.version)


def fit(start_path: str, rows: list[dict], rl_cfg, out_dir: str, settings: GradingSettings, on_log=None) -> dict:
    """GRPO from `start_path` on the prompt rows; the checkpoint and rl_info.json go into out_dir."""
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import GRPOTrainer

    tok = AutoTokenizer.from_pretrained(start_path)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    tok.padding_side = "left"  # generation pads prompts on the left
    funcs, weights = reward_funcs(rl_cfg, settings)
    trainer = GRPOTrainer(
        model=AutoModelForCausalLM.from_pretrained(start_path),
        reward_funcs=funcs,
        args=build_grpo_config(rl_cfg, str(Path(out_dir) / "trainer"), weights),
        train_dataset=Dataset.from_list(rows),
        processing_class=tok,
    )
    trainer.add_callback(log_callback(on_log))  # live entries; a dropped SIGTERM is raised again at a step's end
    t0 = time.perf_counter()
    with PeakMemory() as mem:
        result = trainer.train()
    info = {
        "seconds": time.perf_counter() - t0,
        "train_loss": result.training_loss,
        "steps": trainer.state.global_step,
        "prompts": len(rows),
        "log_history": trainer.state.log_history,
        "peak_rss_gb": mem.gb,
    }
    trainer.save_model(out_dir)
    tok.save_pretrained(out_dir)
    (Path(out_dir) / "rl_info.json").write_text(json.dumps(info))
    shutil.rmtree(Path(out_dir) / "trainer", ignore_errors=True)
    return info


def train(start_path: str, start: dict, rows: list[dict], rl_cfg, cache: StageCache, settings: GradingSettings, on_log=None):
    """(checkpoint dir, key, info): cached by ``rl_key``; info['cached'] says whether it was trained now."""
    key = rl_key(start, rows, rl_cfg)

    def cached(ckpt: Path):
        return str(ckpt), key, {"cached": True, **json.loads((ckpt / "rl_info.json").read_text())}

    if (hit := cache.get("rl", key)) is not None:
        log.info("rl: cached checkpoint %s", hit)
        return cached(hit)
    with cache.build("rl", key, {"start": start, "prompts": len(rows)}) as tmp:
        if tmp is None:  # another job trained it while we waited for the lock
            return cached(cache.path("rl", key))
        info = fit(start_path, rows, rl_cfg, str(tmp), settings, on_log=on_log)
    return str(cache.path("rl", key)), key, {"cached": False, **info}
