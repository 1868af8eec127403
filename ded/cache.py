"""Content-addressed caching of whole-stage artifacts (a checkpoint, an evaluation result).

A stage artifact lives in ``<cache>/stages/<stage>/<key>/``; the key hashes the stage's config
slice, its upstream keys and the stage ``version`` (bump it to invalidate). The artifact is
built in a temporary sibling directory and renamed into place, and ``manifest.json`` is
written last inside it, so a directory with a manifest is complete and a crash leaves only a
``.tmp`` directory that the next attempt discards. Per-sample generation caching lives in
``ded/generation/sample_cache.py``.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from filelock import FileLock


def short_hash(*parts: Any, n: int = 16) -> str:
    """Stable hash of JSON-serialisable parts (dict keys sorted)."""
    blob = json.dumps(list(parts), sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:n]


class StageCache:
    def __init__(self, root: str | os.PathLike):
        self.root = Path(root) / "stages"

    def path(self, stage: str, key: str) -> Path:
        return self.root / stage / key

    def get(self, stage: str, key: str) -> Path | None:
        p = self.path(stage, key)
        return p if (p / "manifest.json").exists() else None

    def manifest(self, stage: str, key: str) -> dict:
        return json.loads((self.path(stage, key) / "manifest.json").read_text())

    @contextmanager
    def build(self, stage: str, key: str, meta: dict) -> Iterator[Path | None]:
        """Yield a temporary directory to fill, or None if another job completed it meanwhile.

        On normal exit the directory is renamed to its final place and the manifest written
        last; on an exception it is removed and nothing is published.
        """
        final = self.path(stage, key)
        final.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(str(final) + ".lock"):
            if (final / "manifest.json").exists():
                yield None
                return
            tmp = final.with_name(final.name + ".tmp")
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir()
            try:
                yield tmp
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
            shutil.rmtree(final, ignore_errors=True)
            os.replace(tmp, final)
            atomic_write_text(final / "manifest.json", json.dumps({"stage": stage, "key": key, **meta}, indent=1, default=str))


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    path = Path(path)
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
