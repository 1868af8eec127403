import re

import pytest

from ded.data import arithmetic
from ded.grading.answers import check_answer


def _value(text: str) -> int:
    expr = re.search(r"\$(.*)\$", text).group(1).replace("\\times", "*")
    return eval(expr, {"__builtins__": {}})  # our own generated digits and + - *


def test_deterministic_and_seeded():
    a = arithmetic.build(40, 20, [1, 2, 3, 4, 5], seed=3)
    b = arithmetic.build(40, 20, [1, 2, 3, 4, 5], seed=3)
    c = arithmetic.build(40, 20, [1, 2, 3, 4, 5], seed=4)
    assert [q.text for q in a[0]] == [q.text for q in b[0]]
    assert [q.text for q in a[0]] != [q.text for q in c[0]]


def test_heldout_disjoint_from_pool_and_fewshot():
    pool, held = arithmetic.build(200, 60, [1, 2, 3, 4, 5], seed=0)
    texts = {q.text for q in pool}
    assert len(texts) == 200
    assert not texts & {q.text for q in held}
    assert not (texts | {q.text for q in held}) & {q for q, _ in arithmetic.FEWSHOT}


def test_growing_the_pool_appends_and_keeps_heldout():
    small, held_s = arithmetic.build(20, 10, [1, 2, 3, 4, 5], seed=0)
    big, held_b = arithmetic.build(35, 10, [1, 2, 3, 4, 5], seed=0)
    assert [q.text for q in big[:20]] == [q.text for q in small]
    assert [q.text for q in held_s] == [q.text for q in held_b]


def test_answers_are_right_and_verify():
    pool, _ = arithmetic.build(100, 10, [1, 2, 3, 4, 5], seed=1)
    for q in pool:
        assert int(q.answer) == _value(q.text)
        assert check_answer(f"so the answer is $\\boxed{{{q.answer}}}$", q.answer).correct
        assert not check_answer(f"\\boxed{{{int(q.answer) + 1}}}", q.answer).correct
    assert {q.level for q in pool} == {1, 2, 3, 4, 5}


def test_fewshot_demos_are_correct():
    for q, a in arithmetic.FEWSHOT:
        assert check_answer(a, str(_value(q))).correct


def test_unknown_level_and_exhausted_level():
    with pytest.raises(ValueError, match="unknown level"):
        arithmetic.build(5, 5, [9], 0)
    with pytest.raises(ValueError, match=r"corpus.pool_size: cannot draw 500"):
        arithmetic.build(500, 10, [1], 0)  # level 1 has 81 distinct questions
