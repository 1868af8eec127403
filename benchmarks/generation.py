"""Generation throughput: the hf backend vs a plain model.generate loop, and the openai backend's
concurrency against a real local server.

    python benchmarks/generation.py                     # CPU default teacher (SmolLM2-135M), ~3 minutes on 2 idle cores
    python benchmarks/generation.py --questions 24 --reps 1 --openai-requests 16

1. In-process hf backend (``generate_cached`` over ``HFBackend``: prompt-length sorting, cache
   appends with fsync, progress bar) vs a plain batched ``model.generate`` loop over the same
   prompts (teacher few-shot prompt, arithmetic questions), same model object, batch size and
   sampling settings. Throughput = generated tokens (up to and including EOS) per second; the
   two alternate ``--reps`` times and each side's times and tokens are summed.
2. The openai backend against real servers on 127.0.0.1, the same requests with
   endpoint.concurrency 8 and 1 (fresh cache each run, after a warm-up): ``transformers serve
   --continuous-batching`` (a batching server, like vLLM: concurrency pays) and llama.cpp's
   Python server on the shipped GGUF (it decodes one request at a time: concurrency cannot pay,
   the ratio shows the backend adds no overhead).

Last line: one JSON object; ``ratio`` = hf backend / plain loop tokens per second (target
>= 0.9); ``openai_c8_over_c1`` = the concurrency ratio on the first server (transformers).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from common import SMOLLM, composed, sync  # noqa: E402


def model_config(name: str = "smollm2_fewshot"):
    """A teacher config from conf/teacher/, composed and validated as run.py would."""
    from ded.plugins import validate

    return validate(composed([f"teacher={name}"]).teacher)


def plain_loop(model, tok, prompts: list[str], batch_size: int, sampling: dict, seed: int, device: str = "cpu") -> tuple[int, float]:
    """The baseline: batches in the given order, left padding, one generate() per batch."""
    import torch

    tok.padding_side = "left"
    tokens = 0
    sync(device)
    t0 = time.perf_counter()
    with torch.inference_mode():
        for k, start in enumerate(range(0, len(prompts), batch_size)):
            torch.manual_seed(seed + k)
            enc = tok(prompts[start : start + batch_size], return_tensors="pt", padding=True, add_special_tokens=False).to(device)
            out = model.generate(**enc, max_new_tokens=sampling["max_new_tokens"], do_sample=True, temperature=sampling["temperature"],
                                 top_p=sampling["top_p"], top_k=0, pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id)  # fmt: skip
            for row in out[:, enc.input_ids.shape[1] :]:
                hits = (row == tok.eos_token_id).nonzero()
                tokens += int(hits[0]) + 1 if len(hits) else len(row)
    sync(device)
    return tokens, time.perf_counter() - t0


def bench_hf(args, cache_dir: str) -> dict:
    from ded.data import arithmetic
    from ded.data.arithmetic import fewshot_messages
    from ded.generation import build_messages, generate_cached, prompt_prefix
    from ded.generation.backends.hf import HFBackend
    from ded.core.models import load_model, local_checkpoint

    t = model_config()
    sampling = {"temperature": float(t.sampling.temperature), "top_p": float(t.sampling.top_p), "max_new_tokens": int(t.sampling.max_new_tokens)}
    prefix = prompt_prefix(t.system_prompt, fewshot_messages(t.fewshot))
    model, tok = load_model(local_checkpoint(SMOLLM, cache_dir), cache_dir)
    pool, _ = arithmetic.build(args.questions, 2, [1, 2, 3, 4, 5], seed=0)
    prompts = [tok.apply_chat_template(build_messages(q, prefix), tokenize=False, add_generation_prompt=True) for q in pool]
    bs = args.batch_size or int(t.batch_size)
    plain_loop(model, tok, prompts[:bs], bs, {**sampling, "max_new_tokens": 4}, 0)  # warm-up (allocator, kernels)
    res = {"plain_tokens": 0, "plain_s": 0.0, "hf_tokens": 0, "hf_s": 0.0}
    for rep in range(args.reps):
        n_tok, secs = plain_loop(model, tok, prompts, bs, sampling, seed=rep)
        res["plain_tokens"] += n_tok
        res["plain_s"] += secs
        print(f"plain loop  rep {rep}: {n_tok / secs:7.1f} tok/s ({n_tok} tokens, {secs:.1f} s)", flush=True)
        samples = Path(cache_dir) / "bench-samples"
        shutil.rmtree(samples, ignore_errors=True)
        backend = HFBackend(lambda: (model, tok), {"model": SMOLLM, "bench": True}, bs)
        t0 = time.perf_counter()
        _, st = generate_cached(backend, str(samples), pool, 1, prefix=prefix, sampling=sampling, seed=rep, desc="hf backend")
        secs = time.perf_counter() - t0
        res["hf_tokens"] += st.new_tokens
        res["hf_s"] += secs
        print(f"hf backend  rep {rep}: {st.new_tokens / secs:7.1f} tok/s ({st.new_tokens} tokens, {secs:.1f} s)", flush=True)
    res["plain_tok_s"] = res["plain_tokens"] / res["plain_s"]
    res["hf_tok_s"] = res["hf_tokens"] / res["hf_s"]
    res.update(questions=len(pool), batch_size=bs, reps=args.reps, max_new_tokens=sampling["max_new_tokens"])
    return res


def bench_openai(args, cache_dir: str, kind: str) -> dict:
    import json as _json

    from ded.data import arithmetic
    from ded.generation import generate_cached
    from ded.generation.factory import make_backend
    from ded.generation.server import Server
    from ded.core.models import local_checkpoint, resolve

    pool, _ = arithmetic.build(args.openai_requests, 2, [1, 2, 3, 4, 5], seed=1)
    sampling = {"temperature": 0.7, "top_p": 0.95, "max_new_tokens": args.openai_tokens}
    if kind == "llama_cpp":  # one request at a time (the Python server holds one llama.cpp context)
        srv = Server("llama_cpp", resolve(SMOLLM).location, "smollm2", log_dir=Path(cache_dir) / "servers", startup_timeout=120)
        extra = {}
    else:  # transformers serve with continuous batching: concurrent requests share decoding steps
        srv = Server("transformers", local_checkpoint(SMOLLM, cache_dir), None, args=["--device", "cpu", "--continuous-batching"],
                     log_dir=Path(cache_dir) / "servers", startup_timeout=300)  # fmt: skip
        extra = {"generation_config": _json.dumps({"do_sample": True})}  # see backends/endpoint.py: transformers serve samples only with it
    res = {}
    with srv:
        for conc in ["warm-up", 1, 8]:
            c = 8 if conc == "warm-up" else conc
            t = model_config("smollm2_fewshot_llamacpp")
            t.endpoint = replace(t.endpoint, launch="none", base_url=srv.base_url, model=srv.served_name, concurrency=c, extra_body=extra)
            root = Path(cache_dir) / f"openai-{kind}-{conc}"
            shutil.rmtree(root, ignore_errors=True)
            qs = pool[:8] if conc == "warm-up" else pool
            t0 = time.perf_counter()
            _, st = generate_cached(make_backend(t, str(root)), str(root), qs, 1, prefix=[], sampling=sampling, seed=0, desc=f"openai {kind} c={conc}")
            secs = time.perf_counter() - t0
            if conc != "warm-up":
                res[f"{kind}_c{conc}_tokens"] = st.new_tokens
                res[f"{kind}_c{conc}_s"] = secs
                res[f"{kind}_c{conc}_tok_s"] = st.new_tokens / secs
                print(f"openai backend, {kind} server, concurrency {conc}: {st.new_tokens / secs:7.1f} tok/s ({st.new_tokens} tokens, {secs:.1f} s)", flush=True)
    res[f"{kind}_c8_over_c1"] = res[f"{kind}_c8_tok_s"] / res[f"{kind}_c1_tok_s"]
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--questions", type=int, default=48, help="prompts for the hf comparison")
    ap.add_argument("--batch-size", type=int, default=0, help="0: the teacher config's batch_size")
    ap.add_argument("--reps", type=int, default=2, help="alternating repetitions of plain loop and hf backend")
    ap.add_argument("--openai-requests", type=int, default=32, help="requests for the concurrency comparison")
    ap.add_argument("--openai-tokens", type=int, default=32, help="max_new_tokens per openai request")
    ap.add_argument("--cache-dir", default=os.environ.get("DED_CACHE_DIR"), help="where the converted model lives (default: a temp dir)")
    ap.add_argument("--servers", default="transformers,llama_cpp", help="servers for the openai comparison ('' = none); the first gives openai_c8_over_c1")
    args = ap.parse_args()
    cache_dir = args.cache_dir or tempfile.mkdtemp(prefix="ded-bench-gen-")
    summary = bench_hf(args, cache_dir)
    servers = [k for k in args.servers.split(",") if k]
    for kind in servers:
        summary.update(bench_openai(args, cache_dir, kind))
    if servers:
        summary["openai_c8_over_c1"] = summary[f"{servers[0]}_c8_over_c1"]
        summary.update(openai_server=servers[0], openai_requests=args.openai_requests, openai_max_new_tokens=args.openai_tokens)
    summary["ratio"] = summary["hf_tok_s"] / summary["plain_tok_s"]
    summary["cpu_count"] = os.cpu_count()
    line = f"hf backend / plain loop: {summary['ratio']:.3f} (target >= 0.9)"
    if "openai_c8_over_c1" in summary:
        line += "; openai concurrency 8 / 1: " + ", ".join(f"{k} {summary[f'{k}_c8_over_c1']:.2f}" for k in servers)
    print(line, flush=True)
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
