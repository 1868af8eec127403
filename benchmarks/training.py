"""SFT throughput of the harness's training stage vs a plain TRL SFTTrainer run, same data and settings.

    python benchmarks/training.py                  # CPU default student (SmolLM2-135M): 7 trainings (3 pairs + packed)
    python benchmarks/training.py --steps 12 --batch-size 8 --repeats 5

Three runs on the same corpus of mixed lengths, same model, batch size, steps and training settings
(learning rate, schedule, warmup, optimizer, activation checkpointing: the harness's TrainConfig, set
explicitly on the baseline too, since TRL's and transformers' own defaults differ from it: TRL turns
gradient checkpointing on, transformers picks adamw_torch_fused; those measured the configs, not the
harness's path):
  baseline  plain TRL: conversational prompt-completion rows, padded batches
  harness   ded.training.sft.make_trainer (our rendering and SFTConfig), padded batches
  packed    ded.training.sft.make_trainer with train.packing=true (rows of max_length; with sdpa on CPU,
            examples stay apart through block-diagonal masks inside each row)
Throughput is trained (non-pad) tokens per second of `trainer.train()`; the pad share is the
fraction of processed positions that are padding. Baseline and harness run in pairs, `--repeats`
times, the first of each pair alternating (the first training of a process pays one-off costs, and
load drifts); each pair gives a harness / baseline ratio measured minutes apart. Last line: one
JSON object; `ratio` is the median of those paired ratios of tokens per second (higher is better for
the harness; the target is >= 0.9), `ratio_range` their spread, `cpu_ratio` the same median on tokens
per CPU-second of the process (less sensitive to other work on the machine).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import SMOLLM, real_tokens  # noqa: E402


def mixed_corpus(n: int, seed: int) -> list[dict]:
    """Arithmetic-style responses from 1 to ~40 worked steps: lengths vary ~20x, as real corpora do."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        a, b = rng.randint(10, 99), rng.randint(10, 99)
        steps = [f"Step {j + 1}: {a} + {j} = {a + j}." for j in range(rng.choice([1, 2, 4, 8, 16, 40]))]
        out.append({"question": f"What is ${a} + {b}$?", "response": " ".join(steps) + f" The answer is $\\boxed{{{a + b}}}$."})
    return out


def run(kind: str, path: str, corpus: list[dict], args) -> dict:
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    from ded.config import TrainConfig
    from ded.training.sft import make_trainer, to_dataset_rows

    torch.manual_seed(0)
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path)
    out_dir = tempfile.mkdtemp(prefix=f"bench_{kind}_")
    common = dict(max_steps=args.steps, include_num_input_tokens_seen="non_padding", disable_tqdm=True)
    tc = TrainConfig(per_device_train_batch_size=args.batch_size, max_length=1024, packing=(kind == "packed"), bf16=args.bf16, logging_steps=1000)
    if kind == "baseline":
        rows = [
            {"prompt": [{"role": "user", "content": e["question"]}], "completion": [{"role": "assistant", "content": e["response"]}]}
            for e in corpus
        ]
        cfg = SFTConfig(
            output_dir=out_dir, per_device_train_batch_size=args.batch_size, learning_rate=tc.learning_rate, max_length=tc.max_length,
            lr_scheduler_type=tc.lr_scheduler_type, warmup_steps=tc.warmup_steps, weight_decay=tc.weight_decay, optim=tc.optim,
            gradient_checkpointing=tc.activation_checkpointing, save_strategy="no", report_to="none",
            use_cpu=not torch.cuda.is_available(), bf16=args.bf16, seed=tc.seed, logging_steps=1000, **common,
        )  # fmt: skip
        trainer = SFTTrainer(model=model, args=cfg, train_dataset=Dataset.from_list(rows), processing_class=tok)
    else:
        trainer = make_trainer(model, tok, to_dataset_rows(tok, corpus, []), tc, out_dir)
        for k, v in common.items():
            setattr(trainer.args, k, v)
    # Real tokens and pad share over the batches this run will process (same sampler seed as
    # training), counted the same way in every layout (the Trainer's own count takes the pad id,
    # which is also SmolLM2's end-of-turn, for padding when a batch has no attention mask).
    positions = real = 0
    for i, batch in enumerate(trainer.get_train_dataloader()):
        if i >= args.steps:
            break
        positions += batch["input_ids"].numel()
        real += real_tokens(batch)
    t0, c0 = time.perf_counter(), time.process_time()
    trainer.train()
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    del trainer, model
    gc.collect()  # the next arm starts without this one's model, optimizer state and activations
    return {"tokens": real, "seconds": seconds, "tokens_per_s": real / seconds, "tokens_per_cpu_s": real / cpu, "pad_share": 1 - real / positions}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--examples", type=int, default=96)
    ap.add_argument("--bf16", action="store_true")
    ap.add_argument("--repeats", type=int, default=3, help="baseline/harness pairs (the median pair ratio is reported)")
    args = ap.parse_args()
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from ded.core.models import local_checkpoint

    path = local_checkpoint(SMOLLM, os.environ.get("DED_CACHE_DIR", str(Path.home() / ".cache" / "ded")))
    corpus = mixed_corpus(args.examples, seed=0)
    res, pairs, cpu_pairs = {}, [], []
    # Pairs of baseline and harness, the first of each pair alternating: neither arm always gets the
    # process's first (cold) training or the same side of a drift in machine load.
    for rep in range(args.repeats):
        for kind in ("baseline", "harness") if rep % 2 == 0 else ("harness", "baseline"):
            r = run(kind, path, corpus, args)
            res.setdefault(kind, []).append(r)
            print(f"{kind:9s} rep {rep}: {r['tokens_per_s']:7.1f} tok/s  {r['tokens_per_cpu_s']:6.1f} tok/cpu-s  pad share {r['pad_share']:.1%}  "
                  f"load {os.getloadavg()[0]:.2f}", flush=True)  # fmt: skip
        pairs.append(res["harness"][-1]["tokens_per_s"] / res["baseline"][-1]["tokens_per_s"])
        cpu_pairs.append(res["harness"][-1]["tokens_per_cpu_s"] / res["baseline"][-1]["tokens_per_cpu_s"])
        print(f"pair {rep}: harness / baseline {pairs[-1]:.3f} (cpu {cpu_pairs[-1]:.3f})", flush=True)
    r = run("packed", path, corpus, args)
    res["packed"] = [r]
    print(f"packed    rep 0: {r['tokens_per_s']:7.1f} tok/s  pad share {r['pad_share']:.1%}", flush=True)
    best = {k: max(v, key=lambda x: x["tokens_per_s"]) for k, v in res.items()}
    ratio = statistics.median(pairs)
    summary = {
        "baseline_tokens_per_s": round(best["baseline"]["tokens_per_s"], 1),
        "harness_tokens_per_s": round(best["harness"]["tokens_per_s"], 1),
        "packed_tokens_per_s": round(best["packed"]["tokens_per_s"], 1),
        "padded_pad_share": round(best["harness"]["pad_share"], 4),
        "packed_pad_share": round(best["packed"]["pad_share"], 4),
        "packed_over_padded": round(best["packed"]["tokens_per_s"] / best["harness"]["tokens_per_s"], 3),
        "steps": args.steps,
        "batch_size": args.batch_size,
        "repeats": args.repeats,
        "ratio": round(ratio, 3),
        "ratio_range": [round(min(pairs), 3), round(max(pairs), 3)],
        "cpu_ratio": round(statistics.median(cpu_pairs), 3),
    }
    print(f"harness / plain TRL: {ratio:.3f} (median of {len(pairs)} pairs, {min(pairs):.3f}-{max(pairs):.3f}; target >= 0.9); packing: pad share {summary['padded_pad_share']:.1%} -> "
          f"{summary['packed_pad_share']:.1%}, throughput x{summary['packed_over_padded']:.2f}")
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
