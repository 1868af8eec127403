"""The GPU benchmark scripts, run small on CPU so a device session can trust them to run.

They print figures rather than assert speed (speed targets live in the scripts' output, never
in tests); what is asserted here is what the figures are made of: pad shares, token counts and
that every mode and engine ran on the same work.
"""

import json
import os
import subprocess
import sys

import pytest

from conftest import ROOT


def _run(script, *args, env=None):
    p = subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), *args], capture_output=True, text=True, timeout=600, env=env)
    assert p.returncode == 0, p.stderr[-3000:]
    return json.loads(p.stdout.strip().splitlines()[-1])


def test_training_gpu_script_on_cpu(smollm_path, monkeypatch):
    s = _run("training_gpu.py", "--device", "cpu", "--shapes", "tiny", "--steps", "3", "--warmup", "0", "--batch-size", "2",
             "--seq-len", "256", "--modes", "plain,padded,packed", "--tokenizer", smollm_path)  # fmt: skip
    plain, padded, packed = (s[f"tiny/{m}"] for m in ("plain", "padded", "packed"))
    assert plain["pad_share"] == 0 and plain["tokens"] == 3 * 2 * 256
    assert padded["pad_share"] > 0.1  # mixed lengths padded to the longest of each batch
    assert packed["pad_share"] < min(0.1, padded["pad_share"] / 2)  # rows of 256: some tail padding (2.3% at 1024)
    assert packed["tokens"] > padded["tokens"]  # rows of 256 hold more than one example each
    assert plain["mfu"] is None and plain["peak_gb"] is None  # CPU: no peak FLOP/s, no CUDA memory
    assert s["tiny/packed_over_plain"] > 0


def test_generation_engines_script_on_cpu(smollm_path):
    s = _run("generation_engines.py", "--device", "cpu", "--dtype", "float32", "--shapes", "tiny", "--requests", "6",
             "--batch-size", "3", "--prompt-tokens", "48", "--new-tokens", "8", "--tokenizer", smollm_path)  # fmt: skip
    counts = [s[f"tiny/{e}_tokens"] for e in ("plain", "generate", "continuous")]
    assert all(40 <= c <= 48 for c in counts), counts  # 6 requests x 8 tokens, EOS aside
    assert s["prompt_tokens_mean"] > 40
    assert s["tiny/continuous_over_plain"] > 0


def test_sandbox_benchmark_runs_every_mode_on_the_same_programs():
    if not os.environ.get("DED_DATA_DIR"):
        pytest.skip("reference data not found: set DED_DATA_DIR")
    s = _run("sandbox.py", "--limit", "4")
    assert s["n"] == 4 and s["passed"] == {"sandbox_1": 4, "sandbox_2": 4, "plain": 4}  # every mode ran and passed the same four
    assert all(v > 0 for v in s["execs_per_s"].values()) and s["workers_2_vs_1"] > 0


def test_preflight_benchmark_times_a_refusal_that_names_its_errors():
    s = _run("preflight.py", "--repeats", "1", "--only", "headline")  # exits 1 unless the sweep is refused with error lines, no traceback
    assert set(s["seconds"]) == {"headline sweep"} and s["seconds"]["headline sweep"] > 0 and s["baseline_s"] > 0
