"""Reading an offline W&B run back, as `wandb sync` would upload it (wandb 0.31 has no Python reader:
its DataStore went with the Python backend; wandb-core, in Go, reads the file).

``<run>/wandb/offline-run-*/run-<id>.wandb``: a 7-byte header (":W&B", magic, version), then a
LevelDB-style log (32 KiB blocks; each chunk: crc32, length, type FULL=1/FIRST=2/MIDDLE=3/LAST=4)
of ``wandb_internal_pb2.Record`` messages. Media (tables, images) are files under ``files/`` that
the log names.
"""

from __future__ import annotations

import json
import struct
import time
from pathlib import Path


def records(wandb_file: str | Path) -> list:
    from wandb.proto import wandb_internal_pb2 as pb

    data = Path(wandb_file).read_bytes()
    assert data[:4] == b":W&B", f"{wandb_file}: not a W&B run log"
    pos, pending, out, block = 7, b"", [], 32768
    while pos + 7 <= len(data):
        if block - pos % block < 7:  # a block's tail too short for a header is padding
            pos += block - pos % block
            continue
        length, kind = struct.unpack("<HB", data[pos + 4 : pos + 7])
        pending += data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):  # a full record, or the last chunk of one
            out.append(pb.Record.FromString(pending))
            pending = b""
    return out


class OfflineRun:
    """One offline run folder (``offline-run-*``), read once its exit record is on disk."""

    def __init__(self, run_dir: str | Path, wait_s: float = 60):
        self.dir = Path(run_dir)
        self.file = next(self.dir.glob("*.wandb"))
        deadline = time.time() + wait_s
        self.records = records(self.file)
        while not self.of("exit") and time.time() < deadline:
            time.sleep(0.5)  # W&B's writer may still be closing the file
            self.records = records(self.file)

    def of(self, kind: str) -> list:
        return [getattr(r, kind) for r in self.records if r.WhichOneof("record_type") == kind]

    @property
    def run(self):
        """The RunRecord: project, entity, run_group, display_name, job_type, tags, config."""
        return self.of("run")[0]

    @property
    def exit_code(self) -> int | None:
        return self.of("exit")[-1].exit_code if self.of("exit") else None

    def history(self) -> list[dict]:
        """Every history row, {key: JSON value} (a media value such as a table: a dict of its fields)."""
        return [_nest(h.item) for h in self.of("history")]

    def summary(self) -> dict:
        out = {}
        for s in self.of("summary"):
            out.update(_nest(s.update))
        return out

    def config(self) -> dict:
        return {u.key: json.loads(u.value_json) for u in self.run.config.update}

    def table(self, key: str) -> dict:
        """The last logged ``wandb.Table`` under `key`: {"columns": [...], "data": [[...], ...]}."""
        ref = [row[key] for row in self.history() if key in row][-1]
        assert ref["_type"] == "table-file", ref
        return json.loads((self.dir / "files" / ref["path"]).read_text())

    def artifacts(self) -> list:
        return self.of("artifact")


def _nest(items) -> dict:
    """W&B items ({key or nested_key, value_json}) as one dict; a nested key (a media value's
    fields, e.g. ["filter/rejects", "path"]) becomes nested dicts."""
    out: dict = {}
    for it in items:
        keys = [it.key] if it.key else list(it.nested_key)
        d = out
        for k in keys[:-1]:
            d = d.setdefault(k, {})
        d[keys[-1]] = json.loads(it.value_json)
    return out
