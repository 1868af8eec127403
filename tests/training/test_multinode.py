"""Multi-node training: the launch command of each node comes from the SLURM allocation."""

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
