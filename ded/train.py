"""Plain SFT of the student on the selected corpus, with TRL's SFTTrainer.

The corpus is a prompt-completion conversational dataset: the prompt is exactly what the
student is asked at evaluation (its own system prompt and few-shot turns, then the question),
the completion is the teacher's trajectory. TRL renders both with the student's chat template
and, for prompt-completion data, puts loss on the completion tokens only
(``completion_only_loss``); ``tests/test_train.py`` checks that mask on a real batch.

The checkpoint is cached by a key over the student, the corpus content and the train config,
so a diversity or corpus change retrains and a rerun of the same config does not.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

from ded.cache import StageCache, short_hash

log = logging.getLogger(__name__)


def to_dataset_rows(corpus: list[dict], prefix: list[dict]) -> list[dict]:
    return [
        {
            "prompt": list(prefix) + [{"role": "user", "content": ex["question"]}],
            "completion": [{"role": "assistant", "content": ex["response"]}],
        }
        for ex in corpus
    ]


def build_sft_config(train_cfg, output_dir: str):
    """TRL's own SFTConfig from our train config, so TRL's argument checks run."""
    import torch
    from trl import SFTConfig

    return SFTConfig(
        output_dir=output_dir,
        num_train_epochs=float(train_cfg.epochs),
        learning_rate=train_cfg.learning_rate,
        lr_scheduler_type=train_cfg.lr_scheduler,
        warmup_steps=float(train_cfg.warmup_ratio),  # a float in [0, 1) is a ratio of total steps
        weight_decay=train_cfg.weight_decay,
        per_device_train_batch_size=train_cfg.batch_size,
        gradient_accumulation_steps=train_cfg.grad_accum,
        max_length=train_cfg.max_length,
        completion_only_loss=True,
        bf16=bool(train_cfg.bf16),
        use_cpu=not torch.cuda.is_available(),
        seed=train_cfg.seed,
        data_seed=train_cfg.seed,
        logging_steps=train_cfg.logging_steps,
        save_strategy="no",
        report_to="none",  # the pipeline logs the loss curve to its own tracker (same names)
        dataset_num_proc=None,
        disable_tqdm=False,
    )


def make_trainer(model, tokenizer, rows: list[dict], train_cfg, output_dir: str):
    from datasets import Dataset
    from trl import SFTTrainer

    return SFTTrainer(
        model=model,
        args=build_sft_config(train_cfg, output_dir),
        train_dataset=Dataset.from_list(rows),
        processing_class=tokenizer,
    )


def count_loss_tokens(dataset) -> int:
    """Tokens that carry loss in one epoch (labels != -100, or completion_mask where TRL uses it)."""
    if "labels" in dataset.column_names:
        return sum(sum(1 for t in row if t != -100) for row in dataset["labels"])
    return sum(sum(row) for row in dataset["completion_mask"])


def checkpoint_key(student_identity: dict, corpus: list[dict], prefix: list[dict], train_cfg) -> str:
    from omegaconf import OmegaConf

    tc = OmegaConf.to_container(train_cfg, resolve=True) if not isinstance(train_cfg, dict) else train_cfg
    tc = {k: v for k, v in tc.items() if k != "logging_steps"}  # does not change the weights
    return short_hash(student_identity, [(e["question"], e["response"]) for e in corpus], prefix, tc)


def train(student_path: str, student_identity: dict, corpus: list[dict], prefix: list[dict], train_cfg, cache: StageCache):
    """Return (checkpoint dir, key, info). A cached checkpoint returns at once with info['cached']=True."""
    key = checkpoint_key(student_identity, corpus, prefix, train_cfg)
    hit = cache.get("train", key)
    if hit is not None:
        log.info("train: cached checkpoint %s", hit)
        return str(hit), key, {"cached": True, **json.loads((hit / "train_info.json").read_text())}
    from transformers import AutoModelForCausalLM, AutoTokenizer

    with cache.build("train", key, {"student": student_identity, "examples": len(corpus)}) as tmp:
        if tmp is None:  # another job trained it while we waited for the lock
            hit = cache.get("train", key)
            return str(hit), key, {"cached": True, **json.loads((hit / "train_info.json").read_text())}
        tok = AutoTokenizer.from_pretrained(student_path)
        if tok.pad_token is None:
            tok.pad_token = tok.eos_token
        model = AutoModelForCausalLM.from_pretrained(student_path)
        trainer = make_trainer(model, tok, to_dataset_rows(corpus, prefix), train_cfg, str(Path(tmp) / "trainer"))
        t0 = time.perf_counter()
        result = trainer.train()
        seconds = time.perf_counter() - t0
        trainer.save_model(str(tmp))
        tok.save_pretrained(str(tmp))
        losses = [(h["step"], h["loss"]) for h in trainer.state.log_history if "loss" in h]
        n_tokens = count_loss_tokens(trainer.train_dataset)
        info = {
            "seconds": seconds,
            "train_loss": result.training_loss,
            "steps": trainer.state.global_step,
            "loss_curve": losses,
            "completion_tokens_per_epoch": n_tokens,
        }
        (Path(tmp) / "train_info.json").write_text(json.dumps(info))
        import shutil

        shutil.rmtree(Path(tmp) / "trainer", ignore_errors=True)
    return str(cache.get("train", key)), key, {"cached": False, **info}
