#!/usr/bin/env bash
# Every GPU check in one run: generation engines and bf16 SFT (about 8 minutes on an H100).
#   here, once:  bash benchmarks/gpu_wheels.sh
#   GPU machine: bash benchmarks/gpu_check.sh   (with .whl/ and benchmarks/.gpu/ copied beside it)
# Figures: generation tokens/s of the hf backend's engines vs plain generate (bf16, 128-token
# prompts, 256 new tokens, batch 64) and bf16 SFT tokens/s, MFU and peak memory, plain vs the
# harness padded / packed / packed+liger, for the SmolLM2-135M and Qwen2-0.5B shapes.
# Logs and JSON land in $OUT (or /tmp/ded-gpu-check).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/ded-gpu-check}; mkdir -p "$OUT"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
tokdir=benchmarks/.gpu/tokenizer
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
python3 -c "import torch, transformers, trl, pyarrow; print('torch', torch.__version__, 'transformers', transformers.__version__, 'trl', trl.__version__, 'pyarrow', pyarrow.__version__)" | tee -a "$OUT/gpu.txt"
timeout 270 python3 benchmarks/generation_engines.py --device cuda --tokenizer $tokdir 2>&1 | grep -v "it/s\]" | tee "$OUT/generation.log"
timeout 300 python3 benchmarks/training_gpu.py --device cuda --tokenizer $tokdir 2>&1 | grep -v "it/s\]" | tee "$OUT/training.log"
