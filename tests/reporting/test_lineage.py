"""Lineage after sync (python -m ded.reporting.lineage) on the session's real tiny sweep (offline W&B
runs, conftest.tiny_sweep): the edges planned from the offline files, and the GraphQL requests the
command sends to a real local HTTP server that serves those runs as `wandb sync` would have
uploaded them (UseArtifact per missing edge, none on a second pass), and one error line when the
server fails. The same server checks that ded.reporting.results.load_wandb_runs (the public API)
gives the table load_runs gives from the run records."""

from __future__ import annotations

import base64
import gzip
import json
import os
import re
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from conftest import ROOT
from ded.reporting.lineage import offline_runs, plan, records_group
from ded.reporting.offline import nested_media


class FakeWandb:
    """A local W&B server for the GraphQL operations the lineage command's public-API calls send
    (wandb 0.31, through wandb-core): Viewer, ServerFeaturesQuery, Runs, RunOutputArtifacts,
    RunInputArtifacts, UseArtifact. It serves the offline runs below a folder as synced: one
    artifact version per (name, digest), numbered v0, v1, ... in the order the runs logged them.
    Every GraphQL request is recorded; UseArtifact adds the edge, so a second pass sees it. Any
    other operation gets a GraphQL error, so an unexpected request fails the command loudly."""

    def __init__(self, folder: Path, entity: str = "me", project: str = "ded", fail: str | None = None):
        self.entity, self.project, self.fail = entity, project, fail
        self.runs = {}  # id -> OfflineRun
        self.versions: dict[tuple[str, str], int] = {}  # (name, digest) -> version index
        self.logged: dict[str, list[str]] = {}  # run id -> artifact ids it logged
        self.used: dict[str, list[str]] = {}  # run id -> artifact ids it used
        self.arts: dict[str, dict] = {}  # artifact id -> {name, type, version, digest, metadata}
        from ded.reporting.offline import offline_runs as read

        for r in read(folder):
            self.runs[r.id] = r
            self.logged[r.id], self.used[r.id] = [], []
            for a in r.artifacts:
                key = (a["name"], a["digest"])
                if key not in self.versions:
                    self.versions[key] = sum(n == a["name"] for n, _ in self.versions)
                aid = base64.b64encode(f"Artifact:{a['name']}:{self.versions[key]}".encode()).decode()
                self.arts[aid] = {**a, "version": self.versions[key]}
                self.logged[r.id].append(aid)
        self.requests: list[tuple[str, dict]] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                if self.path != "/graphql":  # wandb-core's telemetry: accepted, ignored
                    return self._send(200, b"")
                q = json.loads(body)
                op = q.get("operationName") or (re.search(r"(?:query|mutation)\s+(\w+)", q.get("query", "")) or [None, "?"])[1]
                fake.requests.append((op, q.get("variables") or {}))
                if fake.fail == "http500":
                    return self._send(500, b"internal error")
                data = fake.answer(op, q.get("variables") or {})
                out = {"data": data} if data is not None else {"errors": [{"message": f"fake W&B: no answer for {op}"}]}
                self._send(200, json.dumps(out).encode())

            def _send(self, code, payload):
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def ops(self, name: str) -> list[dict]:
        return [v for op, v in self.requests if op == name]

    # -- answers, shaped as wandb 0.31's GraphQL fragments (its pydantic models check them)

    def _project(self):
        return {"id": "UHJvamVjdDox", "internalId": "1", "name": self.project, "entity": {"name": self.entity}}

    def _artifact(self, aid):
        a, seq = self.arts[aid], {"__typename": "ArtifactSequence", "name": self.arts[aid]["name"], "project": self._project()}
        return {"__typename": "Artifact", "id": aid, "artifactSequence": seq, "versionIndex": a["version"], "artifactType": {"name": a["type"]},
                "description": None, "metadata": json.dumps(a["metadata"]), "ttlDurationSeconds": -1, "ttlIsInherited": True, "tags": [],
                "historyStep": None, "state": "COMMITTED", "size": 1, "digest": a["digest"], "commitHash": "c", "fileCount": len(a["files"]),
                "createdAt": "2026-01-01T00:00:00", "updatedAt": None,
                "aliases": [{"__typename": "ArtifactAlias", "id": f"alias-{aid}", "alias": "latest", "artifactCollection": seq}]}  # fmt: skip

    def _connection(self, ids):
        page = {"__typename": "PageInfo", "endCursor": None, "hasNextPage": False}
        return {"project": {"run": {"artifacts": {"totalCount": len(ids), "pageInfo": page, "edges": [{"node": self._artifact(i)} for i in ids]}}}}

    def _run(self, r):
        config = {k: {"value": v} for k, v in r.config.items()}
        return {"projectId": 1, "id": base64.b64encode(f"Run:{r.id}".encode()).decode(), "tags": r.tags, "name": r.id, "displayName": r.name,
                "sweepName": None, "state": r.state, "config": json.dumps(config), "group": r.group, "jobType": r.job_type, "commit": None,
                "readOnly": False, "createdAt": "2026-01-01T00:00:00", "heartbeatAt": "2026-01-01T00:00:00", "description": None, "notes": None,
                "systemMetrics": "{}", "summaryMetrics": json.dumps(nested_media(r.summary)),
                "historyLineCount": len(r.history), "user": {"name": self.entity, "username": self.entity},
                "historyKeys": {"keys": {k: {} for k in r.history_keys}, "lastStep": len(r.history) - 1}}  # fmt: skip

    def answer(self, op: str, v: dict):
        if self.fail == "auth" and op == "Viewer":
            return None
        if op == "Viewer":
            return {"viewer": {"id": "VXNlcjox", "entity": self.entity, "username": self.entity, "email": "me@example.com", "flags": "{}",
                               "teams": {"edges": []}}}  # fmt: skip
        if op == "GetDefaultEntity":
            return {"viewer": {"id": "VXNlcjox", "entity": self.entity}}
        if op == "ServerFeaturesQuery":
            return {"serverInfo": {"features": []}}
        if op == "Runs":
            if (v.get("entity"), v.get("project")) != (self.entity, self.project):
                return None
            group = json.loads(v.get("filters") or "{}").get("group")
            runs = [r for r in self.runs.values() if group in (None, r.group)]
            page = {"endCursor": None, "hasNextPage": False}
            return {"project": {"internalId": "1", "runCount": len(runs), "readOnly": False,
                                "runs": {"edges": [{"node": self._run(r), "cursor": r.id} for r in runs], "pageInfo": page}}}  # fmt: skip
        if op in ("RunOutputArtifacts", "RunInputArtifacts"):
            return self._connection((self.logged if op == "RunOutputArtifacts" else self.used)[v["run"]])
        if op == "UseArtifact":
            if v["artifactID"] not in self.used[v["runName"]]:
                self.used[v["runName"]].append(v["artifactID"])
            a = self.arts[v["artifactID"]]
            return {"useArtifact": {"artifact": {"id": v["artifactID"], "digest": a["digest"], "description": None, "state": "COMMITTED",
                                                 "createdAt": "2026-01-01T00:00:00", "metadata": json.dumps(a["metadata"])}}}  # fmt: skip
        return None

    def close(self):
        self.server.shutdown()


def lineage_cli(*args, server: FakeWandb | None = None, url: str | None = None, tmp_path: Path):
    """`python -m ded.reporting.lineage ...` against `server` (or `url`), with a throwaway HOME and an API key."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}
    env.update(HOME=str(tmp_path), WANDB_CONFIG_DIR=str(tmp_path), WANDB_DIR=str(tmp_path), WANDB_API_KEY="x" * 40,
               WANDB_BASE_URL=url or server.url, WANDB_ERROR_REPORTING="false", PYTHONPATH=str(ROOT))  # fmt: skip
    return subprocess.run([sys.executable, "-m", "ded.reporting.lineage", *args], capture_output=True, text=True, env=env, timeout=120,
                          cwd=tmp_path, stdin=subprocess.DEVNULL)  # fmt: skip


@pytest.fixture(scope="module")
def sweep(tiny_sweep):
    return tiny_sweep / "sweep1"


def _records(sweep: Path) -> dict[str, dict]:
    """run id -> metrics.json, for every run record of the sweep (the id ends its offline run folder's name)."""
    out = {}
    for m in sweep.rglob("metrics.json"):
        metrics = json.loads(m.read_text())
        out[Path(metrics["wandb/run_dir"]).name.rsplit("-", 1)[1]] = metrics
    return out


def test_offline_plan_links_each_run_to_the_corpus_and_model_it_logged(sweep):
    runs, records = offline_runs(sweep), _records(sweep)
    assert len(runs) == len(records) == 4
    edges = plan(runs)
    # each run: corpus -> (model), model -> (eval), at the digest of the artifact that same run logged
    want = {(rid, m["artifact/corpus"], f"{m['artifact/model']}") for rid, m in records.items()} | {
        (rid, m["artifact/model"], f"{m['artifact/eval']}") for rid, m in records.items()}  # fmt: skip
    assert {(e.run, e.artifact, e.output.rsplit(":digest:", 1)[0]) for e in edges} == want
    from ded.reporting.offline import offline_runs as read

    digests = {(r.id, a["name"]): a["digest"] for r in read(sweep) for a in r.artifacts}
    assert all(e.version == f"digest:{digests[(e.run, e.artifact)]}" and not e.done for e in edges)
    # the offline command prints the same plan, one line per edge
    out = subprocess.run([sys.executable, "-m", "ded.reporting.lineage", "--offline", str(sweep)], capture_output=True, text=True,
                         cwd=ROOT, timeout=120)  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert out.stdout.count(" uses ") == len(edges) == 8 and "4 runs, 8 edges: 8 to add" in out.stdout


def test_command_adds_each_missing_edge_once_through_the_public_api(sweep, tmp_path):
    server = FakeWandb(sweep)
    try:
        group = records_group(sweep)
        assert group == next(iter(server.runs.values())).group
        dry = lineage_cli("--entity", "me", "--project", "ded", "--group", group, "--dry-run", server=server, tmp_path=tmp_path)
        assert dry.returncode == 0, dry.stderr
        assert "8 edges: 8 to add, 0 already linked (dry run" in dry.stdout and not server.ops("UseArtifact")
        runs_q = server.ops("Runs")[-1]
        assert (runs_q["entity"], runs_q["project"], json.loads(runs_q["filters"])) == ("me", "ded", {"group": group})

        first = lineage_cli("--entity", "me", "--project", "ded", "--sweep", str(sweep), server=server, tmp_path=tmp_path)
        assert first.returncode == 0, first.stderr
        assert "4 runs, 8 edges: 8 added, 0 already linked" in first.stdout
        used = {(u["runName"], server.arts[u["artifactID"]]["name"], server.arts[u["artifactID"]]["version"]) for u in server.ops("UseArtifact")}
        # the version each run used is the one that run logged (the server numbered them on "sync")
        records = _records(sweep)
        want = set()
        for rid, m in records.items():
            logged = {server.arts[a]["name"]: server.arts[a]["version"] for a in server.logged[rid]}
            want |= {(rid, m["artifact/corpus"], logged[m["artifact/corpus"]]), (rid, m["artifact/model"], logged[m["artifact/model"]])}
        assert used == want and len(server.ops("UseArtifact")) == 8
        assert all(u["entityName"] == "me" and u["projectName"] == "ded" for u in server.ops("UseArtifact"))

        again = lineage_cli("--entity", "me", "--project", "ded", "--group", group, server=server, tmp_path=tmp_path)
        assert again.returncode == 0, again.stderr
        assert "8 edges: 0 added, 8 already linked" in again.stdout and len(server.ops("UseArtifact")) == 8  # idempotent
    finally:
        server.close()


@pytest.mark.parametrize("fail", ["auth", "http500", "unreachable"])
def test_a_failing_server_is_one_error_line(sweep, tmp_path, fail):
    server = FakeWandb(sweep, fail=fail if fail != "unreachable" else None)
    try:
        url = "http://127.0.0.1:9" if fail == "unreachable" else None
        r = lineage_cli("--entity", "me", "--group", "g", "--timeout", "5", server=server, url=url, tmp_path=tmp_path)
        lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
        assert r.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: lineage (http://127.0.0.1:"), r.stderr
        assert "Traceback" not in r.stderr and not server.ops("UseArtifact")
    finally:
        server.close()


def test_load_wandb_runs_through_the_public_api_gives_the_local_table(sweep, tmp_path):
    """load_wandb_runs (wandb.Api().runs, in a fresh process pointed at the server) on the synced
    sweep: the columns and values of load_runs, but for where the run lives (run_dir, wandb/*)."""
    import pandas as pd

    from ded.reporting.results import load_runs

    server = FakeWandb(sweep)
    try:
        code = ("import sys; from ded.reporting.results import load_wandb_runs; "
                "load_wandb_runs('me/ded', group=sys.argv[1]).to_csv(sys.argv[2], index=False)")  # fmt: skip
        env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}
        env.update(HOME=str(tmp_path), WANDB_API_KEY="x" * 40, WANDB_BASE_URL=server.url, WANDB_ERROR_REPORTING="false", PYTHONPATH=str(ROOT))
        r = subprocess.run([sys.executable, "-c", code, records_group(sweep), str(tmp_path / "wandb.csv")], capture_output=True, text=True,
                           env=env, timeout=120, cwd=tmp_path)  # fmt: skip
        assert r.returncode == 0, r.stderr[-2000:]
        assert server.ops("Runs") and {"RunOutputArtifacts", "UseArtifact"}.isdisjoint(op for op, _ in server.requests)
    finally:
        server.close()
    load_runs(sweep).to_csv(tmp_path / "local.csv", index=False)
    local, remote = pd.read_csv(tmp_path / "local.csv"), pd.read_csv(tmp_path / "wandb.csv")
    assert list(remote.columns) == list(local.columns) and len(remote) == len(local) == 4
    where = ["run_dir", "wandb/run_dir", "wandb/sync", "wandb/url"]  # the record folder vs entity/project/id and the run's URL
    ids = [Path(d).name.rsplit("-", 1)[1] for d in local["wandb/run_dir"]]
    assert list(remote["run_dir"]) == [f"me/ded/{i}" for i in ids] and remote["wandb/url"].str.endswith(tuple(ids)).all()
    pd.testing.assert_frame_equal(remote.drop(columns=where), local.drop(columns=where), check_dtype=False)
