"""The per-question sample cache: generation is the cost, so the unit of caching is the sample.

One directory per *generation key* (model identity, prompt template, sampling parameters,
seed): ``<cache>/samples/<key>/samples.jsonl``, one JSON line per completed sample, keyed
inside by the hash of the question text and the sample index. A run asks for the samples of
its questions and generates only the missing (question, index) pairs.

Crash safety: samples are appended and flushed (fsync) in batches; a torn last line (the
process died mid-write) is ignored on read and cut off before the next append, so nothing
completed is lost and nothing is generated twice. Parallel jobs serialise on a file lock per
key: the second job waits, then finds the first job's samples and generates none of them.
"""

from __future__ import annotations

import json
import logging
import os
import re
from pathlib import Path
from typing import Container, Iterator

from filelock import FileLock

from ded.cache import atomic_write_text

log = logging.getLogger(__name__)

# How append() writes a record's head: {"q": "<hash>", "i": <index>, ...
_HEAD = re.compile(rb'^\{"q": "([^"\\]*)", "i": (\d+),')


class SampleCache:
    def __init__(self, root: str | os.PathLike, key: str, meta: dict | None = None):
        self.dir = Path(root) / "samples" / key
        self.dir.mkdir(parents=True, exist_ok=True)
        self.file = self.dir / "samples.jsonl"
        self.lock = FileLock(str(self.dir / "lock"))
        if meta is not None and not (self.dir / "meta.json").exists():
            atomic_write_text(self.dir / "meta.json", json.dumps(meta, indent=1, default=str))

    def _lines(self) -> Iterator[tuple[int, bytes]]:
        """(line number, complete line); the file may hold millions of long trajectories, so it
        is streamed, never read whole. A torn last line (no newline: a crash mid-append) is skipped."""
        if not self.file.exists():
            return
        with open(self.file, "rb") as f:
            for lineno, line in enumerate(f, 1):
                if not line.endswith(b"\n"):
                    log.info("%s: ignoring torn last line %d", self.file, lineno)
                elif line.strip():
                    yield lineno, line

    def _parse(self, lineno: int, line: bytes) -> dict | None:
        try:
            return json.loads(line)
        except json.JSONDecodeError:
            log.warning("%s:%d: corrupt line skipped", self.file, lineno)
            return None

    def read(self, qhashes: Container[str] | None = None) -> dict[str, dict[int, dict]]:
        """{question hash: {sample index: record}}, only for ``qhashes`` when given (other
        lines are not even parsed)."""
        out: dict[str, dict[int, dict]] = {}
        for lineno, line in self._lines():
            if qhashes is not None:
                m = _HEAD.match(line)
                if m and m.group(1).decode() not in qhashes:
                    continue
            rec = self._parse(lineno, line)
            if rec is not None and (qhashes is None or rec["q"] in qhashes):
                out.setdefault(rec["q"], {})[rec["i"]] = rec
        return out

    def index(self) -> dict[str, set[int]]:
        """{question hash: sample indices present}: what is cached, without holding any text
        (the record's head is matched; the trajectory is not parsed)."""
        out: dict[str, set[int]] = {}
        for lineno, line in self._lines():
            m = _HEAD.match(line)
            if m and line.rstrip().endswith(b"}"):
                out.setdefault(m.group(1).decode(), set()).add(int(m.group(2)))
            elif (rec := self._parse(lineno, line)) is not None:
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
        payload = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
        with open(self.file, "a", encoding="utf-8") as f:
            f.write(payload)
            f.flush()
            os.fsync(f.fileno())

    def __enter__(self):
        self.lock.acquire()
        self._repair_tail()
        return self

    def __exit__(self, *exc):
        self.lock.release()
