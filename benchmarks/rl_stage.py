"""The harness's GRPO (ded.training.grpo.fit) against a plain TRL GRPOTrainer script, in one run.

    python benchmarks/rl_stage.py                                  # ~5 minutes on 2 idle cores
    python benchmarks/rl_stage.py --prompts 16 --steps 8 --repeats 2

Both train the embedded student (SmolLM2-135M-Instruct, converted once into --cache) from the same
weights on the same prompts (multi-step word problems rendered with its chat template), with the
same GRPO settings (rl=grpo composed with the overrides below) and the same reward (the task's
answer check). ``plain`` is what a user would write from TRL's docs: a Dataset, a reward function,
GRPOConfig, GRPOTrainer.train(). ``harness`` is the rl stage's trainer: the same plus its live log
callback, PeakMemory and the checkpoint writing into a stage-cache folder. Samples per second
counts the completions GRPO generated and trained on, over the train() wall time (model loading
and saving excluded, so the ratio measures the training loop). They alternate --repeats times;
the last line is one JSON object with both figures and ``harness_over_plain`` (goal >= 0.9).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.common import SMOLLM, composed  # noqa: E402


def settings(args):
    from ded.plugins import validate

    over = ["rl=grpo", f"rl.num_generations={args.generations}", f"rl.per_device_train_batch_size={args.batch}",
            f"rl.max_completion_length={args.new_tokens}", f"rl.max_steps={args.steps}", "rl.temperature=1.0",
            "rl.learning_rate=2e-6", "paths.output_dir=/unused"]  # fmt: skip
    return validate(composed(over)).rl


def plain(path: str, rows: list[dict], rl_cfg, out: str) -> float:
    """A plain TRL script: the rows, one reward function, GRPOConfig with the same values, train()."""
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import GRPOConfig, GRPOTrainer

    from ded.grading.answers import check_answers
    from ded.training.grpo import grpo_args

    def correct(prompts, completions, answer, kind, **_):
        return [float(v.correct) for v in check_answers(list(zip(completions, answer, kind)))]

    from dataclasses import fields

    tok = AutoTokenizer.from_pretrained(path)
    tok.padding_side = "left"
    args = grpo_args(rl_cfg)
    if "activation_checkpointing" not in {f.name for f in fields(GRPOConfig)}:  # transformers' older name
        args["gradient_checkpointing"] = args.pop("activation_checkpointing")
    cfg = GRPOConfig(output_dir=out, **args, use_cpu=not torch.cuda.is_available(), save_strategy="no", report_to="none")
    trainer = GRPOTrainer(model=AutoModelForCausalLM.from_pretrained(path), reward_funcs=[correct], args=cfg,
                          train_dataset=Dataset.from_list(rows), processing_class=tok)  # fmt: skip
    t0 = time.perf_counter()
    trainer.train()
    return time.perf_counter() - t0


def harness(path: str, rows: list[dict], rl_cfg, out: str) -> float:
    from ded.grading.answers import GradingSettings
    from ded.training.grpo import fit

    info = fit(path, rows, rl_cfg, out, GradingSettings(), on_log=lambda step, logs: None)
    return info["seconds"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cache", default=str(Path(tempfile.gettempdir()) / "ded_bench_cache"), help="where the student is converted once")
    ap.add_argument("--prompts", type=int, default=8)
    ap.add_argument("--generations", type=int, default=4)
    ap.add_argument("--batch", type=int, default=8, help="completions per step (whole groups)")
    ap.add_argument("--new-tokens", type=int, default=64)
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()

    from transformers import AutoTokenizer

    from ded.core.models import local_checkpoint
    from ded.data.multistep import build
    from ded.training.grpo import render_prompts

    path = local_checkpoint(SMOLLM, args.cache)
    pool, _ = build(args.prompts, 1, [1, 2], seed=0)
    rows = render_prompts(AutoTokenizer.from_pretrained(path), pool, [])
    rl_cfg = settings(args)
    samples = args.steps * args.batch  # completions generated and trained on per run
    times: dict[str, list[float]] = {"plain": [], "harness": []}
    for r in range(args.repeats):
        for name, fn in (("plain", plain), ("harness", harness)):
            with tempfile.TemporaryDirectory() as out:
                s = fn(path, rows, rl_cfg, out)
            times[name].append(s)
            print(f"repeat {r + 1} {name:8s} {s:7.1f} s  {samples / s:6.2f} samples/s", flush=True)
    rate = {name: samples / statistics.median(t) for name, t in times.items()}
    print(json.dumps({"samples_per_run": samples, "plain_samples_per_s": round(rate["plain"], 3),
                      "harness_samples_per_s": round(rate["harness"], 3),
                      "harness_over_plain": round(rate["harness"] / rate["plain"], 3)}))  # fmt: skip


if __name__ == "__main__":
    main()
