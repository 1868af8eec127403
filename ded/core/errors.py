"""The errors a user fixes: a config value, an input file, a missing model or a taken run folder.

``run.py`` prints their message alone (no traceback) and exits with status 2: the message
already names the key, file and line, or what is missing. Anything else is a bug and keeps its
traceback.
"""


class UserError(Exception):
    """Bad input or an unusable machine, named in the message."""


import errno  # noqa: E402 - below the class the whole project imports first
import os  # noqa: E402
import shutil  # noqa: E402

WRITE_PROBLEMS = {errno.ENOSPC: "its filesystem is full", errno.EDQUOT: "the disk quota is used up",
                  errno.EROFS: "its filesystem is read-only", errno.EACCES: "permission denied",
                  errno.EPERM: "permission denied"}  # fmt: skip


def write_problem(e: BaseException) -> str | None:
    """Why a write failed, when the user can fix it (no space, quota, read-only, permission); else
    None. Also reads the text of libraries that wrap the OS error (safetensors: "os error 28")."""
    if isinstance(e, OSError) and e.errno in WRITE_PROBLEMS:
        return WRITE_PROBLEMS[e.errno]
    text = str(e)
    if "No space left on device" in text or "os error 28" in text:
        return WRITE_PROBLEMS[errno.ENOSPC]
    if "Disk quota exceeded" in text:
        return WRITE_PROBLEMS[errno.EDQUOT]
    return None


class WriteError(UserError):
    """A file of the run could not be written for a reason the user fixes; one line naming the
    path, the free space, the bytes needed when known and what to set instead."""

    def __init__(self, path: str | os.PathLike, why: str, needed: int | None = None):
        existing = os.path.abspath(path)
        while existing != "/" and not os.path.exists(existing):
            existing = os.path.dirname(existing)
        free = shutil.disk_usage(existing).free
        need = f", {_size(needed)} needed" if needed else ""
        super().__init__(f"cannot write {path}: {why} ({_size(free)} free{need}); free space or fix the folder, or "
                         "move the cache (DED_CACHE_DIR or paths.cache_dir) or the run's record (paths.output_dir)")


def _size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"
