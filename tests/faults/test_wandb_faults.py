"""W&B unreachable or misconfigured: the run completes with its local record and a warning.

In-process: ``wandb.init`` raising, and a W&B call raising mid-run (a real offline run).
Subprocesses of ``python run.py``: ``logger.mode=online`` with ``WANDB_BASE_URL`` on a closed
port of 127.0.0.1 (nothing else is contacted: stats, metadata and error reporting are off),
with a key (W&B dials the port until ``WANDB_INIT_TIMEOUT``) and without one (a full tiny run).
"""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
from omegaconf import OmegaConf  # noqa: E402

from conftest import ROOT  # noqa: E402
from ded.reporting.tracking import Tracker  # noqa: E402

pytestmark = pytest.mark.faults

QUIET = {"WANDB__DISABLE_STATS": "true", "WANDB__DISABLE_META": "true", "WANDB__DISABLE_MACHINE_INFO": "true",
         "WANDB_ERROR_REPORTING": "false", "WANDB_SILENT": "true"}  # fmt: skip


def _cfg(mode: str = "offline"):
    logger = {"backend": "wandb", "mode": mode, "project": "ded", "entity": None, "tags": [], "group": None}
    return OmegaConf.create({"name": "faults", "stop_after": "evaluation", "logger": logger})


def _metrics(d: Path) -> dict:
    return json.loads((d / "metrics.json").read_text())


def _use(t: Tracker) -> None:
    """What a run does with its tracker: summaries, a curve, a plot, a table, finish."""
    t.log({"passrate/pool/mean": 0.5})
    t.log({"train/loss": 1.0}, step=1)
    fig = plt.figure()
    t.plot("passrate/histogram", fig)
    t.table("corpus/examples", [{"q": "1+1", "a": 2}])
    t.finish(ok=True)


def _closed_port() -> int:
    """A loopback port nobody listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_init_failure_warns_and_keeps_the_local_record(tmp_path, monkeypatch, caplog):
    import wandb

    def refuse(**kw):
        raise wandb.errors.CommError("Error communicating with wandb: entity 'no-such-team' not found")

    monkeypatch.setattr(wandb, "init", refuse)
    with caplog.at_level(logging.WARNING, logger="ded.reporting.tracking"):
        t = Tracker(_cfg("online"), tmp_path)
        assert t.wandb is None
        _use(t)
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warned) == 1 and "W&B init" in warned[0] and "no-such-team" in warned[0] and "local record only" in warned[0]
    m = _metrics(tmp_path)
    assert m["run/status"] == "finished" and m["passrate/pool/mean"] == 0.5 and m["wandb/error"].startswith("init (mode=online")
    assert (tmp_path / "plots" / "passrate_histogram.png").stat().st_size > 0 and (tmp_path / "tables" / "corpus_examples.jsonl").exists()
    assert json.loads((tmp_path / "history.jsonl").read_text())["train/loss"] == 1.0


def test_a_failing_log_call_warns_once_and_the_rest_still_reaches_wandb(tmp_path, monkeypatch, caplog):
    """A real offline W&B run whose curve log starts raising (a full disk under W&B): one warning,
    one entry in wandb/errors, and the run's other W&B calls (plot, table) still go to W&B; every
    point stays in the local record. (The fault test on the run file: reporting/test_tracking.py.)"""
    for k, v in QUIET.items():
        monkeypatch.setenv(k, v)
    t = Tracker(_cfg("offline"), tmp_path)  # offline stays the working default
    assert t.wandb is not None and "wandb/run_dir" in t.metrics
    t.log({"passrate/pool/mean": 0.5})
    calls, logged = [], []
    real_log = t.wandb.log

    def broken(data, *a, **kw):
        if "train/loss" in data:
            calls.append(data)
            raise OSError(28, "No space left on device")
        logged.append(sorted(data))
        return real_log(data, *a, **kw)

    monkeypatch.setattr(t.wandb, "log", broken)
    with caplog.at_level(logging.WARNING, logger="ded.reporting.tracking"):
        t.log({"train/loss": 1.0}, step=1)  # raises inside W&B
        assert t.wandb is not None
        t.log({"train/loss": 0.5}, step=2)  # the same call fails again: not warned twice
        t.plot("passrate/histogram", plt.figure())
        t.table("corpus/examples", [{"q": "1+1", "a": 2}])
        t.finish(ok=True)
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(calls) == 2 and len(warned) == 1 and "W&B log train/loss failed" in warned[0] and "No space left" in warned[0]
    assert logged == [["passrate/histogram"], ["corpus/examples"]]  # the plot and the table still went to W&B
    m = _metrics(tmp_path)
    assert m["run/status"] == "finished" and m["wandb/error"].startswith("log train/loss: OSError") and m["wandb/errors"] == [m["wandb/error"]]
    assert [h["train/loss"] for h in map(json.loads, (tmp_path / "history.jsonl").read_text().splitlines())] == [1.0, 0.5]


def _run(tmp_path: Path, cache_dir: str, overrides: list[str], env_extra: dict, timeout: float):
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}  # no key, mode or URL from outside
    env.update(QUIET)
    env.update({"WANDB_CONFIG_DIR": str(tmp_path / "wandb-config"), "NETRC": str(tmp_path / "no-netrc"), **env_extra})
    out = tmp_path / "run"
    t0 = time.monotonic()
    p = subprocess.run(
        [sys.executable, str(ROOT / "run.py"), "debug=tiny", "hydra.job.chdir=false", "logger.mode=online",
         f"paths.cache_dir={cache_dir}", f"hydra.run.dir={out}", *overrides],
        cwd=tmp_path, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL, env=env,
    )  # fmt: skip
    return p, out, time.monotonic() - t0


def _warned(p, out: Path) -> str:
    logs = "".join(f.read_text() for f in out.glob("*.log"))
    return p.stderr + p.stdout + logs


def test_online_with_unreachable_base_url_completes(tmp_path):
    """A key, but WANDB_BASE_URL is a closed local port: W&B retries until WANDB_INIT_TIMEOUT,
    then the run goes on (stop_after=questions: no model work)."""
    url = f"http://127.0.0.1:{_closed_port()}"
    env = {"WANDB_BASE_URL": url, "WANDB_API_KEY": "local-" + "0" * 40, "WANDB_INIT_TIMEOUT": "3"}
    p, out, secs = _run(tmp_path, str(tmp_path / "cache"), ["stop_after=questions"], env, timeout=120)  # no model: no model cache
    assert p.returncode == 0, p.stderr[-3000:]
    text = _warned(p, out)
    assert "W&B init" in text and url in text and "local record only" in text, text[-3000:]
    m = _metrics(out)
    assert m["run/status"] == "finished" and "wandb/error" in m and "wandb/run_dir" not in m
    assert secs < 90
    assert "connection refused" in text.lower() or "timed out" in text.lower(), text[-3000:]
    assert "local-" + "0" * 40 not in text and "local-" + "0" * 40 not in (out / "metrics.json").read_text()


@pytest.mark.slow
def test_online_without_key_full_tiny_run_completes(tmp_path, cache_dir):
    """No API key and an unreachable WANDB_BASE_URL: the whole (small) run completes with its
    local record, eval metrics included, and one warning. Slow (2-5 min on 2 cores: every
    stage runs), so ``-m slow``; the stop_after=questions test above covers init on every run."""
    env = {"WANDB_BASE_URL": f"http://127.0.0.1:{_closed_port()}", "WANDB_INIT_TIMEOUT": "3"}
    p, out, secs = _run(tmp_path, cache_dir, ["analysis.enabled=false", "eval.size=2"], env, timeout=400)
    assert p.returncode == 0, p.stderr[-3000:]
    text = _warned(p, out)
    assert "W&B init" in text and "API key" in text and "local record only" in text, text[-3000:]
    m = _metrics(out)
    assert m["run/status"] == "finished" and "API key" in m["wandb/error"]
    assert 0 <= m["eval/heldout/base/avg@2"] <= 1 and 0 <= m["eval/heldout/trained/avg@2"] <= 1
    assert not list(out.rglob("*.wandb"))  # no W&B run was made
