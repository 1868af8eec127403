"""Multi-node training: the launch command of each node comes from the SLURM allocation; and (slow) two
nodes on loopback train for real through that path, as one node of two processes does."""

import os
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from ded.config import TrainConfig
from ded.core.models import ModelNotAvailable
from ded.training.sft import check_environment, first_host, launch_command, machine_settings, node_command

JOB = Path("/shared/run/launch")
# what SLURM sets in a 2-node x 8-GPU allocation, as seen on the second node
ENV = {"SLURM_JOB_ID": "4242", "SLURM_NNODES": "2", "SLURM_NODEID": "1", "SLURM_JOB_NODELIST": "gpu-[07-08]", "SLURM_GPUS_ON_NODE": "8"}
PAPER = TrainConfig(num_processes=16, num_machines=2, launcher="accelerate", accelerate_config="recipes/accelerate/zero3.yaml")


def flags(cmd: list[str]) -> dict[str, str]:
    """--key=value and --key value pairs of a command line."""
    out, i = {}, 0
    while i < len(cmd):
        a = cmd[i]
        if a.startswith("--") and "=" in a:
            k, v = a[2:].split("=", 1)
            out[k] = v
        elif a.startswith("--") and i + 1 < len(cmd) and not cmd[i + 1].startswith("--"):
            out[a[2:]], i = cmd[i + 1], i + 1
        elif a.startswith("--"):
            out[a[2:]] = ""
        i += 1
    return out


@pytest.mark.parametrize("nodelist, first", [("gpu-[07-08]", "gpu-07"), ("gpu-[07-08,12],cpu1", "gpu-07"), ("node01,node02", "node01"),
                                             ("x[001-004]b", "x001b"), ("a[3,5]", "a3"), ("solo", "solo")])  # fmt: skip
def test_first_host_of_a_slurm_node_list(nodelist, first):
    assert first_host(nodelist) == first


def test_two_nodes_of_eight_gpus_accelerate_command_per_node():
    cmd = node_command(PAPER, JOB, ENV)
    f = flags(cmd)
    assert cmd[1:3] == ["-m", "accelerate.commands.launch"] and cmd[-3:] == ["-m", "ded.training.sft", str(JOB)]
    assert f["num_machines"] == "2" and f["machine_rank"] == "1" and f["main_process_ip"] == "gpu-07"
    assert f["num_processes"] == "16"  # accelerate counts the processes of every machine
    assert f["main_process_port"] == "29500" and f["config_file"].endswith("recipes/accelerate/zero3.yaml")
    # the first node gets rank 0 and the same main address; MASTER_ADDR / MASTER_PORT win when set
    f0 = flags(node_command(PAPER, JOB, {**ENV, "SLURM_NODEID": "0", "MASTER_ADDR": "10.0.0.7", "MASTER_PORT": "6000"}))
    assert (f0["machine_rank"], f0["main_process_ip"], f0["main_process_port"]) == ("0", "10.0.0.7", "6000")


def test_two_nodes_torchrun_command_splits_processes_per_node():
    f = flags(node_command(replace(PAPER, launcher="torchrun"), JOB, ENV))
    assert (f["nnodes"], f["node_rank"], f["nproc_per_node"], f["master_addr"]) == ("2", "1", "8", "gpu-07")
    assert "standalone" not in f


def test_the_batch_host_starts_one_launch_per_node_through_srun():
    cmd = launch_command(PAPER, JOB, {**ENV, "SLURM_NODEID": "0"})
    assert cmd[0] == "srun" and flags(cmd)["nodes"] == "2" and flags(cmd)["ntasks-per-node"] == "1"
    assert cmd[-4:] == ["-m", "ded.training.sft", "--node", str(JOB)] and cmd[-5] == sys.executable


def test_one_machine_keeps_the_single_node_command():
    cmd = launch_command(TrainConfig(num_processes=2, launcher="torchrun"), JOB, {})
    assert "--standalone" in cmd and cmd[0] == sys.executable


@pytest.mark.parametrize("env, why", [({}, "no allocation"), ({**ENV, "SLURM_NNODES": "1"}, r"1 node\(s\)")])
def test_a_short_allocation_is_named_before_any_launch(env, why):
    with pytest.raises(ModelNotAvailable, match=f"train.num_machines=2 needs a SLURM allocation of 2 nodes.*{why}"):
        launch_command(PAPER, JOB, env)
    assert machine_settings(2, ENV)["machine_rank"] == 1


def test_num_machines_must_divide_num_processes():
    from ded.core.registry import ConfigError

    with pytest.raises(ConfigError, match="train.num_machines"):
        TrainConfig(num_processes=16, num_machines=3)


def test_check_environment_names_gpus_and_nodes_on_this_machine():
    import torch

    if torch.cuda.device_count() >= 8:  # pragma: no cover - a GPU node
        pytest.skip("this machine has the GPUs")
    with pytest.raises(ModelNotAvailable) as e:
        check_environment(PAPER)
    assert "needs 8 GPU(s) per node" in str(e.value) and "SLURM allocation of 2 nodes" in str(e.value)
    check_environment(TrainConfig(num_processes=2, launcher="torchrun"))  # CPU DDP needs neither


# --- Two nodes on loopback: the multi-node launch run for real on this machine ---------------------
#
# There is no srun here, so a stand-in `srun` first on PATH (benchmarks/loopback_two_node.py --srun) does what
# srun does with launch_command's step: it starts the command once per node, each with its own SLURM_NODEID,
# and waits for all of them. Everything else is the harness's own code path: `launch` writes the job folder
# and runs `srun ... python -m ded.training.sft --node <job>`; each node's worker builds its node_command
# from SLURM_NODEID and execs `accelerate launch --num_machines=2 --machine_rank=<r>
# --main_process_ip=127.0.0.1 ...`; rank 0's log entries reach `on_log` through the telemetry file.
ROOT = Path(__file__).resolve().parents[2]

LOOPBACK_EXAMPLES = [{"question": f"What is ${i} + {i + 3}$?", "response": f"${i} + {i + 3} = {2 * i + 3}$, so the answer is $\\boxed{{{2 * i + 3}}}$."}
                     for i in range(1, 13)]  # fmt: skip
DDP = "recipes/accelerate/ddp.yaml"


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def loopback_allocation(tmp_path, monkeypatch):
    """This process as the batch host of a 2-node SLURM allocation whose nodes are both 127.0.0.1."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    srun = bin_dir / "srun"
    srun.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{ROOT / "benchmarks" / "loopback_two_node.py"}" --srun "$@"\n')
    srun.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    for k, v in {"SLURM_JOB_ID": "1", "SLURM_NNODES": "2", "SLURM_NODEID": "0", "SLURM_JOB_NODELIST": "127.0.0.1",
                 "MASTER_PORT": str(free_port())}.items():  # fmt: skip
        monkeypatch.setenv(k, v)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # one thread per process in both topologies: same kernels, same sums
    return tmp_path


def run_launch(student_path: str, rows: list[dict], cfg: TrainConfig, out_dir: Path) -> tuple[dict, list[tuple], float]:
    """`launch` as the training stage calls it: (train info, rank 0's entries as forwarded, wall seconds)."""
    import time

    from ded.training.sft import launch

    entries = []
    t0 = time.perf_counter()
    info = launch(student_path, rows, cfg, str(out_dir), on_log=lambda step, logs: entries.append((step, logs)))
    return info, entries, time.perf_counter() - t0


def losses(entries: list[tuple]) -> list[float]:
    return [logs["loss"] for _, logs in entries if "loss" in logs]


LOOPBACK_TOL = 1e-3  # |loss difference| per step, 2 nodes x 1 process vs 1 node x 2 (measured: 0.0, docs/cluster.md)


@pytest.mark.slow  # measured on 2 busy cores: 97-101 s (accelerate), 74 s (torchrun); two launches of 3 steps each
@pytest.mark.parametrize("launcher, recipe", [("accelerate", DDP), ("torchrun", None)], ids=["accelerate_ddp", "torchrun"])
def test_two_nodes_on_loopback_train_like_one_node_of_two_processes(loopback_allocation, smollm_path, launcher, recipe):
    """Two nodes (machine ranks 0 and 1 on 127.0.0.1, one process each, gloo on CPU) train the embedded
    student as one node of two processes does: one world of 2, the same batches, the same loss at every step."""
    from transformers import AutoTokenizer

    from ded.training.sft import to_dataset_rows

    rows = to_dataset_rows(AutoTokenizer.from_pretrained(smollm_path), LOOPBACK_EXAMPLES, [])
    # 12 examples, 2 per process, 2 processes: 3 optimizer steps. The ddp recipe makes accelerate use its
    # torchrun launcher (gloo on CPU); with no recipe, on a node with fewer than 2 GPUs, accelerate takes
    # its single-process launcher and each node trains alone (docs/cluster.md).
    cfg = TrainConfig(num_processes=2, num_machines=2, launcher=launcher, accelerate_config=recipe, per_device_train_batch_size=2,
                      num_train_epochs=1, max_length=64, learning_rate=1e-4, warmup_steps=0, lr_scheduler_type="constant",
                      logging_steps=1)  # fmt: skip
    nodes = [flags(node_command(cfg, Path("job"), {**os.environ, "SLURM_NODEID": str(r)})) for r in (0, 1)]
    rank = "machine_rank" if launcher == "accelerate" else "node_rank"
    assert [nodes[r][rank] for r in (0, 1)] == ["0", "1"] and {f.get("main_process_ip", f.get("master_addr")) for f in nodes} == {"127.0.0.1"}

    two, two_entries, two_s = run_launch(smollm_path, rows, cfg, loopback_allocation / "two_nodes")
    one, one_entries, one_s = run_launch(smollm_path, rows, replace(cfg, num_machines=1), loopback_allocation / "one_node")
    print(f"{launcher}: two nodes {two_s:.1f} s, losses {losses(two_entries)}; one node {one_s:.1f} s, losses {losses(one_entries)}")

    assert two["processes"] == one["processes"] == 2 and two["steps"] == one["steps"] == 3  # one world of 2, not two worlds of 1
    assert [s for s, _ in two_entries] == [s for s, _ in one_entries] and len(losses(two_entries)) == 3  # rank 0's entries, once each
    assert losses(two_entries) == pytest.approx(losses(one_entries), abs=LOOPBACK_TOL)
    assert losses(two_entries)[-1] < losses(two_entries)[0]  # it trained
    assert (loopback_allocation / "two_nodes" / "model.safetensors").exists() and not (loopback_allocation / "two_nodes" / "launch").exists()


def test_checkpoint_key_sees_the_recipes_precision():
    """accelerate's recipe sets bf16 autocast whatever train.bf16 says (docs/cluster.md, loopback
    section): a checkpoint trained under it is another checkpoint; a recipe without one changes nothing."""
    from ded.training.sft import checkpoint_key

    corpus = [{"question": "1+1?", "response": "2"}]
    key = lambda tc: checkpoint_key({"model": "m"}, corpus, [], tc)  # noqa: E731
    plain = TrainConfig(num_processes=2)
    assert key(replace(plain, accelerate_config="recipes/accelerate/ddp.yaml")) != key(plain)
    assert key(replace(plain, launcher="torchrun")) == key(plain)


def test_no_recipe_asks_accelerate_for_one_world():
    """Without a recipe accelerate would give a node with < 2 GPUs its one-process launcher (each node
    training alone, measured on loopback); --multi_gpu makes every process one world (gloo on CPU)."""
    cmd = node_command(TrainConfig(num_processes=2), Path("job"), {})
    assert "--multi_gpu" in cmd and "--config_file" not in cmd
    assert "--multi_gpu" not in node_command(TrainConfig(num_processes=1), Path("job"), {})
