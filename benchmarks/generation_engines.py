"""The hf backend's engines against plain batched ``model.generate``, on random-init student shapes.

    python benchmarks/generation_engines.py                 # a GPU: both shapes, bf16, 256 requests, ~3 minutes on an H100
    python benchmarks/generation_engines.py --device cpu --shapes checkpoint --dtype float32 --requests 32 --batch-size 16 --new-tokens 32
    python benchmarks/generation_engines.py --passrate            # vLLM on CPU against the hf backend (below)

Per shape (benchmarks/common.py; ``checkpoint`` = the real converted SmolLM2-135M student):
  plain        benchmarks/generation.py's plain loop: --batch-size prompts per ``model.generate``
               call, left padding
  generate     the hf backend (engine=generate) through generate_cached: the same batching plus
               length sorting, cache appends and the progress bar
  continuous   the hf backend (engine=continuous): transformers' continuous batching with a paged
               KV cache; every request is queued at once and a finished one frees its slot
Prompts are ~--prompt-tokens tokens of chat-templated text, --new-tokens tokens are generated with
temperature 0.6 / top-p 0.95 (a random-init model almost never samples EOS, so nearly every
request runs to the limit). Tokens/s counts generated tokens. Last line: one JSON object;
``<shape>/continuous_over_plain`` is the engine's GPU figure (goal: >= 5 at batch 64).

``--passrate``: the default run's pass-rate stage (the embedded student on the default arithmetic
pool, 48 questions x k=4 = 192 samples, its sampling and prompt) through the harness's backends,
each into its own empty cache: ``hf`` (student=smollm2) and ``vllm`` (student=smollm2_vllm,
in-process; with --dtypes also bfloat16). A backend's load (model conversion excluded: done once
before) is timed apart from its generation; ``vllm_over_hf`` is the ratio of generation tokens/s.
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
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from common import SHAPES, SMOLLM, composed, one_token_words, random_model, sync, tokenizer_path  # noqa: E402
from generation import plain_loop  # noqa: E402

SAMPLING = {"temperature": 0.6, "top_p": 0.95}


def questions(tok, n: int, prompt_tokens: int, seed: int = 0):
    from ded.data import Question

    rng = random.Random(seed)
    words = one_token_words(tok)
    body = max(prompt_tokens - 30, 8)  # the chat template adds ~30 tokens (SmolLM2's system turn)
    return [Question(f"q{i}", " ".join(rng.choice(words) for _ in range(body)), "0") for i in range(n)]


def backend_run(model, tok, qs, engine: str, batch_size: int, new_tokens: int, device: str) -> tuple[int, float]:
    from ded.generation import generate_cached
    from ded.generation.backends.hf import HFBackend

    backend = HFBackend(lambda: (model, tok), {"model": "bench", "engine_bench": engine}, batch_size, engine=engine)
    sync(device)
    t0 = time.perf_counter()
    _, st = generate_cached(backend, tempfile.mkdtemp(prefix="ded-bench-eng-"), qs, 1, prefix=[], collect=False,
                            sampling={**SAMPLING, "max_new_tokens": new_tokens}, seed=0, desc=f"hf {engine}")  # fmt: skip
    sync(device)
    return st.new_tokens, time.perf_counter() - t0


def passrate_run(student: str, overrides: list[str], cache_root: str) -> dict:
    """One backend through the default pass-rate stage's call: load and generation timed apart."""
    from ded.data import arithmetic
    from ded.generation import generate_cached
    from ded.generation.factory import make_backend
    from ded.plugins import validate
    from ded.stages import prompt_prefix_for, sampling_args

    cfg = composed([f"student={student}", *overrides])
    c = cfg.corpus
    pool, _ = arithmetic.build(c.pool_size, cfg.eval.size, list(c.levels), c.seed)
    student_cfg = validate(cfg.student)
    backend = make_backend(student_cfg, cache_root)
    t0 = time.perf_counter()
    backend.check()
    warm, _ = arithmetic.build(2, 2, [1], seed=99)  # the engine starts on first use: time it with a 2-sample warm-up
    generate_cached(backend, tempfile.mkdtemp(prefix="ded-bench-warm-"), warm[:1], 1, prefix=[], sampling={"max_new_tokens": 4},
                    seed=0, desc="warm-up")  # fmt: skip
    load = time.perf_counter() - t0
    sampling = sampling_args(student_cfg.sampling)
    t0 = time.perf_counter()
    _, st = generate_cached(backend, tempfile.mkdtemp(prefix="ded-bench-pr-"), pool, c.pass_rate.k, prefix=prompt_prefix_for(student_cfg),
                            sampling=sampling, seed=0, desc=f"{student} {' '.join(overrides)}", collect=False)  # fmt: skip
    secs = time.perf_counter() - t0
    backend.close()
    return {"load_s": load, "seconds": secs, "samples": st.new_samples, "tokens": st.new_tokens, "tok_s": st.new_tokens / secs}


def passrate_main(args) -> None:
    """hf against vLLM (in-process) on the default pass-rate stage's 192 samples, one run."""
    import torch

    from ded.core.models import local_checkpoint

    cache_root = args.cache or tempfile.mkdtemp(prefix="ded-bench-models-")
    local_checkpoint(SMOLLM, cache_root)  # the conversion, once, untimed
    runs = {"hf": ("smollm2", [])}
    for dtype in [d for d in args.dtypes.split(",") if d]:
        runs[f"vllm_{dtype}"] = ("smollm2_vllm", [f"student.dtype={dtype}"])
    summary = {"bench": "passrate", "threads": torch.get_num_threads()}
    for name, (student, overrides) in runs.items():
        r = passrate_run(student, overrides, cache_root)
        summary.update({f"{name}/{k}": v for k, v in r.items()})
        print(f"{name:15s} load {r['load_s']:6.1f} s   {r['samples']} samples, {r['tokens']} tokens in {r['seconds']:6.1f} s: "
              f"{r['tok_s']:6.1f} tok/s", flush=True)  # fmt: skip
    for name in runs:
        if name != "hf":
            summary[f"{name}_over_hf"] = summary[f"{name}/tok_s"] / summary["hf/tok_s"]
            print(f"{name} / hf (generation tok/s, load excluded): {summary[f'{name}_over_hf']:.2f}", flush=True)
    print(json.dumps(summary))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shapes", default="smollm2-135m,qwen2-0.5b", help=f"comma-separated, of {sorted(SHAPES) + ['checkpoint']}")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--dtype", default="bfloat16")
    ap.add_argument("--requests", type=int, default=256)
    ap.add_argument("--batch-size", type=int, default=64, help="plain loop and generate engine: prompts per generate() call")
    ap.add_argument("--prompt-tokens", type=int, default=128)
    ap.add_argument("--new-tokens", type=int, default=256)
    ap.add_argument("--engines", default="plain,generate,continuous")
    ap.add_argument("--tokenizer", default=None, help="tokenizer directory (default: the converted SmolLM2 student)")
    ap.add_argument("--passrate", action="store_true", help="vLLM (CPU build) against the hf backend on the default pass-rate stage")
    ap.add_argument("--dtypes", default="float32", help="--passrate: vLLM dtypes, comma-separated (float32,bfloat16)")
    ap.add_argument("--cache", default=None, help="--passrate: a cache folder holding the converted student (default: a new one)")
    args = ap.parse_args()
    if args.passrate:
        return passrate_main(args)
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tdir = tokenizer_path(args.tokenizer)
    tok = AutoTokenizer.from_pretrained(tdir)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    qs = questions(tok, args.requests, args.prompt_tokens)
    prompts = [tok.apply_chat_template([{"role": "user", "content": q.text}], tokenize=False, add_generation_prompt=True) for q in qs]
    plen = sum(len(tok(p, add_special_tokens=False).input_ids) for p in prompts) / len(prompts)
    summary = {"device": args.device, "dtype": args.dtype, "requests": args.requests, "batch_size": args.batch_size,
               "prompt_tokens_mean": round(plen, 1), "new_tokens": args.new_tokens}  # fmt: skip
    if args.device.startswith("cuda"):
        summary["gpu"] = torch.cuda.get_device_name()
    engines = [e for e in args.engines.split(",") if e]
    for shape in args.shapes.split(","):
        if shape == "checkpoint":
            model = AutoModelForCausalLM.from_pretrained(tdir, dtype=getattr(torch, args.dtype)).to(args.device)
        else:
            model = random_model(shape, args.dtype, args.device)
        model.eval()
        sampling = {**SAMPLING, "max_new_tokens": args.new_tokens}
        plain_loop(model, tok, prompts[: args.batch_size], args.batch_size, {**sampling, "max_new_tokens": 4}, 0, args.device)  # warm-up
        for engine in engines:
            if engine == "plain":
                n, secs = plain_loop(model, tok, prompts, args.batch_size, sampling, 0, args.device)
            else:
                n, secs = backend_run(model, tok, qs, engine, args.batch_size, args.new_tokens, args.device)
            summary[f"{shape}/{engine}_tok_s"] = n / secs
            summary[f"{shape}/{engine}_tokens"] = n
            print(f"{shape:13s} {engine:10s} {n / secs:9.0f} tok/s  ({n} tokens, {secs:.1f} s)", flush=True)
        base = summary.get(f"{shape}/plain_tok_s")
        for engine in engines:
            if base and engine != "plain":
                summary[f"{shape}/{engine}_over_plain"] = summary[f"{shape}/{engine}_tok_s"] / base
                print(f"{shape:13s} {engine:10s} / plain: {summary[f'{shape}/{engine}_over_plain']:.2f}", flush=True)
        del model
        if args.device.startswith("cuda"):
            torch.cuda.empty_cache()
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
