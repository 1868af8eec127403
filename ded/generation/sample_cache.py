"""The per-question sample cache: generation is the cost, so the unit of caching is the sample.

One directory per *generation key* (model identity, prompt template, sampling parameters,
seed): ``<cache>/samples/<key>/samples.jsonl``, one JSON line per completed sample, keyed
inside by the hash of the question text and the sample index. A run asks for the samples of
its questions and generates only the missing (question, index) pairs.

One line parser (``SampleCache._parse``) decides what a line is, for the index (what is
cached) and the reader (what is returned) alike, so the two always agree: a line that is not
one complete, well-formed sample record (not UTF-8, not JSON, two records joined without a
newline, JSON that is not a record, a missing key or a value of the wrong type) is skipped
with a warning naming ``file:line``, is not counted as cached, and its sample is generated
again.

Crash safety: samples are appended and flushed (fsync) in batches; a torn last line (the
process died mid-write) is ignored on read and cut off before the next append, so nothing
completed is lost and nothing is generated twice. Parallel jobs serialise on a file lock per
key: the second job waits, then finds the first job's samples and generates none of them.

Shards (``generation.shard=i/n``, see ``ded.generation``): a sharded job writes its own file,
``<key>/shards/<i>of<n>.jsonl``, under its own lock (``<i>of<n>.lock``), so shards of one key
generate at the same time; each shard file has the crash safety above. Its generation
intervals (wall-clock start and end, samples generated, one entry per job that worked on it)
are kept in ``<i>of<n>.json`` beside it. Readers (``read``, ``index``) see the union of
samples.jsonl and every shard file, in that order (shards by n, then i); a (question, index)
found in two files counts once, the first one read wins, so an unsharded job that ran beside
shards never makes a sample appear twice.
"""

from __future__ import annotations

import json
import logging
import os
import re
from pathlib import Path
from typing import Container, Iterator

from filelock import FileLock

from ded.core.errors import WriteError, write_problem
from ded.core.interrupts import check, critical
from ded.core.cache import atomic_write_text

log = logging.getLogger(__name__)

# How append() writes a record's head: {"q": "<hash>", "i": <index>, ...  The reader uses it
# only to skip lines of other questions unparsed; _parse rejects a line whose head disagrees
# with its parsed record, so skipping by head never skips a record the index counts.
_HEAD = re.compile(rb'^\{"q": "([^"\\]*)", "i": (\d+),')

# The keys every record holds (generation/_record writes them all) and their types; readers
# downstream index them directly (evaluate reads n_tokens and finish).
_FIELDS = {"q": str, "i": int, "text": str, "n_tokens": int, "finish": str}

_SHARD_FILE = re.compile(r"^(\d+)of(\d+)\.jsonl$")  # <key>/shards/<i>of<n>.jsonl


def _invalid(rec) -> str | None:
    """Why a parsed JSON value is not a sample record, or None if it is one."""
    if not isinstance(rec, dict):
        return f"a JSON {type(rec).__name__}, not a sample record"
    for k, t in _FIELDS.items():
        if k not in rec:
            return f"no {k!r} key"
        v = rec[k]
        if not isinstance(v, t) or isinstance(v, bool):
            return f"{k!r} is {type(v).__name__}, not {t.__name__}"
    if rec["i"] < 0:
        return f"negative sample index {rec['i']}"
    return None


class SampleCache:
    def __init__(self, root: str | os.PathLike, key: str, meta: dict | None = None, shard: tuple[int, int] | None = None):
        """``shard=(i, n)``: this cache appends to (and locks) shard i of n's own file, not samples.jsonl."""
        self.dir = Path(root) / "samples" / key
        self.dir.mkdir(parents=True, exist_ok=True)
        self.shard = shard
        if shard is None:
            self.file = self.dir / "samples.jsonl"
            self.lock = FileLock(str(self.dir / "lock"))
            self.intervals_file = None  # only shards note their generation intervals
        else:
            i, n = shard
            (self.dir / "shards").mkdir(exist_ok=True)
            self.file = self.dir / "shards" / f"{i}of{n}.jsonl"
            self.lock = FileLock(str(self.file.with_suffix(".lock")))  # its own lock: shards never wait on each other
            self.intervals_file = self.file.with_suffix(".json")
        if meta is not None and not (self.dir / "meta.json").exists():
            atomic_write_text(self.dir / "meta.json", json.dumps(meta, indent=1, default=str))

    def files(self) -> list[Path]:
        """Every file holding this key's samples, in reading order: samples.jsonl, then the shard
        files by (n, i). Other jobs may be appending to them; a torn last line is skipped."""
        shards = []
        for f in (self.dir / "shards").glob("*.jsonl"):
            if m := _SHARD_FILE.match(f.name):
                shards.append(((int(m.group(2)), int(m.group(1))), f))
        return [self.dir / "samples.jsonl"] + [f for _, f in sorted(shards)]

    @staticmethod
    def _lines(path: Path) -> Iterator[tuple[int, bytes]]:
        """(line number, complete line); the file may hold millions of long trajectories, so it
        is streamed, never read whole. A torn last line (no newline: a crash mid-append) is skipped."""
        if not path.exists():
            return
        with open(path, "rb") as f:
            for lineno, line in enumerate(f, 1):
                if not line.endswith(b"\n"):
                    log.info("%s: ignoring torn last line %d", path, lineno)
                elif line.strip():
                    yield lineno, line

    @staticmethod
    def _parse(path: Path, lineno: int, line: bytes) -> dict | None:
        """The one line parser: the record on a line, or None (and a warning naming file:line)
        when the line is not one well-formed sample record."""
        try:
            rec = json.loads(line.decode("utf-8"))
        except UnicodeDecodeError as e:
            why = f"not UTF-8 ({e.reason} at byte {e.start})"
        except json.JSONDecodeError as e:  # bad JSON, or two records joined without a newline ('Extra data')
            why = f"not one JSON value ({e.msg} at column {e.colno})"
        else:
            why = _invalid(rec)
            if why is None:
                m = _HEAD.match(line)
                if m is None or (m.group(1).decode(), int(m.group(2))) == (rec["q"], rec["i"]):
                    return rec
                why = "the record's head disagrees with its keys"
        log.warning("%s:%d: unreadable sample line skipped (%s); its sample will be generated again", path, lineno, why)
        return None

    def _records(self, qhashes: Container[str] | None = None) -> Iterator[dict]:
        """Every well-formed record of every file (files(): samples.jsonl first), duplicates included."""
        for path in self.files():
            for lineno, line in self._lines(path):
                if qhashes is not None and (m := _HEAD.match(line)) and m.group(1).decode(errors="replace") not in qhashes:
                    continue  # another question's line (see _HEAD): not parsed
                rec = self._parse(path, lineno, line)
                if rec is not None and (qhashes is None or rec["q"] in qhashes):
                    yield rec

    def read(self, qhashes: Container[str] | None = None) -> dict[str, dict[int, dict]]:
        """{question hash: {sample index: record}} over every file, only for ``qhashes`` when
        given (other questions' lines are not even parsed). A (question, index) held twice
        (an unsharded job beside shards) is the first one read."""
        out: dict[str, dict[int, dict]] = {}
        for rec in self._records(qhashes):
            out.setdefault(rec["q"], {}).setdefault(rec["i"], rec)
        return out

    def index(self) -> dict[str, set[int]]:
        """{question hash: sample indices present} over every file: what is cached. Every line is
        parsed by the same parser as read() (a line whose head and tail look right may be corrupt
        in between), but no text is held."""
        out: dict[str, set[int]] = {}
        for rec in self._records():
            out.setdefault(rec["q"], set()).add(rec["i"])
        return out

    def _repair_tail(self) -> None:
        """Cut a torn last line so the next append starts on a fresh line."""
        if not self.file.exists():
            return
        with open(self.file, "rb+") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            if size == 0:
                return
            f.seek(size - 1)
            if f.read(1) == b"\n":
                return
            # Walk back to the last newline (the file is append-only, the torn part is short).
            pos = size
            chunk = 4096
            while pos > 0:
                start = max(0, pos - chunk)
                f.seek(start)
                buf = f.read(pos - start)
                nl = buf.rfind(b"\n")
                if nl >= 0:
                    f.truncate(start + nl + 1)
                    return
                pos = start
            f.truncate(0)

    def append(self, records: list[dict]) -> None:
        """Append completed samples and make them durable before returning."""
        if not records:
            return
        for r in records:  # what is written must read back: the parser would skip it and regenerate forever
            if (why := _invalid(r)) is not None:
                raise ValueError(f"{self.file}: refusing to cache an invalid sample record ({why}): {str(r)[:200]}")
        payload = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
        data = payload.encode("utf-8")
        with critical():  # a signal waits for whole lines
            fd = os.open(self.file, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            size = os.fstat(fd).st_size
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view):]
                os.fsync(fd)
            except OSError as e:  # a full disk: no torn line stays behind; the samples are made again next run
                os.ftruncate(fd, size)
                if why := write_problem(e):
                    raise WriteError(self.file, why, len(data)) from e
                raise
            finally:
                os.close(fd)
        check()  # a signal whose first raise was dropped stops generation here, its samples kept

    def record_interval(self, entry: dict, new: bool = False) -> None:
        """A shard's generation intervals, kept in ``<i>of<n>.json``: ``new`` adds an entry for this
        job (a resumed shard keeps its earlier ones), else the last entry is replaced. Called under
        the shard's lock, so this job is the file's only writer."""
        runs = []
        if self.intervals_file.exists():
            try:
                runs = json.loads(self.intervals_file.read_text())["intervals"]
            except (ValueError, KeyError, TypeError) as e:  # progress notes only: never worth failing a run
                log.warning("%s: unreadable, starting it again (%s)", self.intervals_file, e)
                runs, new = [], True
        runs = runs + [entry] if new or not runs else runs[:-1] + [entry]
        i, n = self.shard
        atomic_write_text(self.intervals_file, json.dumps({"shard": f"{i}/{n}", "file": self.file.name, "intervals": runs}, indent=1))

    def __enter__(self):
        self.lock.acquire()
        self._repair_tail()
        return self

    def __exit__(self, *exc):
        self.lock.release()
