"""bf16 SFT steps of random-init student shapes: plain transformers vs the harness's training stage.

    python benchmarks/training_gpu.py                      # a GPU: both shapes, batch 8 x 2048, ~4 minutes on an H100
    python benchmarks/training_gpu.py --device cpu --shapes tiny --steps 3 --warmup 1 --batch-size 2 --seq-len 256   # smoke run

Per shape (benchmarks/common.py: the SmolLM2-135M student shape and a Qwen2-0.5B shape):
  plain   plain transformers: random tokens, batch B x L with no padding, sdpa, torch AdamW
          (fused on GPU), bf16 weights: the reference loop
  padded  ded.training.sft.make_trainer (TRL SFTTrainer from our TrainConfig), examples of mixed
          lengths (L/16 .. L tokens), B examples per batch, padded
  packed  the same with train.packing=true: rows of L tokens (block-diagonal masks with sdpa,
          one varlen row with flash attention), B rows per batch
  liger   packed + train.use_liger_kernel=true (liger's RMSNorm, SwiGLU, RoPE kernels); skipped, and
          said so, where liger-kernel is not installed
The harness modes never build full-vocabulary logits: TRL 1.16's SFTTrainer projects through the
LM head in tiles, only at positions that carry loss (its fused LM head; this is also why TRL
turns liger's own fused cross-entropy off). `plain` computes all B x L x vocab logits, and MFU
counts 6N FLOPs per token for every mode, so the harness's MFU is slightly flattering.
Every mode runs --warmup steps untimed, then --steps timed. Tokens/s counts real (non-pad) tokens;
MFU = 6 x parameters x tokens/s / peak dense bf16 FLOP/s; peak memory is
torch.cuda.max_memory_allocated. Last line: one JSON object with every figure and the ratios
against `plain` (the goal on the 0.5B shape: >= 1.5x tokens/s, <= 0.5x peak memory).
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from transformers import TrainerCallback  # noqa: E402

from common import SHAPES, n_params, one_token_words, peak_tflops, random_model, real_tokens, sync, tokenizer_path  # noqa: E402


def _reset_memory(device: str) -> None:
    import torch

    gc.collect()
    if device.startswith("cuda"):
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def _peak_gb(device: str) -> float | None:
    import torch

    return torch.cuda.max_memory_allocated() / 2**30 if device.startswith("cuda") else None


def plain(shape: str, args) -> dict:
    """The reference loop: no padding, no packing, nothing from the harness."""
    import torch

    _reset_memory(args.device)
    model = random_model(shape, "bfloat16", args.device)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5, fused=args.device.startswith("cuda"))
    vocab = model.config.vocab_size
    g = torch.Generator().manual_seed(0)
    tokens, t0 = 0, None
    for step in range(args.warmup + args.steps):
        if step == args.warmup:
            sync(args.device)
            t0 = time.perf_counter()
        ids = torch.randint(0, vocab, (args.batch_size, args.seq_len), generator=g).to(args.device)
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        if step >= args.warmup:
            tokens += ids.numel()
    sync(args.device)
    secs = time.perf_counter() - t0
    out = {"tokens": tokens, "seconds": secs, "pad_share": 0.0, "peak_gb": _peak_gb(args.device), "params": n_params(model)}
    del model, opt
    return out


def mixed_corpus(tok, n: int, seq_len: int, seed: int = 0) -> list[dict]:
    """Examples whose rendered length spreads from ~seq_len/16 to ~seq_len tokens. Responses are
    words that are one token each in this tokenizer (so lengths are known up front)."""
    rng = random.Random(seed)
    words = one_token_words(tok)
    out = []
    for i in range(n):
        length = rng.randint(max(seq_len // 16, 8), seq_len - 48)  # room for the template and question
        out.append({"question": f"Question {i}: continue the text.", "response": " ".join(rng.choice(words) for _ in range(length))})
    return out


class Clock(TrainerCallback):
    """Starts the clock when the warm-up steps are done (global_step counts finished steps)."""

    def __init__(self, warmup: int, device: str):
        self.warmup, self.device, self.t0 = warmup, device, None

    def on_step_begin(self, args, state, control, **kw):
        if state.global_step == self.warmup and self.t0 is None:
            sync(self.device)
            self.t0 = time.perf_counter()


def harness(shape: str, args, tok, corpus, *, packing: bool, liger: bool) -> dict:
    from ded.config import TrainConfig
    from ded.training.sft import make_trainer, to_dataset_rows

    _reset_memory(args.device)
    model = random_model(shape, "bfloat16", args.device)
    cuda = args.device.startswith("cuda")
    tc = TrainConfig(per_device_train_batch_size=args.batch_size, max_length=args.seq_len, packing=packing, use_liger_kernel=liger,
                                          bf16=cuda, optim="adamw_torch_fused" if cuda else "adamw_torch", learning_rate=1e-5,
                                          num_train_epochs=100, warmup_steps=0.0, lr_scheduler_type="constant", logging_steps=10**6)  # fmt: skip
    trainer = make_trainer(model, tok, to_dataset_rows(tok, corpus, []), tc, tempfile.mkdtemp(prefix=f"bench_{shape}_"))
    total = args.warmup + args.steps
    trainer.args.max_steps = total
    trainer.args.disable_tqdm = True
    # Real tokens per step, read from the same (seeded) dataloader the training run will use.
    per_step, positions = [], 0
    for i, batch in enumerate(trainer.get_train_dataloader()):
        if i >= total:
            break
        per_step.append(real_tokens(batch))
        positions += batch["input_ids"].numel() if i >= args.warmup else 0
    if len(per_step) < total:
        raise SystemExit(f"{shape}: the corpus fills {len(per_step)} steps, {total} needed; raise --examples")
    clock = Clock(args.warmup, args.device)
    trainer.add_callback(clock)
    trainer.train()
    sync(args.device)
    secs = time.perf_counter() - clock.t0
    tokens = sum(per_step[args.warmup :])
    out = {"tokens": tokens, "seconds": secs, "pad_share": 1 - tokens / positions, "peak_gb": _peak_gb(args.device), "params": n_params(model)}
    del trainer, model
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shapes", default="smollm2-135m,qwen2-0.5b", help=f"comma-separated, of {sorted(SHAPES)}")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--seq-len", type=int, default=2048)
    ap.add_argument("--steps", type=int, default=10, help="timed steps per mode")
    ap.add_argument("--warmup", type=int, default=3, help="untimed steps first (kernels, allocator)")
    ap.add_argument("--examples", type=int, default=0, help="corpus size (0: enough for the steps)")
    ap.add_argument("--modes", default="plain,padded,packed,liger")
    ap.add_argument("--peak-tflops", type=float, default=0.0, help="the MFU denominator (default: from the GPU's name)")
    ap.add_argument("--tokenizer", default=None, help="tokenizer directory (default: the converted SmolLM2 student)")
    args = ap.parse_args()
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tokenizer_path(args.tokenizer))
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    peak = peak_tflops(args.device, args.peak_tflops)
    modes = [m for m in args.modes.split(",") if m]
    corpus = mixed_corpus(tok, args.examples or 4 * args.batch_size * (args.warmup + args.steps), args.seq_len)
    summary = {"device": args.device, "batch_size": args.batch_size, "seq_len": args.seq_len, "steps": args.steps, "peak_tflops": peak}
    if args.device.startswith("cuda"):
        import torch

        summary["gpu"] = torch.cuda.get_device_name()
    for shape in args.shapes.split(","):
        for mode in modes:
            if mode == "liger" and importlib.util.find_spec("liger_kernel") is None:
                print(f"{shape:13s} {mode:7s} skipped: liger-kernel is not installed", flush=True)
                continue
            r = plain(shape, args) if mode == "plain" else harness(shape, args, tok, corpus, packing=mode in ("packed", "liger"), liger=mode == "liger")
            r["tokens_per_s"] = r["tokens"] / r["seconds"]
            r["mfu"] = 6 * r["params"] * r["tokens_per_s"] / (peak * 1e12) if peak else None
            summary[f"{shape}/{mode}"] = r
            mfu = f"  MFU {r['mfu']:.1%}" if r["mfu"] is not None else ""
            mem = f"  peak {r['peak_gb']:.1f} GiB" if r["peak_gb"] is not None else ""
            print(f"{shape:13s} {mode:7s} {r['tokens_per_s']:10.0f} tok/s  pad share {r['pad_share']:.1%}{mfu}{mem}", flush=True)
        base = summary.get(f"{shape}/plain")
        for mode in modes[1:]:
            r = summary.get(f"{shape}/{mode}")
            if base and r:
                summary[f"{shape}/{mode}_over_plain"] = r["tokens_per_s"] / base["tokens_per_s"]
                if r["peak_gb"] and base["peak_gb"]:
                    summary[f"{shape}/{mode}_memory_over_plain"] = r["peak_gb"] / base["peak_gb"]
                print(f"{shape:13s} {mode:7s} / plain: {summary[f'{shape}/{mode}_over_plain']:.2f}x tokens/s"
                      + (f", {summary[f'{shape}/{mode}_memory_over_plain']:.2f}x peak memory" if f"{shape}/{mode}_memory_over_plain" in summary else ""))  # fmt: skip
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
