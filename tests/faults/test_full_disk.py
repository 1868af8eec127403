"""A full disk while the run writes: one line naming the path, the free space and what to set
instead, exit status 2; the sample cache keeps no torn line and the stage cache publishes nothing
half written. The small filesystem is a real tmpfs the test mounts (root), else the test skips."""

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from conftest import ROOT
from ded.core.cache import StageCache
from ded.core.errors import WriteError



@pytest.fixture
def small_disk(tmp_path):
    """A 1 MB tmpfs, mounted for the test (outside /tmp's private mount: under the test's folder)."""
    mnt = tmp_path / "small"
    mnt.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mnt)], capture_output=True).returncode:
        pytest.skip("needs root to mount a small tmpfs")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def fill(disk: Path, leave: int) -> None:
    """Fill `disk` until about `leave` bytes are free."""
    free = os.statvfs(disk).f_bavail * os.statvfs(disk).f_frsize
    (disk / f"filler-{uuid.uuid4().hex}").write_bytes(b"\0" * max(0, free - leave))


def test_a_full_disk_while_publishing_a_stage_names_the_path_and_publishes_nothing(small_disk):
    cache = StageCache(small_disk / "cache")
    fill(small_disk, 64 << 10)
    with pytest.raises(WriteError) as e, cache.build("train", "k1", {}) as tmp:
        (tmp / "model.safetensors").write_bytes(b"x" * (512 << 10))  # a checkpoint bigger than what is free
    msg = str(e.value)
    assert str(small_disk / "cache" / "stages" / "train" / "k1") in msg and "filesystem is full" in msg and "paths.cache_dir" in msg
    assert "\n" not in msg
    left = sorted(p.name for p in (small_disk / "cache" / "stages" / "train").iterdir())
    assert left == ["k1.lock"]  # no temporary folder, no half-published artifact
    assert cache.get("train", "k1") is None


def test_a_run_whose_cache_disk_fills_stops_in_one_line_and_keeps_no_torn_sample(small_disk, tmp_path, model_cache):
    cache = small_disk / "cache"
    cache.mkdir()
    (cache / "models").symlink_to(Path(model_cache) / "models", target_is_directory=True)
    fill(small_disk, 6 << 10)  # room for a few samples, not all
    p = subprocess.run([sys.executable, str(ROOT / "run.py"), "debug=tiny", "logger=none", "stop_after=passrate",
                        f"paths.cache_dir={cache}", f"hydra.run.dir={tmp_path / 'run'}"],
                       cwd=tmp_path, capture_output=True, text=True, timeout=900)  # fmt: skip
    lines = [line for line in p.stderr.splitlines() if line.startswith("error:")]
    assert p.returncode == 2, p.stderr[-3000:]
    assert len(lines) == 1 and "Traceback" not in p.stderr, p.stderr[-3000:]
    assert "cannot write" in lines[0] and str(cache) in lines[0] and "filesystem is full" in lines[0]
    for f in cache.glob("samples/*/samples.jsonl"):  # every line that stayed is whole
        for line in f.read_text().splitlines():
            json.loads(line)
