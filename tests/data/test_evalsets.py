"""Evaluation sets read from the real reference files in $DED_DATA_DIR (skipped where unset)."""

import json
import os
import re
from pathlib import Path

import pytest

from conftest import DATA, needs_data, ROOT
from ded.grading.answers import check_answer
from ded.data.evalsets import EVAL_SETS, EvalSetError, load_eval_set, scope_of
from ded.core.registry import ConfigError



def _perturb(ans: str) -> str | None:
    m = re.search(r"\d", ans)
    return None if m is None else ans[: m.start()] + str((int(m.group()) + 1) % 10) + ans[m.end() :]


@needs_data
@pytest.mark.parametrize("name,n", [("aime24", 30), ("math500", 500)])
def test_gold_answers_verify_against_themselves_and_fail_perturbed(name, n):
    qs = load_eval_set(name, DATA)
    assert len(qs) == n
    perturbed_checked = 0
    for q in qs:
        assert check_answer(f"So the answer is $\\boxed{{{q.answer}}}$.", q.answer).correct, q.answer
        wrong = _perturb(q.answer)
        if wrong is not None:
            assert not check_answer(f"\\boxed{{{wrong}}}", q.answer).correct, (q.answer, wrong)
            perturbed_checked += 1
    assert perturbed_checked >= 0.9 * n


@needs_data
def test_every_registered_benchmark_loads_with_gold_answers():
    local = {name: b for name, b in EVAL_SETS.items() if (Path(DATA) / b.file).exists()}  # mbpp, livecodebench: tests/grading/test_code.py
    assert {"aime24", "gsm8k", "mmlu_stem", "humaneval"} <= set(local)
    for name, b in local.items():
        qs = load_eval_set(name, DATA, limit=20)
        assert len(qs) == 20 and all(q.answer and q.text for q in qs), name
        assert {q.domain for q in qs} == {b.domain}
    mc = load_eval_set("mmlu_stem", DATA, limit=5)
    assert all(q.answer in "ABCD" and "\nA. " in q.text for q in mc)
    assert load_eval_set("gsm8k", DATA, limit=1)[0].answer == "18"
    assert load_eval_set("amc23", DATA, limit=1)[0].answer == "27"  # stored as 27.0


def test_malformed_file_names_file_and_line(tmp_path):
    (tmp_path / "benchmarks").mkdir()
    good = {"problem": "1+1?", "answer": "2"}
    (tmp_path / "benchmarks" / "aime24.jsonl").write_text(json.dumps(good) + "\n{not json\n")
    with pytest.raises(EvalSetError, match=r"aime24\.jsonl:2"):
        load_eval_set("aime24", str(tmp_path))
    (tmp_path / "benchmarks" / "aime24.jsonl").write_text(json.dumps({"problem": "1+1?"}) + "\n")
    with pytest.raises(EvalSetError, match=r"aime24\.jsonl:1: no field 'answer'"):
        load_eval_set("aime24", str(tmp_path))


def test_unknown_benchmark_lists_allowed():
    with pytest.raises(ConfigError, match="eval.sets: .*allowed"):
        load_eval_set("aime99")


def test_scope_follows_what_the_student_was_trained_on():
    math = {"aime24": "in", "aime25": "in", "math500": "in", "amc23": "in", "gsm8k": "in", "mmlu_stem": "out",
            "humaneval": "out", "mbpp": "out", "livecodebench": "out"}  # fmt: skip
    assert {n: scope_of(n, {"math"}) for n in EVAL_SETS} == math == {n: scope_of(n) for n in EVAL_SETS}
    code = {n: "out" if v == "in" else ("in" if EVAL_SETS[n].domain == "code" else "out") for n, v in math.items()}
    assert {n: scope_of(n, {"code"}) for n in EVAL_SETS} == code  # trained on code: math is out of domain
    assert {n for n in EVAL_SETS if scope_of(n, {"math", "code"}) == "in"} == set(EVAL_SETS) - {"mmlu_stem"}
    assert scope_of("heldout", {"code"}) == "in"
    assert {EVAL_SETS[n].domain for n in EVAL_SETS} == {"math", "stem", "code"}  # Question.domain: the subject


@needs_data
def test_benchmarks_carry_the_answer_kind_they_are_scored_with():
    assert {q.kind for q in load_eval_set("mmlu_stem", DATA, limit=3)} == {"choice"}
    assert {q.kind for q in load_eval_set("gsm8k", DATA, limit=3)} == {"gsm8k"}
    assert {q.kind for q in load_eval_set("aime24", DATA, limit=3)} == {"math"}
    q = load_eval_set("mmlu_stem", DATA, limit=1)[0]
    assert check_answer(f"The answer is ({q.answer}).", q.answer, q.kind).correct


def test_one_mmlu_row_is_one_question_as_pool_or_eval_set(tmp_path):
    from ded.grading.answers import ANSWER_KINDS, render_choice_question
    from ded.data.pools import PoolSpec, load_pool

    row = {"question": "Which gas do plants take up?", "type": "biology", "choices": ["oxygen", "carbon dioxide", " nitrogen", "argon"], "answer": 1}
    (tmp_path / "benchmarks").mkdir()
    (tmp_path / "benchmarks" / "mmlu_stem.jsonl").write_text(json.dumps(row) + "\n")
    (tmp_path / "pool.jsonl").write_text(json.dumps(row) + "\n")
    (evq,) = load_eval_set("mmlu_stem", str(tmp_path))
    (pq,) = load_pool(PoolSpec(str(tmp_path / "pool.jsonl"), "choice"))
    text = render_choice_question(row["question"], row["choices"])
    assert text == "Which gas do plants take up?\nA. oxygen\nB. carbon dioxide\nC.  nitrogen\nD. argon"
    # The question and its options are one text; an eval set appends its answer kind's instruction.
    assert pq.text == text and evq.text == text + ANSWER_KINDS["choice"].instruction
    assert (pq.answer, pq.kind) == (evq.answer, evq.kind) == ("B", "choice")


def test_unreadable_gold_names_file_and_line(tmp_path):
    (tmp_path / "benchmarks").mkdir()
    (tmp_path / "benchmarks" / "gsm8k_test.jsonl").write_text(json.dumps({"question": "How many?", "answer": "just 7"}) + "\n")
    with pytest.raises(EvalSetError, match=r"gsm8k_test\.jsonl:1: answer has no '#### N' line"):
        load_eval_set("gsm8k", str(tmp_path))
