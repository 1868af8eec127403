"""ded/data/tasks.py: a task is looked up by corpus.task; worked examples by fewshot_task, with the
arithmetic ones for a task that has none, and a style a task lacks is a ConfigError naming it."""

import pytest

from ded.config import ConfigError, CorpusConfig
from ded.data import arithmetic, multistep  # noqa: F401 - they register their tasks and worked examples
from ded.data.tasks import TASKS, WORKED_EXAMPLES, load_task, worked_examples


def test_a_task_is_found_by_name_and_its_splits_are_disjoint():
    for name in ("arithmetic", "multistep"):
        train, held = load_task(CorpusConfig(task=name, levels=[1, 2], pool_size=12), 6)
        assert len(train) == 12 and len(held) == 6 and not {q.text for q in train} & {q.text for q in held}
    with pytest.raises(ConfigError, match=r"^corpus.task: unknown value 'poetry'"):
        TASKS["poetry"]


def test_worked_examples_fall_back_to_arithmetic_and_name_a_missing_style():
    assert worked_examples(None, 2) == worked_examples("arithmetic", 2) == worked_examples("pool", 2)
    turns = worked_examples("multistep", 2, "think")
    assert [t["role"] for t in turns] == ["user", "assistant"] * 2 and turns != worked_examples("multistep", 2, "terse")
    assert "<think>" in turns[1]["content"]
    with pytest.raises(ConfigError, match=r"fewshot_style='think': the arithmetic task's worked examples are \['terse'\]"):
        worked_examples("arithmetic", 1, "think")
    assert WORKED_EXAMPLES["multistep"].styles == ("terse", "stepwise", "think")
