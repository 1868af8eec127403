"""The multi-step word-problem task and the programmatic solver teacher."""

import re
from collections import Counter

import pytest

from conftest import compose
from ded.data import multistep
from ded.data.tasks import load_task, worked_examples
from ded.grading.answers import check_answer
from ded.generation import Request
from ded.generation.backends.solver import SolverBackend
from ded.core.registry import ConfigError
from ded.data.solvers import SOLVERS


@pytest.fixture(scope="module")
def splits():
    return multistep.build(300, 60, [1, 2, 3, 4, 5], seed=0)


def test_levels_balanced_and_splits_disjoint(splits):
    pool, held_out = splits
    assert Counter(q.level for q in pool) == {lv: 60 for lv in range(1, 6)}
    assert Counter(q.level for q in held_out) == {lv: 12 for lv in range(1, 6)}
    assert len({q.text for q in pool}) == 300
    assert not {q.text for q in pool} & {q.text for q in held_out}
    assert not {q.text for q in pool + held_out} & set(multistep.DEMO_QUESTIONS)
    # a larger pool keeps the smaller one as its prefix, and the held-out split does not move
    pool2, held_out2 = multistep.build(310, 60, [1, 2, 3, 4, 5], seed=0)
    assert [q.text for q in pool2[:300]] == [q.text for q in pool] and [q.text for q in held_out2] == [q.text for q in held_out]


def test_level_sets_the_number_of_steps(splits):
    for q in splits[0]:
        _, steps = multistep.read(q.text)
        assert len(steps) == multistep.LEVELS[q.level][0]
        assert int(q.answer) >= 0


def test_solver_is_always_right(splits):
    """The solver reads each question back from its text alone and its boxed answer is the gold one."""
    pool, held_out = splits
    for q in pool + held_out:
        solution = multistep.solve(q.text)
        assert check_answer(solution, q.answer, q.kind).correct, (q.text, solution)
    wrong = check_answer(multistep.solve(pool[0].text).replace(f"{{{pool[0].answer}}}", f"{{{int(pool[0].answer) + 1}}}"), pool[0].answer, "math")
    assert not wrong.correct  # and the checker would notice a wrong one


def test_worked_examples_agree_with_the_solver_in_every_style():
    for style in ("terse", "stepwise", "think"):
        turns = worked_examples("multistep", 3, style)
        assert [t["role"] for t in turns] == ["user", "assistant"] * 3
        for q, a in zip(turns[::2], turns[1::2]):
            boxed = lambda s: re.search(r"\\boxed\{(\d+)\}", s)[1]  # noqa: E731
            assert boxed(a["content"]) == boxed(multistep.solve(q["content"]))
    assert worked_examples("multistep", 1, "think")[1]["content"].startswith("<think>")
    with pytest.raises(ConfigError, match="fewshot_style"):
        worked_examples("arithmetic", 2, "think")


def test_solver_backend_never_guesses():
    b = SolverBackend("multistep")
    q = multistep.build(1, 1, [3], seed=1)[0][0]
    reqs = [Request("a", 0, [{"role": "user", "content": q.text}], 0), Request("b", 0, [{"role": "user", "content": "What is $2 + 2$?"}], 0)]
    (ok, unreadable), = list(b.generate(reqs, {}))
    assert check_answer(ok.text, q.answer, "math").correct and ok.finish == "stop"
    assert unreadable.text == "" and unreadable.finish == "missing"
    assert ok.text == SOLVERS["multistep"].fixed(q.text, "") == multistep.solve(q.text)  # the backend runs the registered solver


def test_task_registered_and_bad_level_named():
    cfg = compose(["corpus=multistep", "corpus.pool_size=10", "eval.size=5"])
    pool, held_out = load_task(cfg.corpus, cfg.eval.size)
    assert len(pool) == 10 and pool[0].id == "multi-0" and held_out[0].id == "multi-eval-0"
    with pytest.raises(ConfigError, match="corpus.levels"):
        multistep.build(4, 2, [6], seed=0)
    small = multistep.build(3, 0, [1], seed=0)[0]
    assert len(small) == 3


def test_teacher_lineup_composes():
    from ded.plugins import validate

    styles = {}
    for t in ("smollm2_fewshot", "smollm2_stepwise", "smollm2_think", "solver", "solver_varied"):
        cfg = validate(compose([f"teacher={t}", "corpus=multistep", "paths.output_dir=/tmp/x"]))
        styles[t] = (cfg.teacher.backend, getattr(cfg.teacher, "fewshot_style", None), getattr(cfg.teacher, "fewshot_task", None))
    assert styles == {"smollm2_fewshot": ("hf", "terse", "multistep"), "smollm2_stepwise": ("hf", "stepwise", "multistep"),
                      "smollm2_think": ("hf", "think", "multistep"), "solver": ("solver", None, None), "solver_varied": ("solver", None, None)}  # fmt: skip
    with pytest.raises(ConfigError, match=r"teacher.task: unknown value 'poetry'; allowed: \["):  # checked against SOLVERS
        validate(compose(["teacher=solver", "teacher.task=poetry", "corpus=multistep", "paths.output_dir=/tmp/x"]))
    assert {"code", "multistep"} <= set(SOLVERS.names())


def test_varied_solver_is_always_right_reproducible_and_varied(splits):
    """style=varied: the same arithmetic in other words; same request -> same text; samples of one
    question differ (what diversity selection needs), and stay correct."""
    import random

    pool, held_out = splits
    texts = {}
    for q in pool + held_out:
        texts[q.id] = [multistep.solve_varied(q.text, random.Random(i)) for i in range(4)]
        assert all(check_answer(t, q.answer, q.kind).correct for t in texts[q.id]), q.text
    distinct = sum(len(set(v)) for v in texts.values()) / sum(len(v) for v in texts.values())
    assert distinct > 0.9  # nearly every sample is worded its own way
    b = SolverBackend("multistep", "varied")
    q = pool[20]
    reqs = [Request("h", i, [{"role": "user", "content": q.text}], seed=0) for i in range(4)]
    first, again = [c.text for c in next(b.generate(reqs, {}))], [c.text for c in next(b.generate(reqs, {}))]
    assert first == again and len(set(first)) > 1 and b.identity["style"] == "varied"
