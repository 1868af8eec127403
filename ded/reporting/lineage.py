"""Lineage after sync: every run of a sweep declared the user of the artifacts it was made from,
so W&B's lineage graph shows corpus -> model -> evaluation.

Online, a run declares its inputs as it logs them (``Tracker.artifact``: ``run.use_artifact``).
Offline, wandb refuses ``use_artifact`` ("Cannot use artifact when in offline mode", wandb 0.31),
so a synced offline sweep has the artifacts but no edges; each artifact names its inputs in its
metadata (``inputs``, ded/reporting/artifacts.py). This command adds the edges after ``wandb
sync``, through the public API: for every run of the group, each input named by an artifact the
run logged is declared used by that run (``wandb.Api().run(...).use_artifact(artifact)``, the
``UseArtifact`` mutation), at the version that same run logged. It is idempotent: an edge already
there (``run.used_artifacts()``) is left alone, so a second run adds nothing.

    wandb sync <the sweep's offline runs>                                            # first
    python -m ded.reporting.lineage --entity E --project P --group G --dry-run       # print the edges it would add
    python -m ded.reporting.lineage --entity E --project P --sweep multirun/<sweep>  # add them (group read from the records)
    python -m ded.reporting.lineage --offline multirun/<sweep>                       # the plan from the offline files, no server

Offline the plan names each input by its digest (W&B numbers versions on sync; the same digest
becomes the same version). A failure (no API key, unreachable server, unknown project) is one
``error:`` line and exit code 2.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

from ded.reporting.offline import offline_runs as read_offline


@dataclass(frozen=True)
class Logged:
    name: str  # the artifact's name (its collection), e.g. corpus-<hash>
    version: str  # vN once synced; offline "digest:<md5>"
    inputs: tuple[str, ...]  # the names its metadata lists as inputs
    ref: Any = field(default=None, compare=False)  # the public-API Artifact (None offline)


@dataclass
class RunArtifacts:
    id: str
    name: str
    logged: list[Logged]
    used: set[tuple[str, str]]  # (name, version) already declared used
    ref: Any = None  # the public-API Run (None offline)


@dataclass(frozen=True)
class Edge:
    run: str  # run id
    artifact: str  # the input's name
    version: str | None  # the version the run logged; None: the run did not log it (left out)
    output: str  # the artifact made from it (name:version), why the run used it
    done: bool = False  # already declared used

    def __str__(self) -> str:
        used = f"{self.artifact}:{self.version}" if self.version else f"{self.artifact} (not logged by this run: left out)"
        return f"run {self.run} uses {used} -> {self.output}{'  [already linked]' if self.done else ''}"


def plan(runs: Iterable[RunArtifacts]) -> list[Edge]:
    """The edges lineage needs: run -> each input of each artifact the run logged, at the version
    the same run logged (one edge per run and input, however many outputs name it)."""
    edges: dict[tuple[str, str], Edge] = {}
    for r in runs:
        logged = {a.name: a for a in r.logged}
        for out in r.logged:
            for name in out.inputs:
                src = logged.get(name)
                version = src.version if src else None
                edges.setdefault((r.id, name), Edge(r.id, name, version, f"{out.name}:{out.version}", (name, version) in r.used))
    return list(edges.values())


def offline_runs(folder: str | Path) -> list[RunArtifacts]:
    """The runs of a sweep as their offline W&B files hold them (ded.reporting.offline)."""
    return [RunArtifacts(r.id, r.name, [Logged(a["name"], f"digest:{a['digest']}", tuple(a["metadata"].get("inputs", []))) for a in r.artifacts],
                         {(u, "") for u in r.used}) for r in read_offline(folder)]  # fmt: skip


def synced_runs(entity: str, project: str, group: str, timeout: float = 30) -> list[RunArtifacts]:
    """The runs of a W&B group with the artifacts each logged and used (public API)."""
    import wandb

    api = wandb.Api(timeout=timeout)
    out = []
    for run in api.runs(f"{entity}/{project}", filters={"group": group}):
        logged = [Logged(a.name.rsplit(":", 1)[0], a.version, tuple((a.metadata or {}).get("inputs", [])), a) for a in run.logged_artifacts()]
        used = {tuple(a.name.rsplit(":", 1)) for a in run.used_artifacts()}
        out.append(RunArtifacts(run.id, run.name, logged, used, run))
    return out


def link(runs: list[RunArtifacts], edges: list[Edge]) -> int:
    """Declare every edge not yet there (``Run.use_artifact``); how many were added."""
    by_id = {r.id: r for r in runs}
    added = 0
    for e in edges:
        if e.version and not e.done:
            run = by_id[e.run]
            src = next(a for a in run.logged if a.name == e.artifact)
            run.ref.use_artifact(src.ref)
            added += 1
    return added


def records_group(folder: str | Path) -> str:
    """The W&B group the run records below `folder` were logged under (their metrics.json ``wandb/group``)."""
    groups = {json.loads(m.read_text()).get("wandb/group") for m in Path(folder).rglob("metrics.json")}
    groups.discard(None)
    if len(groups) != 1:
        raise ValueError(f"{folder}: its run records name {len(groups)} W&B groups ({sorted(groups)}); pass --group")
    return groups.pop()


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m ded.reporting.lineage", description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    ap.add_argument("--entity", default=os.environ.get("WANDB_ENTITY"), help="W&B entity (default: $WANDB_ENTITY)")
    ap.add_argument("--project", default=os.environ.get("WANDB_PROJECT", "ded"), help="W&B project (logger.project; default: $WANDB_PROJECT or ded)")
    where = ap.add_mutually_exclusive_group(required=True)
    where.add_argument("--group", help="the sweep's W&B group (metrics.json wandb/group)")
    where.add_argument("--sweep", help="a sweep folder: its run records name the group")
    where.add_argument("--offline", metavar="FOLDER", help="print the plan from the offline W&B runs below FOLDER (no server)")
    ap.add_argument("--dry-run", action="store_true", help="print the edges, add none")
    ap.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for the W&B server (default: 30)")
    a = ap.parse_args(argv)
    try:
        if a.offline:
            runs = offline_runs(a.offline)
            where_ = a.offline
        else:
            if not a.entity:
                print("error: --entity is required (or set WANDB_ENTITY)", file=sys.stderr)
                return 2
            group = a.group or records_group(a.sweep)
            where_ = f"{a.entity}/{a.project}, group {group!r}"
            runs = synced_runs(a.entity, a.project, group, a.timeout)
        if not runs:
            print(f"error: no runs in {where_}" + ("" if a.offline else " (synced? `wandb sync` the sweep's offline runs first)"), file=sys.stderr)
            return 2
        edges = plan(runs)
        for e in edges:
            print(e)
        todo = [e for e in edges if e.version and not e.done]
        if a.offline or a.dry_run:
            print(f"{len(runs)} runs, {len(edges)} edges: {len(todo)} to add, {sum(e.done for e in edges)} already linked"
                  + (" (plan only: offline files)" if a.offline else " (dry run: nothing added)"))
            return 0
        added = link(runs, edges)
        print(f"{len(runs)} runs, {len(edges)} edges: {added} added, {sum(e.done for e in edges)} already linked")
        return 0
    except Exception as e:  # noqa: BLE001 - no key, no network, bad project: one line, no traceback
        msg = " ".join(f"{type(e).__name__}: {e}".split())
        url = os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai")
        print(f"error: lineage ({url}): {msg if len(msg) <= 400 else msg[:400] + '...'}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    code = main()
    if code:  # wandb-core would keep retrying an unreachable server at interpreter exit; the error line is out
        sys.stdout.flush(), sys.stderr.flush()
        os._exit(code)
    sys.exit(code)
