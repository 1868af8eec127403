"""Content-addressed caching of whole-stage artifacts (a checkpoint, an evaluation result).

A stage artifact lives in ``<cache>/stages/<stage>/<key>/``; the key hashes the stage's config
slice, its upstream keys and the stage ``version`` (bump it to invalidate). The artifact is
built in a temporary sibling directory and renamed into place, and ``manifest.json`` is
written last inside it, so a directory with a manifest is complete and a crash leaves only a
``.tmp`` directory that the next attempt discards. Per-sample generation caching lives in
``ded/generation/sample_cache.py``.

A complete directory can still be damaged later (a disk filled while copying the cache, a
shard truncated by hand, a file deleted), so the manifest also lists every file of the
artifact with its size, and a sha256 for files up to ``HASH_MAX_BYTES``. ``get()`` and
``build()`` verify the files against it; an artifact that does not match (or whose manifest
cannot be read) is reported with the file at fault, removed, and treated as absent, so the
stage builds it again instead of failing later with an error that names no path.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from filelock import FileLock

from ded.core.errors import WriteError, write_problem
from ded.core.interrupts import critical


def short_hash(*parts: Any, n: int = 16) -> str:
    """Stable hash of JSON-serialisable parts (dict keys sorted)."""
    blob = json.dumps(list(parts), sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:n]


log = logging.getLogger(__name__)

# Files up to this size are hashed when published and on every get(); larger files (the model
# shards: a 32B model is tens of GB, hashing it on every run would cost minutes) are checked by
# size only, which is what catches the usual damage (a truncated or partly copied shard).
HASH_MAX_BYTES = 64 * 2**20
MANIFEST = "manifest.json"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def file_list(root: Path) -> dict[str, dict]:
    """{relative path: {"size": bytes, "sha256": hex (files up to HASH_MAX_BYTES only)}} of
    every file under ``root`` except the manifest."""
    out = {}
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root).as_posix()
        if rel == MANIFEST or not p.is_file():
            continue
        size = p.stat().st_size
        out[rel] = {"size": size, **({"sha256": _sha256(p)} if size <= HASH_MAX_BYTES else {})}
    return out


def damage(artifact: Path) -> str | None:
    """Why the artifact at ``artifact`` (a directory holding a manifest) does not match its
    manifest, naming the file at fault; None if every recorded file is there, of its size
    and, where recorded, of its hash."""
    try:
        manifest = json.loads((artifact / MANIFEST).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        return f"{MANIFEST} is unreadable ({type(e).__name__}: {e})"
    files = manifest.get("files") if isinstance(manifest, dict) else None
    if not isinstance(files, dict):
        # A manifest from before file lists were recorded (or not a dict at all): nothing to
        # verify against, and a damaged artifact from then would be reused forever. Rebuilding
        # it once costs one build and records the list; it is not trusted unverified.
        return f"{MANIFEST} has no file list (written by an older ded, or damaged)"
    for rel, want in files.items():
        p = artifact / rel
        if not isinstance(want, dict) or not isinstance(want.get("size"), int):
            return f"{MANIFEST} has a malformed entry for {rel}"
        if not p.is_file():
            return f"{rel} is missing"
        size = p.stat().st_size
        if size != want["size"]:
            return f"{rel} has {size} bytes, the manifest records {want['size']}"
        if "sha256" in want and _sha256(p) != want["sha256"]:
            return f"{rel} does not match its sha256 in the manifest"
    return None


class StageCache:
    def __init__(self, root: str | os.PathLike):
        self.root = Path(root) / "stages"
        self._locks: dict[Path, FileLock] = {}

    def path(self, stage: str, key: str) -> Path:
        return self.root / stage / key

    def _lock(self, final: Path) -> FileLock:
        """One lock object per artifact, reentrant in this process (get() may be called while
        build() holds it)."""
        final.parent.mkdir(parents=True, exist_ok=True)
        return self._locks.setdefault(final, FileLock(str(final) + ".lock"))

    def _valid(self, final: Path) -> bool:
        """True if the artifact is published and intact; a damaged one is reported and removed
        (call with the artifact's lock held)."""
        if not (final / MANIFEST).exists():
            return False
        why = damage(final)
        if why is None:
            return True
        log.warning("stage cache: damaged artifact %s: %s; removing it, it will be rebuilt", final, why)
        trash = final.with_name(f"{final.name}.damaged.{os.getpid()}")
        shutil.rmtree(trash, ignore_errors=True)
        try:
            os.replace(final, trash)  # gone from its place at once, even if the removal below is cut short
        except FileNotFoundError:
            return False
        shutil.rmtree(trash, ignore_errors=True)
        return False

    def get(self, stage: str, key: str) -> Path | None:
        """The artifact's directory if it is published and matches its manifest, else None (a
        damaged artifact is removed, naming the file at fault, so the caller rebuilds it)."""
        final = self.path(stage, key)
        if not (final / MANIFEST).exists():
            return None
        if damage(final) is None:
            return final
        with self._lock(final):  # re-checked under the lock: another job may be rebuilding it
            return final if self._valid(final) else None

    def manifest(self, stage: str, key: str) -> dict:
        return json.loads((self.path(stage, key) / MANIFEST).read_text())

    @contextmanager
    def build(self, stage: str, key: str, meta: dict) -> Iterator[Path | None]:
        """Yield a temporary directory to fill, or None if another job completed it meanwhile
        (a damaged artifact counts as absent: it is removed and built again).

        On normal exit the directory is renamed to its final place and the manifest, listing
        every file, written last; on an exception it is removed and nothing is published.
        """
        final = self.path(stage, key)
        with self._lock(final):
            if self._valid(final):
                yield None
                return
            tmp = final.with_name(final.name + ".tmp")
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir()
            try:
                yield tmp
            except BaseException as e:
                shutil.rmtree(tmp, ignore_errors=True)
                if why := write_problem(e):  # a full disk while writing a checkpoint: nothing is published
                    raise WriteError(final, why) from e
                raise
            files = file_list(tmp)
            with critical():  # a signal now takes effect once the output and its manifest are in place
                shutil.rmtree(final, ignore_errors=True)
                os.replace(tmp, final)
                manifest = {"stage": stage, "key": key, **meta, "files": files}
                atomic_write_text(final / MANIFEST, json.dumps(manifest, indent=1, default=str))


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    path = Path(path)
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    with critical():  # a signal waits until the file is whole and in place
        try:
            with open(tmp, "w") as f:
                f.write(text)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except OSError as e:
            tmp.unlink(missing_ok=True)
            if why := write_problem(e):
                raise WriteError(path, why, len(text.encode())) from e
            raise
