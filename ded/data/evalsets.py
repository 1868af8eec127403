"""Evaluation sets: ``EVAL_SETS`` names every set a run can be scored on (``eval.sets``).

An evaluation set is read from ``<data_dir>/<file>`` when that file exists (``eval.data_dir`` or
``DED_DATA_DIR``: a folder of local copies), otherwise from the Hugging
Face hub by name. Each entry says which field holds the question, which the gold answer, the
answer kind that reads and checks it (ded/grading/answers.py) and the subject (``Question.domain``).
Whether a set is in or out of domain depends on what the student was trained on (``scope_of``):
a set is in domain when its subject's area (math, code, stem) is one the training pool's
questions come from, so math-only training reports code as out of domain and vice versa. A
question is its text (a multiple-choice one laid out by ``render_choice_question``, as a pool
lays it out) plus its answer kind's instruction. A code set (``format``: a code pool reader of
ded/data/code.py) is read row by row as its pool format reads it: the task text with the code
instruction, and its tests as the gold; a dated one (LiveCodeBench) takes ``eval.since`` /
``eval.until``, so it can be limited to problems published after the student's training data.
"""

from __future__ import annotations

import gzip
import json
import os
from dataclasses import dataclass
from pathlib import Path

from ded.config import HELDOUT  # the task's own held-out split, evaluated beside the eval sets (re-exported)
from ded.core.errors import UserError
from ded.core.models import hub_dataset_problem
from ded.core.registry import Registry
from ded.data import (
    Question,
    code,  # noqa: F401 - registers the code pool formats the code sets are read with
)
from ded.data.pools import FORMATS, RowError, in_window
from ded.grading.answers import ANSWER_KINDS, GoldError, render_choice_question


@dataclass(frozen=True)
class EvalSet:
    name: str
    file: str  # file name under data_dir
    hub: str  # hub dataset id used when no local file exists ("": a local file only)
    hub_split: str
    question: tuple[str, ...]  # candidate fields for the question text, first present wins
    answer: str  # field with the gold answer
    kind: str  # answer kind: an ANSWER_KINDS name
    domain: str  # subject (Question.domain); its area (AREAS) decides in or out of domain
    format: str | None = None  # a code pool format (ded.data.pools.FORMATS, registered by ded/data/code.py) that reads the whole row
    date: str | None = None  # field with the release date (a contamination window applies)


EVAL_SETS: Registry[EvalSet] = Registry("eval.sets")
for _s in [
    EvalSet("aime24", "benchmarks/aime24.jsonl", "HuggingFaceH4/aime_2024", "train", ("problem",), "answer", "math", "math"),
    EvalSet("aime25", "benchmarks/aime25.jsonl", "yentinglin/aime_2025", "train", ("problem",), "answer", "math", "math"),
    EvalSet("math500", "benchmarks/math500.jsonl", "HuggingFaceH4/MATH-500", "test", ("problem",), "answer", "math", "math"),
    EvalSet("amc23", "benchmarks/amc23.jsonl", "math-ai/amc23", "test", ("problem", "question"), "answer", "math", "math"),
    EvalSet("gsm8k", "benchmarks/gsm8k_test.jsonl", "openai/gsm8k", "test", ("question",), "answer", "gsm8k", "math"),
    EvalSet("mmlu_stem", "benchmarks/mmlu_stem.jsonl", "TIGER-Lab/MMLU-STEM", "test", ("question",), "answer", "choice", "stem"),
    EvalSet("humaneval", "benchmarks/humaneval.jsonl.gz", "openai/openai_humaneval", "test", ("prompt",), "test", "code", "code", "humaneval"),
    EvalSet("mbpp", "benchmarks/mbpp.jsonl", "google-research-datasets/mbpp", "test", ("text",), "test_list", "code", "code", "mbpp"),
    EvalSet("livecodebench", "benchmarks/livecodebench.jsonl", "", "test", ("question_content",),
            "public_test_cases", "code", "code", "livecodebench", "contest_date"),
]:
    EVAL_SETS.register(_s.name, _s)


AREAS = {"math": "math", "arithmetic": "math", "word_problems": "math", "code": "code", "stem": "stem"}  # subject -> area
KIND_AREAS = {"math": "math", "gsm8k": "math", "code": "code", "choice": "stem"}  # answer kind -> area, for other subjects


def area_of(domain: str, kind: str | None = None) -> str:
    """The area of a subject (arithmetic and word problems are math); a subject not listed (a MATH
    row's "Algebra") takes its answer kind's area, so a math pool stays math."""
    return AREAS.get(domain) or KIND_AREAS.get(kind or "", domain)


def scope_of(split: str, trained: frozenset[str] | set[str] = frozenset({"math"})) -> str:
    """"in" or "out" for an evaluation split, given the areas the training pool covers
    (``area_of`` of its questions' domains): the held-out split is always "in"."""
    return "in" if split == HELDOUT or area_of(EVAL_SETS[split].domain, EVAL_SETS[split].kind) in trained else "out"


class EvalSetError(UserError, ValueError):
    pass


def _question(s: EvalSet, row: dict, where: str) -> Question:
    if s.format:  # a code set: the pool reader makes the question and its test spec from the whole row
        try:
            fmt = FORMATS[s.format]
            text, gold, reference = fmt.read(row, dict(fmt.fields))
        except (GoldError, RowError) as e:
            raise EvalSetError(f"{where}: {e}") from None
        return Question(id="", text=text, answer=gold, domain=s.domain, kind=s.kind, reference=reference)
    q = next((row[f] for f in s.question if row.get(f)), None)
    if q is None:
        raise EvalSetError(f"{where}: none of the question fields {list(s.question)} is present")
    n_choices = None
    if s.kind == "choice":
        choices = row.get("choices")
        if not choices:
            raise EvalSetError(f"{where}: multiple-choice row without 'choices'")
        q, n_choices = render_choice_question(q, choices), len(choices)
    if s.answer not in row:
        raise EvalSetError(f"{where}: no field {s.answer!r} (fields: {sorted(row)})")
    kind = ANSWER_KINDS[s.kind]
    try:
        gold = kind.gold(row[s.answer], n_choices)
    except GoldError as e:
        raise EvalSetError(f"{where}: {e}") from None
    return Question(id="", text=q + kind.instruction, answer=gold, domain=s.domain, kind=s.kind)


def _rows(s: EvalSet, data_dir: str | None):
    path = Path(data_dir, s.file) if data_dir else None
    if path is not None and path.exists():
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rt", encoding="utf-8") as f:
            for lineno, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    yield json.loads(line), f"{path}:{lineno}"
                except json.JSONDecodeError as e:
                    raise EvalSetError(f"{path}:{lineno}: not valid JSON ({e.msg})") from None
        return
    if not s.hub:
        raise EvalSetError(_local_only(s, path))
    try:
        from datasets import load_dataset

        ds = load_dataset(s.hub, split=s.hub_split)
    except Exception as e:
        hint = f" (looked for {path})" if path else " (eval.data_dir is not set)"
        raise EvalSetError(
            f"benchmark {s.name!r}: no local file{hint} and the hub dataset {s.hub!r} could not be loaded "
            f"({type(e).__name__}). Set eval.data_dir (or DED_DATA_DIR) to a folder holding {s.file}."
        ) from None
    for i, row in enumerate(ds):
        yield row, f"{s.hub}[{i}]"


LOCAL_ONLY_HINT = {  # how to get a local copy of a set the hub cannot serve to `datasets` (a loading-script repo)
    "livecodebench": "concatenate the test*.jsonl files of the release you want from the hub repo "
    "livecodebench/code_generation_lite into benchmarks/livecodebench.jsonl (each row keeps its contest_date)",
}


def _where(path) -> str:
    return f"no {path}" if path else "eval.data_dir (DED_DATA_DIR) is not set"


def _local_only(s: EvalSet, path) -> str:
    return f"eval.sets: {s.name!r} is read from a local file only ({_where(path)}): {LOCAL_ONLY_HINT.get(s.name, 'put its rows there')}"


def check_available(name: str, data_dir: str | None = None) -> str | None:
    """Why benchmark `name` cannot be read here, or None: a local file, else the hub (offline or out
    of reach: its local cache)."""
    s = EVAL_SETS[name]
    data_dir = data_dir or os.environ.get("DED_DATA_DIR")
    path = Path(data_dir, s.file) if data_dir else None
    if path is not None and path.exists():
        return None
    if not s.hub:
        return _local_only(s, path)
    if why := hub_dataset_problem(s.hub):
        return f"eval.sets: {name!r} has no local file ({_where(path)}) and the hub dataset {s.hub!r} {why}"
    return None


def load_eval_set(name: str, data_dir: str | None = None, limit: int | None = None, since: str | None = None,
                  until: str | None = None) -> list[Question]:  # fmt: skip
    """The questions of the eval set `name` (the first `limit` of them), ids ``<name>-<row>``; a
    dated set keeps only the rows released in [since, until] (ISO dates; None: no bound)."""
    s = EVAL_SETS[name]
    data_dir = data_dir or os.environ.get("DED_DATA_DIR")
    out = []
    for i, (row, where) in enumerate(_rows(s, data_dir)):
        if limit is not None and len(out) >= limit:
            break
        if s.date and not in_window(row.get(s.date), since, until):
            continue
        q = _question(s, row, where)
        q.id, q.source = f"{name}-{i}", where
        out.append(q)
    return out
