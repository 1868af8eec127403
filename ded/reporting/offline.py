"""Offline W&B runs read back from their files: what `wandb sync` would upload, without a server.

An offline run (``logger.mode=offline``) is a folder ``<run record>/wandb/offline-run-<time>-<id>/``
holding ``run-<id>.wandb`` (the run's transaction log: every config, summary, history, artifact
and exit record) and ``files/`` (media, tables). wandb 0.31 has no Python reader for the log; its
``wandb leet inspect --json <file>`` prints every record as one JSON line. `read_run` runs the same
reader (the wandb-core binary that command calls, directly: ~40 ms a run instead of ~2 s for the
CLI) and folds the records into one `OfflineRun`: the run as the public API's ``Run`` would
describe it after sync (config, summary, group, name, state), plus the history keys, the
artifacts it logged (name, type, metadata with their ``inputs``, files) and those it used.

    from ded.reporting.offline import offline_runs
    for run in offline_runs("multirun/2026-01-01/12-00-00"):
        print(run.id, run.group, run.state, [a["name"] for a in run.artifacts])
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from natsort import natsorted, ns


@dataclass
class OfflineRun:
    file: Path  # the run-<id>.wandb log
    id: str = ""
    project: str = ""
    entity: str = ""
    group: str = ""
    name: str = ""
    job_type: str = ""
    tags: list[str] = field(default_factory=list)
    config: dict[str, Any] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)  # as printed: a media value as dotted keys (see nested_media)
    history_keys: set[str] = field(default_factory=set)  # names logged with a step (curves, images): not summary metrics
    history: list[dict] = field(default_factory=list)  # the history rows, in order
    artifacts: list[dict] = field(default_factory=list)  # logged: {name, type, digest, metadata, files: {path in artifact: local copy}}
    used: list[str] = field(default_factory=list)  # artifacts declared used (wandb refuses use_artifact offline: none today)
    exit_code: int | None = None  # None: the log has no exit record (killed, or still running)

    @property
    def dir(self) -> Path:
        """The offline run folder (``offline-run-*``)."""
        return self.file.parent

    @property
    def state(self) -> str:
        """As the W&B server would report it after sync: finished, failed, or running (no exit record)."""
        return "running" if self.exit_code is None else "finished" if self.exit_code == 0 else "failed"


def run_files(root: str | Path) -> list[Path]:
    """Every offline run log (``offline-run-*/run-*.wandb``) below `root`, in natural order of their
    paths (job 2 before job 10); ``latest-run`` links are not followed twice."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: no such folder")
    found = {p.resolve() for p in root.rglob("run-*.wandb") if p.parent.name.startswith("offline-run-")}
    return natsorted(found, alg=ns.PATH)


def records(file: str | Path) -> list[dict]:
    """The records of one ``.wandb`` log as ``wandb leet inspect --json`` prints them (one dict each,
    ``type`` naming the record: run, config, summary, history, artifact, use_artifact, exit, ...)."""
    from wandb.util import get_core_path

    file = Path(file).resolve()
    cmd = [get_core_path(), "leet", "inspect", "--no-observability", "--json", "--run-file", str(file), str(file.parent.parent)]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    if p.returncode != 0:
        raise RuntimeError(f"{file}: wandb-core could not read the run log (`wandb leet inspect --json {file}`: "
                           f"{(p.stderr.strip().splitlines() or ['exit code %d' % p.returncode])[-1]})")  # fmt: skip
    return [json.loads(line) for line in p.stdout.splitlines() if line.strip()]


def read_run(file: str | Path) -> OfflineRun:
    """One offline run, its records folded in order (a later config or summary update wins)."""
    run = OfflineRun(Path(file).resolve())
    for rec in records(file):
        kind, body = rec.get("type"), rec.get(rec.get("type", ""), {})
        if kind == "run":
            run.id, run.project, run.entity = body.get("run_id", ""), body.get("project", ""), body.get("entity", "")
            run.group, run.name, run.job_type = body.get("run_group", ""), body.get("display_name", ""), body.get("job_type", "")
            run.tags = list(body.get("tags", []))
            _apply(run.config, body.get("config", {}))
        elif kind == "config":
            _apply(run.config, body)
        elif kind == "summary":
            _apply(run.summary, body)
        elif kind == "history":
            run.history.append(body.get("item", {}))
            run.history_keys.update(run.history[-1])
        elif kind == "artifact":
            run.artifacts.append({
                "name": body["name"], "type": body.get("type"), "digest": body.get("digest"),
                "metadata": json.loads(body.get("metadata") or "{}"),
                "files": {e["path"]: e.get("local_path") for e in body.get("manifest", {}).get("contents", [])},
            })  # fmt: skip
        elif kind == "use_artifact":
            run.used.append(body.get("name") or body.get("id", ""))
        elif kind == "exit":
            run.exit_code = int(body.get("exit_code", 0))
    run.config.pop("_wandb", None)  # wandb's own bookkeeping, not the run's config
    return run


def nested_media(values: dict) -> dict:
    """`values` (a summary or history row as the reader prints it) with each media value (an image,
    a table: dotted keys ``corpus._type``, ``corpus.path``, ...) as one mapping under its name, as
    the public API gives it."""
    out = dict(values)
    for name in [k.removesuffix("._type") for k in values if k.endswith("._type")]:
        out[name] = {k[len(name) + 1 :]: out.pop(k) for k in list(out) if k.startswith(name + ".")}
    return out


def _apply(target: dict, update: dict) -> None:
    """A config or summary record: ``update`` {key: value}, ``remove`` [key, ...]."""
    target.update(update.get("update", {}))
    for key in update.get("remove", []):
        target.pop(key if isinstance(key, str) else ".".join(key), None)


def offline_runs(root: str | Path) -> list[OfflineRun]:
    """Every offline run below `root` (`run_files`), read."""
    return [read_run(f) for f in run_files(root)]
