"""ded/plugins.py: the one loader fills every registry, stores the Hydra schemas, and checks a
config's plug-in names (which the schema alone does not know) naming the key."""

import subprocess
import sys

import pytest
from hydra.core.config_store import ConfigStore

from conftest import compose
from ded.config import ConfigError, to_dataclasses
from ded.generation.backends import BACKENDS
from ded.plugins import register, validate


def test_loading_fills_every_registry_in_a_fresh_process():
    """Only `import ded.plugins`: every plug-in module is imported by the loader, none by chance."""
    code = (
        "import ded.plugins as p; p.load(); "
        "from ded.data.tasks import TASKS, WORKED_EXAMPLES; from ded.data.solvers import SOLVERS; from ded.data.pools import FORMATS; "
        "from ded.grading.answers import ANSWER_KINDS; from ded.generation.backends import BACKENDS; "
        "from ded.curation.filters import TRAJECTORY_FILTERS; from ded.data.evalsets import EVAL_SETS; "
        "print({n: sorted(r.names()) for n, r in [('tasks', TASKS), ('examples', WORKED_EXAMPLES), ('solvers', SOLVERS), "
        "('formats', FORMATS), ('kinds', ANSWER_KINDS), ('backends', BACKENDS), ('filters', TRAJECTORY_FILTERS), ('sets', EVAL_SETS)]})"
    )
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr[-2000:]
    got = eval(p.stdout.strip().splitlines()[-1])
    assert got["tasks"] == ["arithmetic", "multistep", "pool"]
    assert {"arithmetic", "multistep", "code"} <= set(got["examples"])
    assert got["solvers"] == ["arithmetic", "code", "multistep"]
    assert {"gsm8k", "math", "choice", "humaneval", "mbpp", "livecodebench"} <= set(got["formats"])
    assert got["kinds"] == ["choice", "code", "gsm8k", "math"]
    assert got["backends"] == ["hf", "openai", "replay", "solver", "vllm"]
    assert {"complete", "length", "repetition"} <= set(got["filters"])
    assert {"gsm8k", "humaneval", "livecodebench", "math500"} <= set(got["sets"])


def test_register_stores_the_schema_and_one_node_per_backend():
    register()
    repo = ConfigStore.instance().repo
    assert "ded_schema.yaml" in repo
    stored = {n.removesuffix(".yaml") for n in repo["backend"]}  # a test's own toy backend may also be stored
    assert {"hf", "openai", "replay", "solver", "vllm"} <= set(BACKENDS.names()) <= stored


@pytest.mark.parametrize("overrides, key", [
    (["corpus.task=poetry"], "corpus.task"), (["corpus.allocation=greedy"], "corpus.allocation"),
    (["diversity.selector=best"], "diversity.selector"), (["diversity.level=sentence"], "diversity.level"),
    (["teacher.fewshot_task=poetry"], "teacher.fewshot_task"), (["teacher=solver", "teacher.task=poetry"], "teacher.task"),
    (["teacher.backend=nope"], "teacher.backend"), (["eval.sets=[aime99]"], "eval.sets"),
])  # fmt: skip
def test_plugin_names_are_checked_after_loading_naming_the_key(overrides, key):
    """The schema knows no plug-in: the ranges alone pass, and ded.plugins.validate checks each name
    against its registry, naming the key and what it allows."""
    cfg = compose([*overrides, "paths.output_dir=/tmp/x"])
    to_dataclasses(cfg)
    with pytest.raises(ConfigError, match=f"^{key}: unknown (value|set)") as e:
        validate(cfg)
    assert "allowed: [" in str(e.value)
