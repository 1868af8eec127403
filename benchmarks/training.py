"""SFT throughput of the harness's training stage vs a plain TRL SFTTrainer run, same data and settings.

    python benchmarks/training.py                  # CPU default student (SmolLM2-135M), ~5 minutes on 2 cores
    python benchmarks/training.py --steps 12 --batch-size 8

Three runs on the same corpus of mixed lengths, same model, optimizer, batch size, steps:
  baseline  plain TRL: conversational prompt-completion rows, padded batches
  harness   ded.training.sft.make_trainer (our rendering and SFTConfig), padded batches
  packed    ded.training.sft.make_trainer with train.packing=true (rows of max_length; with sdpa on CPU,
            examples stay apart through block-diagonal masks inside each row)
Throughput is trained (non-pad) tokens per second of `trainer.train()`; the pad share is the
fraction of processed positions that are padding. Last line: one JSON object; `ratio` is
harness / baseline tokens per second (higher is better; the target is >= 0.9).
"""

from __future__ import annotations

import argparse
import json
import os
import random
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
    if kind == "baseline":
        rows = [
            {"prompt": [{"role": "user", "content": e["question"]}], "completion": [{"role": "assistant", "content": e["response"]}]}
            for e in corpus
        ]
        cfg = SFTConfig(
            output_dir=out_dir, per_device_train_batch_size=args.batch_size, learning_rate=5e-5, max_length=1024,
            lr_scheduler_type="cosine", save_strategy="no", report_to="none", use_cpu=not torch.cuda.is_available(),
            bf16=args.bf16, seed=0, logging_steps=1000, **common,
        )
        trainer = SFTTrainer(model=model, args=cfg, train_dataset=Dataset.from_list(rows), processing_class=tok)
    else:
        tc = TrainConfig(per_device_train_batch_size=args.batch_size, max_length=1024, packing=(kind == "packed"), bf16=args.bf16, logging_steps=1000)
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
    t0 = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - t0
    return {"tokens": real, "seconds": seconds, "tokens_per_s": real / seconds, "pad_share": 1 - real / positions}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--examples", type=int, default=96)
    ap.add_argument("--bf16", action="store_true")
    args = ap.parse_args()
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from ded.core.models import local_checkpoint

    path = local_checkpoint(SMOLLM, os.environ.get("DED_CACHE_DIR", str(Path.home() / ".cache" / "ded")))
    corpus = mixed_corpus(args.examples, seed=0)
    res = {}
    # Baseline and harness alternate twice so drift in machine load hits both alike.
    for rep in range(2):
        for kind in ("baseline", "harness"):
            r = run(kind, path, corpus, args)
            res.setdefault(kind, []).append(r)
            print(f"{kind:9s} rep {rep}: {r['tokens_per_s']:7.1f} tok/s  pad share {r['pad_share']:.1%}", flush=True)
    r = run("packed", path, corpus, args)
    res["packed"] = [r]
    print(f"packed    rep 0: {r['tokens_per_s']:7.1f} tok/s  pad share {r['pad_share']:.1%}", flush=True)
    best = {k: max(v, key=lambda x: x["tokens_per_s"]) for k, v in res.items()}
    ratio = best["harness"]["tokens_per_s"] / best["baseline"]["tokens_per_s"]
    summary = {
        "baseline_tokens_per_s": round(best["baseline"]["tokens_per_s"], 1),
        "harness_tokens_per_s": round(best["harness"]["tokens_per_s"], 1),
        "packed_tokens_per_s": round(best["packed"]["tokens_per_s"], 1),
        "padded_pad_share": round(best["harness"]["pad_share"], 4),
        "packed_pad_share": round(best["packed"]["pad_share"], 4),
        "packed_over_padded": round(best["packed"]["tokens_per_s"] / best["harness"]["tokens_per_s"], 3),
        "steps": args.steps,
        "batch_size": args.batch_size,
        "ratio": round(ratio, 3),
    }
    print(f"harness / plain TRL: {ratio:.3f} (target >= 0.9); packing: pad share {summary['padded_pad_share']:.1%} -> "
          f"{summary['packed_pad_share']:.1%}, throughput x{summary['packed_over_padded']:.2f}")
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
