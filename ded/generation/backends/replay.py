"""The ``replay`` backend: trajectories from a published dataset instead of generated ones.

Published teacher corpora hold what a teacher run would produce: nvidia/OpenMathReasoning
(DeepSeek-R1 and QwQ-32B solutions of the same problems, one row per solution, the model in
``generation_model``), open-r1/OpenR1-Math-220k (2-4 R1 generations per problem in list
columns, with correctness lists), simplescaling/s1K-1.1 (R1 and Gemini thinking + attempt of the
same 1k questions in separate columns, graded Yes/No). The ``replay`` section of a model config
maps their columns (``ReplayConfig`` below); conf/teacher/replay_*.yaml are the mappings.

Semantics, so the rest of the pipeline needs no special case:
  * a question is matched by its exact text (the asked user turn = the ``question`` column, less
    surrounding whitespace, which pools strip); a pool built from the dataset itself
    (ded/data/pools.py, conf/corpus/omr_replay.yaml) asks exactly its questions;
  * sample index i of a question is its i-th trajectory in dataset order (rows of one question,
    then positions inside a list column), after the model filter and, with ``only_correct``, the
    correctness filter;
  * a requested sample the dataset does not hold (unknown question, or i >= the number of
    trajectories) comes back as ``text=""``, ``finish="missing"``, and is cached like any other
    (the dataset and mapping are in the cache key: replaying the same corpus never rescans it);
  * the record also carries ``correct`` (the dataset's flag: true, false or null when unknown)
    and ``source_row``; ``n_tokens`` is 0 (no tokenizer is involved in replay).

The dataset is opened with ``datasets`` (memory-mapped Arrow): one pass over the question,
model and flag columns builds an index {question hash: [(row, position)]}; trajectory text is
read only for the rows asked for, one chunk at a time.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Optional

from ded.config import ModelConfig, check
from ded.core.models import ModelNotAvailable
from ded.core.reasoning import join_reasoning, normalize_think
from ded.generation import Backend, Completion, Request, question_hash
from ded.generation.backends import register_backend
from ded.generation.identity import HINT, label

log = logging.getLogger(__name__)


@dataclass
class ReplayConfig:
    dataset: Optional[str] = None  # hub dataset id, or a local .jsonl/.json/.parquet file
    subset: Optional[str] = None  # hub config name
    split: str = "train"  # split (hub) ; local files are one split
    revision: Optional[str] = None  # hub revision
    question: str = "problem"  # column: the question text, matched to the asked question
    trajectory: str = "generated_solution"  # column: one trajectory (string) or several (list of strings)
    reasoning: Optional[str] = None  # column: a separate reasoning trace, joined as <think>...</think> before the trajectory
    answer: Optional[str] = None  # column: the gold answer (for pools built from the dataset)
    model_field: Optional[str] = None  # column naming the generating model
    model_value: Optional[str] = None  # keep rows whose model_field equals this
    correct: list[str] = field(default_factory=list)  # column(s) with correctness flags (bool, Yes/No, or lists); any true = correct
    finish: Optional[str] = None  # column with finish reasons (string or list)
    only_correct: bool = False  # index only trajectories flagged correct

    def __post_init__(self):
        # keys relative to this node (teacher.replay)
        check(not (self.model_value and not self.model_field), "model_value", "needs model_field (the column to match)")
        check(not (self.only_correct and not self.correct), "only_correct", "needs correct (the flag column)")


@dataclass
class ReplayModelConfig(ModelConfig):
    """No prompt and no weights: ``path`` names the model that wrote the trajectories (a label),
    and ``sampling`` what it sampled with (it enters the sample cache key)."""

    backend: str = "replay"
    replay: ReplayConfig = field(default_factory=ReplayConfig)


@register_backend("replay", ReplayModelConfig)
def build(mcfg: ReplayModelConfig, cache_root: str, role: str, path: str, identity: dict | None) -> "ReplayBackend":
    """``identity`` is not used: what a replayed sample is follows from the dataset and the mapping."""
    r = mcfg.replay
    mapping = {k: getattr(r, k) for k in ("question", "trajectory", "reasoning", "model_field", "model_value", "finish", "only_correct")}
    mapping["correct"] = list(r.correct)
    rid = {"dataset": r.dataset, "subset": r.subset, "split": r.split, "revision": r.revision, "mapping": mapping}
    return ReplayBackend(r, rid, cache_root, label=label(role, mcfg, path), hint=HINT)

LOCAL_FORMATS = {".jsonl": "json", ".json": "json", ".parquet": "parquet"}
TRUE = {"yes", "true", "1", "correct", "y", "t"}
FALSE = {"no", "false", "0", "incorrect", "n", "f"}


def _flag(v) -> bool | None:
    if v is None:
        return None
    if isinstance(v, bool):
        return v
    if isinstance(v, (int, float)):
        return bool(v)
    s = str(v).strip().lower()
    return True if s in TRUE else False if s in FALSE else None


def _at(value, j: int):
    """Element j of a list column, or the scalar itself (j = -1)."""
    if j < 0:
        return value
    if isinstance(value, (list, tuple)):
        return value[j] if j < len(value) else None
    return value


class ReplayBackend(Backend):
    def __init__(self, rcfg, identity: dict, cache_root: str, label: str = "teacher", hint: str = ""):
        self.cfg = rcfg
        self.identity = {"backend": "replay", **identity}
        self.cache_root = cache_root
        self.label, self.hint = label, hint
        self.chunk_size = 512  # trajectories read per chunk (long traces: ~15 MB)
        self._ds = None
        self._index: dict[str, list[tuple[int, int]]] | None = None

    # ── opening the dataset ───────────────────────────────────────────────────────────────
    def _source(self) -> tuple[str, Path | None]:
        name = self.cfg.dataset
        if not name:
            raise ModelNotAvailable(f"{self.label}: backend=replay needs replay.dataset (a hub dataset id or a local .jsonl/.parquet file). {self.hint}")
        p = Path(name).expanduser()
        if p.suffix in LOCAL_FORMATS or p.exists() or name.startswith(("/", "./", "../", "~")):
            return name, p
        return name, None

    def check(self) -> None:
        name, path = self._source()
        if path is not None:
            if not path.is_file():
                raise ModelNotAvailable(f"{self.label}: replay.dataset {name!r}: no such file. {self.hint}")
            if path.suffix not in LOCAL_FORMATS:
                raise ModelNotAvailable(f"{self.label}: replay.dataset {name!r}: unsupported file type {path.suffix!r}; allowed: {sorted(LOCAL_FORMATS)}")
            self._open()  # local: cheap, and validates the column mapping now
            return
        import datasets

        try:
            builder = datasets.load_dataset_builder(name, self.cfg.subset, revision=self.cfg.revision)
        except Exception as e:  # offline and not cached, no network, gated, typo
            raise ModelNotAvailable(
                f"{self.label}: replay dataset {name!r} (subset {self.cfg.subset!r}) is not in the local cache and could not be "
                f"fetched ({type(e).__name__}: {str(e)[:300]}). Download it first (huggingface-cli download --repo-type dataset {name}), "
                f"point replay.dataset at a local .jsonl/.parquet file. {self.hint}"
            ) from None
        splits = list((builder.info.splits or {}).keys())
        if splits and self.cfg.split not in splits:
            raise ModelNotAvailable(f"{self.label}: replay dataset {name!r} has no split {self.cfg.split!r}; it has {splits} (replay.split)")
        if builder.info.features:
            self._check_columns(list(builder.info.features), name)

    def _columns(self) -> dict[str, str]:
        c = self.cfg
        cols = {"replay.question": c.question, "replay.trajectory": c.trajectory}
        for key in ("reasoning", "answer", "model_field", "finish"):
            if getattr(c, key):
                cols[f"replay.{key}"] = getattr(c, key)
        for k, col in enumerate(c.correct):
            cols[f"replay.correct[{k}]"] = col
        return cols

    def _check_columns(self, have: list[str], name: str) -> None:
        bad = {k: col for k, col in self._columns().items() if col not in have}
        if bad:
            raise ModelNotAvailable(f"{self.label}: replay dataset {name!r} has no column(s) " + ", ".join(f"{col!r} ({k})" for k, col in bad.items()) + f"; its columns: {have}")

    def _open(self):
        if self._ds is not None:
            return self._ds
        import datasets

        name, path = self._source()
        if path is not None:
            ds = datasets.load_dataset(LOCAL_FORMATS[path.suffix], data_files=str(path), split="train", cache_dir=str(Path(self.cache_root) / "datasets"))
        else:
            ds = datasets.load_dataset(name, self.cfg.subset, split=self.cfg.split, revision=self.cfg.revision)
        self._check_columns(ds.column_names, name)
        self._ds = ds
        return ds

    # ── the index: question hash -> its trajectories in order ───────────────────────────
    def _rows(self, columns: list[str], batch_size: int = 2048) -> Iterator[tuple[int, dict]]:
        ds = self._open().select_columns(columns)
        row = 0
        for batch in ds.iter(batch_size=batch_size):
            for k in range(len(batch[columns[0]])):
                yield row, {c: batch[c][k] for c in columns}
                row += 1

    def _keep_model(self, rec: dict) -> bool:
        c = self.cfg
        return not c.model_field or c.model_value is None or str(rec[c.model_field]) == str(c.model_value)

    def _correct(self, rec: dict, j: int) -> bool | None:
        """Any verdict true: correct; else any verdict false: wrong; no verdict at all: None
        (OpenR1's Llama judge ran on few problems: its null is no verdict, not a false one)."""
        flags = [f for f in (_flag(_at(rec[col], j)) for col in self.cfg.correct) if f is not None]
        return True if any(flags) else False if flags else None

    def _build_index(self) -> dict[str, list[tuple[int, int]]]:
        c = self.cfg
        cols = list(dict.fromkeys([c.question, c.trajectory, *([c.model_field] if c.model_field else []), *c.correct]))
        index: dict[str, list[tuple[int, int]]] = {}
        rows = kept = 0
        for row, rec in self._rows(cols, batch_size=512):  # trajectory text is read here: small batches
            rows += 1
            if not self._keep_model(rec):
                continue
            traj = rec[c.trajectory]
            positions = range(len(traj)) if isinstance(traj, (list, tuple)) else [-1]
            refs = index.setdefault(question_hash(str(rec[c.question]).strip()), [])  # pools strip their texts
            for j in positions:
                if c.only_correct and self._correct(rec, j) is not True:
                    continue
                refs.append((row, j))
                kept += 1
        log.info("replay %s: %d trajectories of %d questions indexed from %d rows", c.dataset, kept, len(index), rows)
        return index

    def questions(self) -> Iterator[dict]:
        """The dataset's questions (after the model filter), once each, in dataset order:
        {"text", "answer" (or None), "row"}: the pool to replay."""
        c = self.cfg
        cols = list(dict.fromkeys([c.question, *([c.answer] if c.answer else []), *([c.model_field] if c.model_field else [])]))
        seen: set[str] = set()
        for row, rec in self._rows(cols):
            qh = question_hash(rec[c.question])
            if qh in seen or not self._keep_model(rec):
                continue
            seen.add(qh)
            yield {"text": rec[c.question], "answer": rec[c.answer] if c.answer else None, "row": row}

    # ── generation = lookup ───────────────────────────────────────────────────────────────
    def generate(self, requests: list[Request], sampling: dict) -> Iterator[list[Completion]]:
        if self._index is None:
            self._index = self._build_index()
        c = self.cfg
        refs = {}
        for r in requests:
            have = self._index.get(r.qhash, [])
            if r.index < len(have):
                refs[(r.qhash, r.index)] = have[r.index]
        cols = list(dict.fromkeys([c.trajectory, *([c.reasoning] if c.reasoning else []), *([c.finish] if c.finish else []), *c.correct]))
        rows = sorted({row for row, _ in refs.values()})
        data = self._open().select_columns(cols)[rows] if rows else {}
        at = {row: k for k, row in enumerate(rows)}
        out = []
        for r in requests:
            ref = refs.get((r.qhash, r.index))
            if ref is None:
                out.append(Completion(r, "", 0, "missing", {"correct": None}))
                continue
            row, j = ref
            rec = {col: data[col][at[row]] for col in cols}
            answer = _at(rec[c.trajectory], j)
            text = join_reasoning(_at(rec[c.reasoning], j), answer) if c.reasoning else normalize_think(answer or "")
            finish = (_at(rec[c.finish], j) if c.finish else None) or "stop"
            out.append(Completion(r, text, 0, str(finish), {"correct": self._correct(rec, j), "source_row": row}))
        for k in range(0, len(out), 256):
            yield out[k : k + 256]

    def close(self) -> None:
        self._ds = None
        self._index = None
