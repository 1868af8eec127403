"""The backend registry: a backend is one module (schema + builder) and each model config holds
only its backend's keys."""

import subprocess
import sys
from dataclasses import dataclass

import pytest
from hydra.core.config_store import ConfigStore
from hydra.errors import ConfigCompositionException

from conftest import compose
from ded.config import ConfigError, ModelConfig
from ded.plugins import validate
from ded.data import Question
from ded.generation import Backend, Completion, generate_cached
from ded.generation.backends import BACKENDS, register_backend
from ded.generation.factory import make_backend


@dataclass
class EchoConfig(ModelConfig):
    backend: str = "echo"
    suffix: str = "!"  # a key only this backend has


class EchoBackend(Backend):
    def __init__(self, identity: dict, suffix: str):
        self.identity = {"backend": "echo", **identity}
        self.suffix = suffix

    def generate(self, requests, sampling):
        yield [Completion(r, r.messages[-1]["content"] + self.suffix, 1, "stop") for r in requests]


@pytest.fixture
def echo():
    @register_backend("echo", EchoConfig)
    def build(mcfg, cache_root, role, path, identity):
        return EchoBackend(identity or {"model": path}, mcfg.suffix)

    # a model config without a yaml file: Hydra finds it in the ConfigStore like conf/teacher/*.yaml
    ConfigStore.instance().store(group="teacher", name="echo_test", node=EchoConfig(name="echo", path="echo-model", suffix="?"))
    yield
    BACKENDS.unregister("echo")


def test_a_backend_registered_elsewhere_builds_and_generates(echo, tmp_path):
    qs = [Question("a", "1 + 1?", "2"), Question("b", "2 + 2?", "4")]
    kw = dict(prefix=[], sampling={"temperature": 0.0, "max_new_tokens": 4}, seed=0, desc="echo")
    b = make_backend(EchoConfig(name="echo", path="echo-model"), str(tmp_path))
    out, st = generate_cached(b, str(tmp_path), qs, 2, **kw)
    assert st.new_samples == 4 and [r["text"] for r in out["b"]] == ["2 + 2?!"] * 2
    _, st = generate_cached(b, str(tmp_path), qs, 2, **kw)
    assert (st.new_samples, st.cached) == (0, 4)

    cfg = compose(["teacher=echo_test", "teacher.suffix=..."])  # composed and typed like any model config
    teacher = validate(cfg.teacher)
    assert isinstance(teacher, EchoConfig) and teacher.suffix == "..."
    assert make_backend(cfg.teacher, str(tmp_path)).suffix == "..."


def test_the_code_solver_answers_with_the_reference_a_question_carries_which_no_cache_key_holds(tmp_path):
    from ded.data import code  # noqa: F401 - registers the code solver
    from ded.generation.backends.solver import SolverBackend

    ref = "def add(a, b):\n    return a + b"
    kw = dict(prefix=[], sampling={}, seed=0, desc="solver")
    qs = [Question("a", "Write add(a, b).", "", kind="code", reference=ref), Question("b", "Write sub(a, b).", "", kind="code")]
    out, st = generate_cached(SolverBackend("code", "varied"), str(tmp_path), qs, 2, **kw)
    assert st.new_samples == 4 and all(s["text"].endswith(f"```python\n{ref}\n```") and s["finish"] == "stop" for s in out["a"])
    assert [(s["text"], s["finish"]) for s in out["b"]] == [("", "missing")] * 2  # no reference: no guess
    assert not any("reference" in s for s in out["a"])
    # the same text with another reference is the same question to the cache: its samples are reused
    same_text = Question("a", "Write add(a, b).", "", kind="code", reference="x = 1")
    again, st = generate_cached(SolverBackend("code", "varied"), str(tmp_path), [same_text], 2, **kw)
    assert (st.new_samples, st.cached) == (0, 2) and again["a"] == out["a"]


def test_a_model_config_holds_only_its_backends_keys():
    with pytest.raises(ConfigCompositionException) as e:
        compose(["teacher=replay_s1k_r1", "teacher.batch_size=3"])
    assert "teacher.batch_size" in str(e.value) + str(e.value.__cause__)
    with pytest.raises(ConfigCompositionException, match="teacher.vllm"):
        compose(["teacher=r1", "teacher.vllm.tensor_parallel_size=8"])
    with pytest.raises(ConfigError, match=r"^teacher.backend: unknown value 'nope'; allowed: \[") as e:
        validate(compose(["teacher.backend=nope"]).teacher)
    assert all(f"'{name}'" in str(e.value) for name in ("hf", "openai", "vllm", "replay"))
    with pytest.raises(ConfigError, match=r"^teacher.backend: 'vllm' has its own keys \(VLLMModelConfig\)"):
        validate(compose(["teacher.backend=vllm"]).teacher)  # an hf config cannot turn into a vllm one


def test_discovering_the_backends_imports_nothing_heavy():
    """ded.plugins.register() discovers the backends before Hydra composes, on every run."""
    code = ("import sys; from ded.generation.backends import discover; names = discover().names(); "
            "print(sorted(names), [m for m in ('torch', 'transformers', 'vllm', 'openai', 'datasets', 'httpx') if m in sys.modules])")  # fmt: skip
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "['hf', 'openai', 'replay', 'solver', 'vllm'] []"
