"""Question pools: local files or hub datasets, built-in readers for common formats, mixing.

A pool is described by a ``PoolSpec``: where the rows come from (a local ``.jsonl``,
``.jsonl.gz``, ``.json`` or ``.parquet`` file, or a Hugging Face dataset name), how to read a
row (``format``) and which row keys hold what (``fields``). Formats:

- ``gsm8k``: ``question``; the gold is the number after ``####`` in ``answer``.
- ``math``: ``problem``; the gold is ``answer`` when the row has one, else the last
  ``\\boxed{}`` of ``solution``; ``level`` ("Level 3") becomes 3.
- ``aime`` / ``amc``: ``problem`` (or ``question``); ``answer`` is a number (AMC 2023 stores
  floats such as 27.0, which become "27"); AIME answers must be integers.
- ``choice``: multiple choice (MMLU): ``question`` and a ``choices`` list become one text with
  lettered options, laid out as for an evaluation set (``render_choice_question``); ``answer``
  (an index or a letter) becomes the letter.
- ``fields``: nothing built in; ``fields`` names the question and answer keys.

``fields`` maps our names (question, answer, id, domain, level, solution, choices, model) to
row keys and overrides the format's defaults. A source with a schema (.parquet, hub) is read
only in the columns the pool uses, and a named column it lacks fails before any row. Gold
answers are read by the format's answer kind (ded/grading/answers.py). A malformed row (bad JSON, a missing key, no answer, a
duplicate id) raises ``PoolError`` naming the file and line (or row), or, with
``on_error="skip"``, is skipped and counted by reason in the ``PoolReport``; never silently.

Published teacher datasets (nvidia/OpenMathReasoning: a row per solution, the model in a
column) give pools too: ``dedup`` makes the rows of one question text one question (its answer
from the first row; a later row with another answer is an error), and ``models`` keeps only the
questions that every listed model has a row (a solution) for, so two replayed teachers of one
dataset are compared on the same questions (conf/corpus/omr_replay.yaml).

``mix_pools`` draws from several pools in given proportions with a seed.
"""

from __future__ import annotations

import gzip
import json
import logging
import random
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

from ded.config import POOL_SUFFIXES, PoolSpec  # PoolSpec: the corpus.pools[] schema, re-exported
from ded.core.errors import UserError
from ded.core.models import hub_dataset_problem
from ded.core.registry import ConfigError, Registry
from ded.data import Question
from ded.data.tasks import TASKS
from ded.grading.answers import ANSWER_KINDS, LETTERS, GoldError, last_boxed, render_choice_question

log = logging.getLogger(__name__)



class PoolError(UserError, ValueError):
    """A pool that cannot be read; the message names the file and line (or row) and the key."""


class PoolSpecError(PoolError, ConfigError):
    """A pool spec outside its vocabulary or range; the message names the ``corpus.pools[]`` key."""


class RowError(ValueError):
    """One malformed row (internal: becomes a PoolError, or a skip counted under `reason`)."""

    def __init__(self, message: str, reason: str = "malformed"):
        super().__init__(message)
        self.reason = reason


# --- formats: a row's keys and how its gold answer is read ----------------------------------------


@dataclass(frozen=True)
class PoolFormat:
    fields: dict[str, tuple[str, ...]]  # our name -> row keys; the first present one is used
    kind: str  # the answer kind of its questions (ded.grading.answers.ANSWER_KINDS)
    read: Callable[[dict, dict], tuple]  # (row, keys) -> (question text, gold answer[, reference solution])
    domain: str = "math"  # Question.domain of its rows (a row's own domain field or the spec's wins)


FORMATS: Registry[PoolFormat] = Registry("corpus.pools[].format")


def pool_format(name: str, kind: str = "math", domain: str = "math", **fields: tuple[str, ...]):
    """Register `read(row, keys) -> (question text, gold[, reference])` as the pool format `name`:
    `fields` are the row keys tried for each of our names (``columns``: more a reader needs)."""

    def register(read):
        FORMATS.register(name, PoolFormat(fields, kind, read, domain))
        return read

    return register


def question_text(row: dict, keys: dict) -> str:
    """The row's question, stripped; RowError naming the key when it is missing or empty."""
    text = str(_get(row, keys["question"], "question")).strip()
    if not text:
        raise RowError(f"empty question ({keys['question'][0]!r})", "empty")
    return text


@pool_format("gsm8k", "gsm8k", question=("question",), answer=("answer",), id=("id", "idx"))
def _gsm8k(row, keys):
    text = question_text(row, keys)
    return text, ANSWER_KINDS["gsm8k"].gold(_get(row, keys["answer"], "answer"))


@pool_format("math", question=("problem",), solution=("solution",), answer=("answer",), id=("unique_id", "id", "idx"), level=("level",))
def _math(row, keys):
    text = question_text(row, keys)
    answer = _get(row, keys["answer"], "answer", required=False)
    if answer is None:
        answer = last_boxed(str(_get(row, keys["solution"], "solution (no answer key either)")))
        if answer is None:
            raise RowError(f"no answer key and no \\boxed{{}} in {keys['solution'][0]!r}", "no_answer")
    return text, ANSWER_KINDS["math"].gold(answer)


def number_answer(value, integer: bool) -> str:
    """AIME/AMC answers: 27, 27.0, '27' -> '27'; a non-integer is kept for AMC only."""
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise RowError(f"answer {value!r} is not a number", "bad_answer") from None
    if x.is_integer():
        return str(int(x))
    if integer:
        raise RowError(f"answer {value!r} is not an integer", "bad_answer")
    return str(value)


@pool_format("aime", question=("problem", "question"), answer=("answer",), id=("id", "idx"))
def _aime(row, keys):
    text = question_text(row, keys)
    return text, number_answer(_get(row, keys["answer"], "answer"), integer=True)


@pool_format("amc", question=("problem", "question"), answer=("answer",), id=("id", "idx"))
def _amc(row, keys):
    text = question_text(row, keys)
    return text, number_answer(_get(row, keys["answer"], "answer"), integer=False)


@pool_format("choice", "choice", question=("question",), choices=("choices",), answer=("answer",), id=("id", "idx"))
def _choice(row, keys):
    text = question_text(row, keys)
    choices = _get(row, keys["choices"], "choices")
    if not isinstance(choices, (list, tuple)) or not 2 <= len(choices) <= len(LETTERS):
        raise RowError(f"choices must be a list of 2 to {len(LETTERS)} options, got {str(choices):.80}", "bad_choices")
    return render_choice_question(text, list(choices)), ANSWER_KINDS["choice"].gold(_get(row, keys["answer"], "answer"), len(choices))


@pool_format("fields", question=("question",), answer=("answer",), id=("id",))
def _fields(row, keys):
    text = question_text(row, keys)
    return text, ANSWER_KINDS["math"].gold(_get(row, keys["answer"], "answer"))


# Code formats (humaneval, mbpp, livecodebench) are registered by ded/data/code.py with their readers.


@dataclass
class PoolReport:
    name: str
    source: str
    rows: int = 0  # rows read (blank lines are not rows)
    loaded: int = 0
    merged: int = 0  # rows repeating a question text already read (dedup)
    not_all_models: int = 0  # questions dropped: some model of spec.models has no row for them
    outside_window: int = 0  # rows dated outside [since, until]
    skipped: Counter = field(default_factory=Counter)  # reason -> rows skipped (on_error=skip)
    errors: list[str] = field(default_factory=list)  # the first few skip messages, with their location


# --- rows -> questions -------------------------------------------------------------------------


def _get(row: dict, keys: tuple[str, ...], what: str, required: bool = True):
    for k in keys:
        if k in row and row[k] is not None and row[k] != "":
            return row[k]
    if required:
        raise RowError(f"missing or empty key {keys[0]!r} ({what}); the row has {sorted(row)}", "missing_key")
    return None


def in_window(date: str | None, since: str | None, until: str | None) -> bool:
    """Whether an ISO date (LiveCodeBench's contest_date) lies in [since, until]; no window: yes."""
    if not since and not until:
        return True
    if not date:
        return False
    day = str(date)[:10]
    return (not since or day >= str(since)[:10]) and (not until or day <= str(until)[:10])


def _in_window(row, spec: PoolSpec) -> bool:
    return in_window(_get(row, _keys(spec)["date"], "date", required=False), spec.since, spec.until)


def _parse_level(value) -> int:
    if value is None:
        return 0
    m = re.search(r"\d+", str(value))
    return int(m.group()) if m else 0  # MATH has "Level ?" rows: unknown


def _keys(spec: PoolSpec) -> dict[str, tuple[str, ...]]:
    """Our name -> the row keys tried for it: the format's defaults, overridden by spec.fields."""
    return dict(FORMATS[spec.format].fields) | {k: (v,) for k, v in spec.fields.items()}


def row_to_question(row: dict, spec: PoolSpec) -> Question:
    """One row as a Question (id not yet prefixed); RowError or GoldError when it is malformed."""
    fmt = FORMATS[spec.format]
    keys = _keys(spec)
    if not isinstance(row, dict):
        raise RowError(f"a row must be an object, got {type(row).__name__}", "not_an_object")
    text, answer, *reference = fmt.read(row, keys)  # a code format also gives its reference solution
    rid = _get(row, keys["id"], "id", required=False) if keys.get("id") else None
    level = _parse_level(_get(row, keys["level"], "level", required=False)) if "level" in keys else 0
    domain = _get(row, keys["domain"], "domain", required=False) if "domain" in keys else None
    return Question(id="" if rid is None else str(rid), text=text, answer=answer, level=level, domain=str(domain or spec.domain or fmt.domain), kind=fmt.kind,
                    reference="".join(reference))


# --- sources -----------------------------------------------------------------------------------


def _is_file_like(source: str) -> bool:
    return source.endswith(POOL_SUFFIXES) or source.startswith((".", "/", "~")) or Path(source).exists()


def check_available(spec: PoolSpec, key: str = "corpus.pools[]") -> str | None:
    """Why pool `spec` cannot be read here, or None: a file that is not there, a hub dataset the hub
    does not serve, or one not in the local cache while offline or out of reach (a preflight: reads
    no row). `key`: the pool's key (``corpus.pools[0]``)."""
    if _is_file_like(spec.source):
        path = Path(spec.source).expanduser()
        return None if path.is_file() else f"{key}.source: {path}: no such file (pool {spec.name})"
    why = hub_dataset_problem(spec.source)
    return f"{key}.source: hub dataset {spec.source!r} {why} (pool {spec.name}); download it or point the source at a local file" if why else None


def _jsonl_rows(path: Path, spec: PoolSpec) -> Iterator[tuple[str, object]]:
    opener = gzip.open if path.name.endswith(".gz") else open
    try:  # bytes, decoded line by line: a binary or mis-encoded file is named with its line
        with opener(path, "rb") as f:
            for lineno, raw in enumerate(f, 1):
                try:
                    line = raw.decode("utf-8")
                except UnicodeDecodeError as e:
                    yield f"{path}:{lineno}", RowError(f"not UTF-8 text (byte {e.start}); is this a JSONL file?", "not_utf8")
                    continue
                if not line.strip():
                    continue
                try:
                    yield f"{path}:{lineno}", json.loads(line)
                except json.JSONDecodeError as e:
                    yield f"{path}:{lineno}", RowError(f"invalid JSON ({e.msg} at column {e.colno})", "invalid_json")
    except (OSError, EOFError) as e:  # not gzip data, a truncated archive, unreadable
        raise PoolError(f"pool {spec.name}: {path}: cannot read ({e})") from None


def _columns(spec: PoolSpec, have: list[str], where: str) -> list[str]:
    """The columns of a source with a schema that the pool reads (a trajectory column of a replay
    dataset is gigabytes: never read it). A column the spec names, or a question column, that the
    source lacks is an error now, naming its key, before any row is read."""
    keys = _keys(spec)
    missing = {name: col for name, col in spec.fields.items() if col not in have}
    if not any(k in have for k in keys["question"]):
        missing.setdefault("question", keys["question"][0])
    if missing:
        named = ", ".join(f"{col!r} (corpus.pools[].fields.{name})" for name, col in missing.items())
        raise PoolError(f"pool {spec.name}: {where} has no column {named}; its columns: {have}")
    return [c for c in dict.fromkeys(k for ks in keys.values() for k in ks) if c in have]


def _rows(spec: PoolSpec) -> Iterator[tuple[str, object]]:
    """(location, row) pairs; a row that is not even JSON comes as a RowError in place of the row."""
    src = spec.source
    if _is_file_like(src):
        path = Path(src).expanduser()
        if not path.is_file():
            raise PoolError(f"pool {spec.name}: {path}: no such file (corpus.pools[].source)")
        if path.name.endswith((".jsonl", ".jsonl.gz")):
            yield from _jsonl_rows(path, spec)
        elif path.suffix == ".json":
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
            except json.JSONDecodeError as e:
                raise PoolError(f"pool {spec.name}: {path}:{e.lineno}: invalid JSON ({e.msg})") from None
            except UnicodeDecodeError as e:
                raise PoolError(f"pool {spec.name}: {path}: not UTF-8 text (byte {e.start})") from None
            if not isinstance(data, list):
                raise PoolError(f"pool {spec.name}: {path}: a .json pool must be a list of objects")
            for i, row in enumerate(data):
                yield f"{path}: row {i}", row
        elif path.suffix == ".parquet":
            import pyarrow.parquet as pq

            pf = pq.ParquetFile(path)
            columns = _columns(spec, pf.schema_arrow.names, str(path))
            i = 0
            for batch in pf.iter_batches(columns=columns):
                for row in batch.to_pylist():
                    yield f"{path}: row {i}", row
                    i += 1
        else:
            raise PoolError(f"pool {spec.name}: {path}: unknown file type; allowed: {list(POOL_SUFFIXES)}")
        return
    import datasets

    try:
        ds = datasets.load_dataset(src, spec.subset, split=spec.split, revision=spec.revision)
    except Exception as e:  # offline, unknown name, wrong split: say which pool and what to do
        raise PoolError(
            f"pool {spec.name}: cannot load hub dataset {src!r} (subset {spec.subset!r}, split {spec.split!r}): {e}. "
            "Give a local .jsonl/.parquet path instead, or go online once to cache it."
        ) from e
    ds = ds.select_columns(_columns(spec, ds.column_names, f"hub dataset {src!r} [{spec.split}]"))
    for i, row in enumerate(ds):
        yield f"{src}[{spec.split}]: row {i}", row


def read_pool(spec: PoolSpec | dict | str) -> tuple[list[Question], PoolReport]:
    """The questions of one pool and what happened to each row."""
    spec = as_spec(spec)
    report = PoolReport(spec.name, spec.source)
    out: list[Question] = []
    seen: dict[str, str] = {}
    by_text: dict[str, Question] = {}  # dedup: the question each text became
    models: dict[str, set[str]] = {}  # spec.models: question text -> the models with a row for it
    for where, row in _rows(spec):
        if spec.limit is not None and report.rows >= spec.limit:
            break
        report.rows += 1
        try:
            if isinstance(row, RowError):
                raise row
            if (spec.since or spec.until) and not _in_window(row, spec):
                report.outside_window += 1
                continue
            q = row_to_question(row, spec)
            model = str(_get(row, (spec.fields["model"],), "model")) if spec.models else None
            first = by_text.get(q.text) if spec.dedup else None
            if first is not None and q.answer != first.answer:  # one text, two golds: which one to verify against?
                msg = f"answer {q.answer!r} differs from {first.answer!r} of the same question at {first.source}"
                raise RowError(msg, "conflicting_answer")
            if model is not None:
                models.setdefault(q.text, set()).add(model)
            if first is not None:
                report.merged += 1
                continue
            q.id = f"{spec.name}-{q.id or report.rows - 1}"
            q.source = where
            if q.id in seen:
                raise RowError(f"duplicate id {q.id!r} (first at {seen[q.id]})", "duplicate_id")
            seen[q.id] = where
            by_text[q.text] = q
        except (RowError, GoldError) as e:
            msg = f"{where}: {e}"
            if spec.on_error == "raise":
                raise PoolError(f"pool {spec.name}: {msg} (set on_error=skip to skip and count such rows)") from None
            report.skipped[e.reason] += 1
            if len(report.errors) < 10:
                report.errors.append(msg)
            continue
        out.append(q)
    if spec.models:  # only questions every model wrote a solution for: a comparison of them sees the same ones
        kept = [q for q in out if models[q.text].issuperset(spec.models)]
        report.not_all_models = len(out) - len(kept)
        out = kept
    report.loaded = len(out)
    if report.outside_window:
        log.info("pool %s: %d of %d rows dated outside [%s, %s] left out", spec.name, report.outside_window, report.rows, spec.since, spec.until)
    if report.merged or report.not_all_models:
        log.info("pool %s: %d questions from %d rows (%d rows repeated a question; %d questions lacked a row of one of %s)",
                 spec.name, len(out), report.rows, report.merged, report.not_all_models, spec.models)  # fmt: skip
    if report.skipped:
        log.warning("pool %s: skipped %d of %d rows %s; first: %s", spec.name, sum(report.skipped.values()), report.rows, dict(report.skipped), report.errors[0])
    return out, report


def load_pool(spec: PoolSpec | dict | str) -> list[Question]:
    """The questions of one pool (skips, if allowed, are logged; read_pool returns the counts)."""
    return read_pool(spec)[0]


def as_spec(spec: PoolSpec | dict | str) -> PoolSpec:
    if isinstance(spec, PoolSpec):
        return check_spec(spec)
    if isinstance(spec, str):
        return check_spec(PoolSpec(source=spec))
    entry = dict(spec)  # a dict, or a config node
    if entry.get("fields"):
        entry["fields"] = dict(entry["fields"])
    if entry.get("models"):
        entry["models"] = [str(m) for m in entry["models"]]
    try:
        return check_spec(PoolSpec(**entry))
    except TypeError as e:
        raise PoolError(f"pool spec {entry}: {e}") from None
    except ConfigError as e:  # a spec outside a config: no index to name
        raise PoolSpecError(f"corpus.pools[].{e}") from None


def check_spec(spec: PoolSpec, key: str = "corpus.pools[]") -> PoolSpec:
    """What the schema cannot check alone: the format is a registered one, and a date window has a date field."""
    def check(ok: bool, name: str, msg: str) -> None:
        if not ok:
            raise PoolSpecError(f"{key}.{name}: {msg} (pool {spec.source})")

    check(spec.format in FORMATS, "format", f"unknown format {spec.format!r}; allowed: {FORMATS.names()}")
    check(not (spec.since or spec.until) or "date" in {**FORMATS[spec.format].fields, **spec.fields}, "since/until",
          f"format {spec.format!r} has no date field; name it in fields.date")  # fmt: skip
    return spec


# --- mixing ------------------------------------------------------------------------------------


def _shares(weights: list[float], total: int) -> list[int]:
    """Integer counts proportional to weights summing to total (largest remainder)."""
    s = sum(weights)
    exact = [w / s * total for w in weights]
    counts = [int(x) for x in exact]
    for i in sorted(range(len(weights)), key=lambda i: -(exact[i] - counts[i]))[: total - sum(counts)]:
        counts[i] += 1
    return counts


def mix_pools(pools: dict[str, list[Question]], weights: dict[str, float], size: int | None = None, seed: int = 0) -> list[Question]:
    """`size` questions drawn from `pools` in proportion to `weights`, shuffled with `seed`.

    Each pool is shuffled with its own seed stream and its first `count` questions are taken,
    so changing one pool's weight does not reshuffle the others. size=None takes the largest
    mix the pools can supply in these proportions.
    """
    names = [n for n in pools if weights.get(n, 0) > 0]
    if not names:
        raise PoolError("mix_pools: no pool has a positive weight")
    w = [weights[n] for n in names]
    if size is None:
        s = sum(w)
        size = int(min(len(pools[n]) * s / weights[n] for n in names))
        while any(c > len(pools[n]) for c, n in zip(_shares(w, size), names)):
            size -= 1
    out: list[Question] = []
    for name, count in zip(names, _shares(w, size)):
        if count > len(pools[name]):
            raise PoolError(
                f"mix_pools: pool {name!r} holds {len(pools[name])} questions; a mix of {size} at weight "
                f"{weights[name]}/{sum(w):g} needs {count}. Lower the size or this pool's weight."
            )
        order = list(pools[name])
        random.Random(f"{seed}:{name}").shuffle(order)
        out += order[:count]
    random.Random(seed).shuffle(out)
    ids = Counter(q.id for q in out)
    dup = [i for i, c in ids.items() if c > 1]
    if dup:
        raise PoolError(f"mix_pools: question ids repeat across pools (e.g. {dup[0]!r}); give the pools distinct names")
    return out


def load_pools(specs: list, size: int | None = None, seed: int = 0) -> tuple[list[Question], list[PoolReport]]:
    """Read every pool spec and mix them by their weights (one pool: all of it, or `size` of it)."""
    specs = [as_spec(s) for s in specs]
    names = Counter(s.name for s in specs)
    if any(c > 1 for c in names.values()):
        raise PoolError(f"pools: names must be distinct (ids are prefixed with them): {dict(names)}")
    pools, reports = {}, []
    for s in specs:
        pools[s.name], r = read_pool(s)
        reports.append(r)
    return mix_pools(pools, {s.name: s.weight for s in specs}, size, seed), reports


@TASKS.register("pool")
def pool_task(corpus, eval_size: int) -> tuple[list[Question], list[Question]]:
    """Questions from ``corpus.pools``, mixed by their weights.

    One seeded mix of pool_size + eval_size questions: the last eval_size are held out, so the
    held-out split never overlaps the train pool and growing the pool keeps its prefix stable.
    """
    questions, _ = load_pools(list(corpus.pools), size=corpus.pool_size + eval_size, seed=corpus.seed)
    return questions[: corpus.pool_size], questions[corpus.pool_size :]
