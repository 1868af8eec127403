"""Paper-scale configs on a machine without their models: a clear stop before any work."""

import importlib.util

import pytest

from conftest import compose
from ded.generation.factory import make_backend
from ded.core.reasoning import join_reasoning, normalize_think, split_reasoning
from ded.core.models import ModelNotAvailable

OFFLINE = "teacher=smollm2_fewshot student=smollm2"


@pytest.mark.skipif(importlib.util.find_spec("vllm") is not None, reason="vLLM is installed here: teacher=qwq may be runnable")
def test_qwq_stops_early_naming_what_is_missing(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    b = make_backend(compose(["teacher=qwq"]).teacher, str(tmp_path), role="teacher")
    with pytest.raises(ModelNotAvailable) as e:
        b.check()
    msg = str(e.value)
    assert "teacher 'qwq-32b' (Qwen/QwQ-32B)" in msg and "backend=vllm" in msg
    assert "pip install -e '.[vllm]'" in msg and "Qwen/QwQ-32B' is not in the local Hugging Face cache" in msg
    assert msg.endswith(f"runs offline: {OFFLINE}.") and "teacher=smollm2 student" not in msg
    assert not (tmp_path / "samples").exists()  # nothing was started or written


@pytest.mark.parametrize("teacher,env", [("r1", "DED_R1_BASE_URL"), ("qwen3_235b", "DED_QWEN3_BASE_URL")])
def test_endpoint_teachers_without_endpoint(teacher, env, tmp_path, monkeypatch):
    monkeypatch.delenv(env, raising=False)
    b = make_backend(compose([f"teacher={teacher}"]).teacher, str(tmp_path))
    with pytest.raises(ModelNotAvailable, match=rf"no endpoint\. Set teacher\.endpoint\.base_url=.*{env}.*launch=vllm.*{OFFLINE}"):
        b.check()


def test_ds_32b_student_offline(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    b = make_backend(compose(["student=ds_32b"]).student, str(tmp_path), role="student")
    with pytest.raises(ModelNotAvailable, match=rf"student 'ds-r1-distill-qwen-32b'.*DeepSeek-R1-Distill-Qwen-32B.*{OFFLINE}"):
        b.check()


def test_reasoning_text_forms():
    assert join_reasoning("think hard", "42") == "<think>\nthink hard\n</think>\n\n42"
    assert join_reasoning(None, "plain") == "plain"
    assert normalize_think("inside</think>\nanswer") == "<think>\ninside</think>\nanswer"  # QwQ: the prompt opened the thought
    assert normalize_think("<think>a</think>b") == "<think>a</think>b"
    assert split_reasoning("<think>\nr\n</think>\n\nA") == ("r", "A")
    assert split_reasoning("<think>\nunfinished") == ("unfinished", "")
    assert split_reasoning("just an answer") == (None, "just an answer")
