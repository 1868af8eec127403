"""The replay backend on small local files in the schemas of the three published corpora.

Each file mimics its dataset's columns (names and shapes as published): OpenMathReasoning has a
row per solution and the model in a column, OpenR1-Math-220k list columns of generations and
flags, s1K-1.1 thinking and attempt of two teachers in separate columns. The shipped teacher
configs are used as they are, with replay.dataset pointed at the local file.
"""

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from conftest import compose
from ded.data import Question
from ded.generation import generate_cached
from ded.generation.factory import make_backend
from ded.generation.backends.replay import ReplayBackend
from ded.core.models import ModelNotAvailable

SAMPLING = {"temperature": 0.6, "top_p": 0.95, "max_new_tokens": 32768}
P1, P2, P3 = "Find $1+1$.", "Compute $2\\cdot 3$.", "A question nobody answered."


def _q(text, answer="0"):
    return Question(id=f"q{abs(hash(text)) % 10**6}", text=text, answer=answer)


def _backend(teacher, path, cache, *extra):
    return make_backend(compose([f"teacher={teacher}", f"teacher.replay.dataset={path}", *extra]).teacher, str(cache))


def _gen(b, cache, qs, n):
    return generate_cached(b, str(cache), qs, n, prefix=[], sampling=SAMPLING, seed=0, desc="replay")


@pytest.fixture
def omr(tmp_path):
    rows = [  # nvidia/OpenMathReasoning, split cot: one row per solution
        (P1, "DeepSeek-R1", "<think>\nr1 first\n</think>\n\\boxed{2}"),
        (P1, "QwQ-32B", "<think>\nqwq on p1\n</think>\n\nSo \\boxed{2}"),
        (P2, "QwQ-32B", "<think>\nqwq a\n</think>\n\\boxed{6}"),
        (P1, "DeepSeek-R1", "<think>\nr1 second\n</think>\n\\boxed{2}"),
        (P2, "QwQ-32B", "qwq b</think>\n\\boxed{6}"),  # a trace that starts inside its thought
    ]
    t = pa.table({
        "expected_answer": ["2" if p == P1 else "6" for p, _, _ in rows], "problem_type": ["has_answer_extracted"] * len(rows),
        "problem_source": ["aops_c4"] * len(rows), "generation_model": [m for _, m, _ in rows], "pass_rate_72b_tir": ["0.5"] * len(rows),
        "problem": [p for p, _, _ in rows], "generated_solution": [s for _, _, s in rows], "inference_mode": ["cot"] * len(rows),
        "used_in_kaggle": [False] * len(rows),
    })  # fmt: skip
    path = tmp_path / "omr_cot.parquet"
    pq.write_table(t, path)
    return path


def test_openmathreasoning_one_teacher_of_two(omr, tmp_path):
    cache = tmp_path / "cache"
    qs = [_q(P1), _q(P2), _q(P3)]
    qwq = _backend("replay_omr_qwq", omr, cache)
    qwq.check()
    out, st = _gen(qwq, cache, qs, 2)
    assert st.new_samples == 6 and st.missing == 3 and st.new_tokens == 0
    p1, p2, p3 = (out[q.id] for q in qs)
    assert p1[0]["text"] == "<think>\nqwq on p1\n</think>\n\nSo \\boxed{2}" and p1[0]["source_row"] == 1
    assert p1[1]["finish"] == "missing" and p1[1]["text"] == ""  # QwQ wrote one solution of P1
    assert [r["text"] for r in p2] == ["<think>\nqwq a\n</think>\n\\boxed{6}", "<think>\nqwq b</think>\n\\boxed{6}"]
    assert all(r["finish"] == "missing" for r in p3) and all(r["correct"] is None for r in p1 + p2)

    r1 = _backend("replay_omr_r1", omr, cache)
    out, st = _gen(r1, cache, qs[:1], 2)  # the other teacher: another cache key, its own rows in order
    assert st.new_samples == 2 and [r["text"].split("\n")[1] for r in out[qs[0].id]] == ["r1 first", "r1 second"]
    _, st = _gen(qwq, cache, qs, 2)  # replayed once: "missing" is cached too
    assert (st.new_samples, st.cached) == (0, 6)

    pool = list(ReplayBackend(qwq.cfg, {}, str(cache)).questions())
    assert [(p["text"], p["answer"]) for p in pool] == [(P1, "2"), (P2, "6")]  # QwQ's questions, once each


def test_openr1_lists_flags_and_only_correct(tmp_path):
    rows = [  # open-r1/OpenR1-Math-220k: 2-4 generations per problem in list columns
        {"problem": P1, "solution": "2", "answer": "2", "problem_type": "Algebra", "question_type": "math-word-problem", "source": "olympiads",
         "uuid": "u1", "is_reasoning_complete": [True, True, False], "generations": ["<think>\na\n</think>\n\\boxed{2}", "<think>\nb\n</think>\n\\boxed{3}", "<think>\nc"],
         "correctness_math_verify": [True, False, False], "correctness_llama": None, "finish_reasons": [None, "stop", "length"], "correctness_count": 1,
         "messages": [{"role": "user", "content": P1}]},
        {"problem": P2, "solution": "6", "answer": "6", "problem_type": "Algebra", "question_type": "math-word-problem", "source": "olympiads",
         "uuid": "u2", "is_reasoning_complete": [True, True], "generations": ["<think>\nd\n</think>\n\\boxed{5}", "<think>\ne\n</think>\n\\boxed{6}"],
         "correctness_math_verify": [False, False], "correctness_llama": [False, True], "finish_reasons": ["stop", "stop"], "correctness_count": 1,
         "messages": [{"role": "user", "content": P2}]},
    ]  # fmt: skip
    path = tmp_path / "openr1.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    qs = [_q(P1), _q(P2)]
    b = _backend("replay_openr1_r1", path, tmp_path / "c1")
    out, st = _gen(b, tmp_path / "c1", qs, 3)
    p1, p2 = out[qs[0].id], out[qs[1].id]
    assert [r["correct"] for r in p1] == [True, False, False] and [r["finish"] for r in p1] == ["stop", "stop", "length"]
    assert [r["correct"] for r in p2[:2]] == [False, True] and p2[2]["finish"] == "missing"  # llama's flag counts too
    assert p1[2]["text"] == "<think>\nc"  # an unfinished thought stays as it is

    good = _backend("replay_openr1_r1", path, tmp_path / "c2", "teacher.replay.only_correct=true")
    assert good.identity != b.identity  # the filter is part of the key
    out, st = _gen(good, tmp_path / "c2", qs, 2)
    assert [r["text"] for r in out[qs[0].id]] == ["<think>\na\n</think>\n\\boxed{2}", ""]
    assert out[qs[1].id][0]["text"].endswith("\\boxed{6}") and st.missing == 2


def test_s1k_thinking_joined_and_graded(tmp_path):
    cols = ["solution", "question", "cot_type", "source_type", "metadata", "gemini_thinking_trajectory", "gemini_attempt",
            "deepseek_thinking_trajectory", "deepseek_attempt", "gemini_grade", "gemini_grade_reason", "deepseek_grade", "deepseek_grade_reason"]  # fmt: skip
    data = [
        ["2", P1, "math", "qq8933/AIME", "{}", "gem think 1", "gem says 2", "ds think 1", "ds says \\boxed{2}", "Yes", "ok", "Yes", "ok"],
        ["6", P2, "math", "qq8933/AIME", "{}", "gem think 2", "gem says 5", "ds think 2", "ds says \\boxed{7}", "No", "wrong", "No", "wrong"],
    ]
    path = tmp_path / "s1k.parquet"
    pq.write_table(pa.table({c: [row[k] for row in data] for k, c in enumerate(cols)}), path)
    qs = [_q(P1), _q(P2)]
    ds = _backend("replay_s1k_r1", path, tmp_path / "c")
    out, _ = _gen(ds, tmp_path / "c", qs, 1)
    assert out[qs[0].id][0]["text"] == "<think>\nds think 1\n</think>\n\nds says \\boxed{2}"
    assert [out[q.id][0]["correct"] for q in qs] == [True, False]
    gem = _backend("replay_s1k_gemini", path, tmp_path / "c")
    out, _ = _gen(gem, tmp_path / "c", qs, 1)
    assert out[qs[1].id][0]["text"] == "<think>\ngem think 2\n</think>\n\ngem says 5"


def test_mapping_errors_name_the_column_and_key(omr, tmp_path):
    b = _backend("replay_omr_qwq", omr, tmp_path, "teacher.replay.question=prompt")
    with pytest.raises(ModelNotAvailable, match=r"no column\(s\) 'prompt' \(replay.question\).*generated_solution"):
        b.check()
    b = _backend("replay_omr_qwq", tmp_path / "nope.jsonl", tmp_path)
    with pytest.raises(ModelNotAvailable, match="nope.jsonl.*no such file.*teacher=smollm2_fewshot student=smollm2"):
        b.check()
