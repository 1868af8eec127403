"""Live training telemetry: every TRL log entry reaches the run record (history.jsonl) and W&B
while training runs, in one process and from rank 0 of a two-process torchrun launch; a cached
checkpoint replays its recorded entries."""

import json
import struct
import time
from pathlib import Path

from conftest import compose
from ded.core.cache import StageCache
from ded.plugins import validate
from ded.stages import Run
from ded.stages.curation import Corpus
from ded.reporting.tracking import Tracker

EXAMPLES = [
    {"id": f"q{i}", "question": f"What is ${i} + {i}$?", "answer": str(2 * i), "response": f"{i} + {i} = {2 * i}, so $\\boxed{{{2 * i}}}$."}
    for i in range(1, 7)
]
PER_STEP = ("train/loss", "train/learning_rate", "train/grad_norm", "train/mean_token_accuracy", "train/entropy", "train/num_tokens",
            "train/epoch")  # fmt: skip


def make_run(run_dir: Path, cache_dir: str, overrides=()) -> Run:
    cfg = compose(["debug=tiny", f"paths.cache_dir={cache_dir}", f"paths.output_dir={run_dir}", "train.logging_steps=1", *overrides])
    conf = validate(cfg)
    return Run(conf, Tracker(cfg, conf.paths.output_dir), cache_dir, StageCache(cache_dir))


def history(run_dir: Path) -> list[dict]:
    f = run_dir / "history.jsonl"
    return [json.loads(x) for x in f.read_text().splitlines()] if f.exists() else []


def spy_on_curves(ctx: Run, monkeypatch) -> list[tuple]:
    """(step, wall time, history.jsonl lines on disk) for each curve point, taken as it is logged."""
    seen, real = [], ctx.tracker.log

    def log(metrics, step=None):
        if step is not None:
            seen.append((step, time.time(), len(history(ctx.tracker.dir))))
        real(metrics, step)

    monkeypatch.setattr(ctx.tracker, "log", log)
    return seen


def wandb_records(run_dir: str):
    """The protobuf records of an offline run's .wandb log (W&B's leveldb-style framing: a 7-byte
    file header, 32 KiB blocks, 7-byte chunk headers: crc32, length, type)."""
    from wandb.proto import wandb_internal_pb2 as pb

    data = next(Path(run_dir).glob("*.wandb")).read_bytes()
    assert data[:4] == b":W&B"
    pos, pending, block = 7, b"", 32768
    while pos + 7 <= len(data):
        if block - pos % block < 7:  # a block's tail too short for a header is padding
            pos += block - pos % block
            continue
        length, kind = struct.unpack("<HB", data[pos + 4 : pos + 7])
        pending += data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):  # a full record, or the last chunk of one
            yield pb.Record.FromString(pending)
            pending = b""


def finished_records(run_dir: str, wait_s: float = 60) -> list:
    """The run's records once W&B's writer has closed it (its exit record is on disk)."""
    deadline = time.time() + wait_s
    while True:
        records = list(wandb_records(run_dir))
        if any(r.WhichOneof("record_type") == "exit" for r in records) or time.time() > deadline:
            return records
        time.sleep(0.5)


def history_value(item):
    """A W&B history item's value: typed (the `value` oneof) or JSON."""
    kind = item.WhichOneof("value")
    if kind is None or kind == "json":
        return json.loads(item.value_json or item.json)
    return None if kind == "none" else getattr(item, kind)


def test_single_process_entries_reach_history_and_wandb_during_training(tmp_path, cache_dir, monkeypatch):
    from ded.stages import training

    ctx = make_run(tmp_path / "run", cache_dir, ["logger=wandb", "logger.mode=offline", "train.per_device_train_batch_size=2"])
    corpus = Corpus(EXAMPLES[:6], [[e["id"]] for e in EXAMPLES[:6]])
    seen = spy_on_curves(ctx, monkeypatch)
    trained = training.run(ctx, corpus)
    n = trained.info["steps"]
    assert n == 3 and not trained.info["cached"]  # 6 examples at batch 2

    rows = history(ctx.tracker.dir)
    per_step = [r for r in rows if "train/loss" in r]
    assert [r["step"] for r in per_step] == list(range(1, n + 1))  # one entry per optimizer step
    assert all(k in r for r in per_step for k in PER_STEP)
    assert rows[-1]["step"] == n and rows[-1]["train/train_loss"] == trained.info["train_loss"]  # TRL's closing entry
    assert "train/train_runtime" in rows[-1]
    # Written as they happened: each point found the earlier ones already on disk, and every
    # per-step point was logged before the checkpoint was saved.
    assert [lines for _, _, lines in seen] == list(range(len(rows)))
    saved = (Path(trained.path) / "model.safetensors").stat().st_mtime
    assert all(t < saved for step, t, _ in seen[:n])
    m = json.loads((ctx.tracker.dir / "metrics.json").read_text())
    assert m["train/train_loss"] == trained.info["train_loss"] and m["train/cached"] is False and "train/loss" not in m
    # 135M parameters in float32 with AdamW's two moments: over 1.5 GB while training, on the GPU when there is one
    import torch

    if not Path("/proc/self/status").exists():  # host memory is read from Linux's /proc
        assert "train/peak_rss_gb" not in m
    elif torch.cuda.is_available():
        assert m["train/peak_gpu_gb"] == trained.info["peak_gpu_gb"] > 1.5 and m["train/peak_rss_gb"] > 0
    else:
        assert m["train/peak_rss_gb"] == trained.info["peak_rss_gb"] > 1.5 and "train/peak_gpu_gb" not in m
    assert (ctx.tracker.dir / "plots" / "train_curves.png").stat().st_size > 0
    assert trained.info["log_history"][0]["step"] == 1 and "loss" in trained.info["log_history"][0]

    # W&B: every curve is defined on the train/step axis, and each point carries its step there.
    run_dir = ctx.tracker.metrics["wandb/run_dir"]
    ctx.tracker.finish()
    records = finished_records(run_dir)
    axis = {r.metric.name: r.metric.step_metric for r in records if r.WhichOneof("record_type") == "metric"}
    for k in PER_STEP + ("train/train_loss", "train/train_runtime"):
        assert axis.get(k) == "train/step", (k, axis.get(k))
    points = []
    for r in records:
        if r.WhichOneof("record_type") == "history":
            item = {i.key or "/".join(i.nested_key): history_value(i) for i in r.history.item}
            if "train/grad_norm" in item:
                points.append((item["train/step"], item["train/grad_norm"]))
    assert points == [(r["step"], r["train/grad_norm"]) for r in per_step]

    # A cached checkpoint: a new run's record still gets the recorded curves, marked cached.
    ctx2 = make_run(tmp_path / "run2", cache_dir, ["logger=none", "train.per_device_train_batch_size=2"])
    again = training.run(ctx2, corpus)
    assert again.info["cached"] and ctx2.tracker.metrics["train/cached"] is True
    assert history(ctx2.tracker.dir) == rows


def test_two_process_launch_forwards_rank_zero_entries_while_running(tmp_path, cache_dir, smollm_path, monkeypatch):
    from ded.stages import training

    overrides = ["logger=none", "train.num_processes=2", "train.launcher=torchrun", "train.per_device_train_batch_size=1"]
    ctx = make_run(tmp_path / "run", cache_dir, overrides)
    seen = spy_on_curves(ctx, monkeypatch)
    trained = training.run(ctx, Corpus(EXAMPLES[:4], [[e["id"]] for e in EXAMPLES[:4]]))
    n = trained.info["steps"]
    assert trained.info["processes"] == 2 and n == 2  # 4 examples over 2 ranks at batch 1
    if Path("/proc/self/status").exists():  # host memory is read from Linux's /proc
        assert ctx.tracker.metrics["train/peak_rss_gb"] == trained.info["peak_rss_gb"] > 0.5  # rank 0's, recorded by rank 0

    rows = history(ctx.tracker.dir)
    per_step = [r for r in rows if "train/loss" in r]
    assert [r["step"] for r in per_step] == list(range(1, n + 1))  # once per step: rank 0 only
    assert all(k in r for r in per_step for k in ("train/loss", "train/learning_rate", "train/grad_norm"))
    assert rows[-1]["train/train_loss"] == trained.info["train_loss"]
    assert [r["step"] for r in rows] == [s for s, _, _ in seen]
    # Forwarded while the launch ran: the first point reached the record before rank 0 saved the checkpoint.
    saved = (Path(trained.path) / "model.safetensors").stat().st_mtime
    assert seen[0][1] < saved, (seen[0][1], saved)
    assert not (Path(trained.path) / "launch").exists()
    # the launch published a checkpoint (manifest written last) whose weights moved off the base model's
    from transformers import AutoModelForCausalLM

    assert not trained.info["cached"] and (Path(trained.path) / "manifest.json").exists()
    model, base = (AutoModelForCausalLM.from_pretrained(p) for p in (trained.path, smollm_path))
    assert any(not (a == b).all() for a, b in zip(model.parameters(), base.parameters())), "the launched training did not change the weights"


def test_forward_entries_reads_only_complete_lines(tmp_path):
    from ded.training.sft import append_entries, forward_entries

    path, got = tmp_path / "telemetry.jsonl", []
    sink = lambda step, logs: got.append((step, logs))  # noqa: E731
    assert forward_entries(path, 0, sink) == 0 and got == []  # no file yet
    append_entries(path)(1, {"loss": 2.5})
    with open(path, "a") as f:
        f.write('{"step": 2, "loss"')  # a line still being written
    offset = forward_entries(path, 0, sink)
    assert got == [(1, {"loss": 2.5})]
    with open(path, "a") as f:
        f.write(": 1.5}\n")
    forward_entries(path, offset, sink)
    assert got == [(1, {"loss": 2.5}), (2, {"loss": 1.5})]
