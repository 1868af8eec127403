"""Stage 5, training: SFT of the student on the corpus with TRL (``train``); the checkpoint is
cached by student, corpus content and train config, so a rerun retrains nothing."""

from __future__ import annotations

from dataclasses import dataclass, replace

from ded.core.models import local_checkpoint
from ded.generation.identity import model_identity
from ded.reporting import plots
from ded.reporting.artifacts import record_checkpoint
from ded.stages import Run, prompt_prefix_for, stage
from ded.stages.curation import Corpus
from ded.training.sft import checkpoint_config, tracker_metrics, train


@dataclass
class Trained:
    path: str  # checkpoint directory (in the stage cache)
    key: str  # its cache key: names the trained model in evaluation's sample cache
    info: dict  # train_loss, steps, seconds, log_history (TRL's entries), batch_layout, cached


@stage("training")
def run(ctx: Run, corpus: Corpus) -> Trained:
    cfg = ctx.cfg
    student_path = local_checkpoint(cfg.student.path, ctx.cache_root, cfg.student.revision)

    def log_entry(step: int, logs: dict) -> None:  # each TRL log entry, as training makes it: history.jsonl and W&B (train/step)
        ctx.tracker.log(tracker_metrics(logs), step=step)

    student, prefix = model_identity(cfg.student), prompt_prefix_for(cfg.student)
    train_cfg = replace(cfg.train, seed=cfg.replicate_seed(cfg.train.seed, "train"))  # init, data order, dropout: drawn anew per replicate
    path, key, info = train(student_path, student, corpus.examples, prefix, train_cfg, ctx.stage_cache, on_log=log_entry)
    if info["cached"]:  # the checkpoint's recorded curves, so this run's record holds them too (train/cached says so)
        for entry in info["log_history"]:
            log_entry(entry["step"], entry)
    ctx.tracker.log({
        "train/cached": info["cached"],
        "train/seed": train_cfg.seed,  # the seed training ran with (train.seed itself in replicate 0)
        "train/train_loss": info["train_loss"],  # mean over training (TRL's name); train/loss is the per-step curve
        "train/steps": info["steps"],
        "train/seconds": info["seconds"],
        "train/loss_tokens_per_epoch": info.get("completion_tokens_per_epoch"),
        # mean trajectory length in the student's tokens (a teacher-choice predictor)
        "train/tokens_per_example": (info.get("completion_tokens_per_epoch") or 0) / max(1, len(corpus.examples)),
        "train/batch_layout": info.get("batch_layout"),
        # rank 0's peaks while it trained (recorded with the checkpoint: a cached one reports its training's)
        **{f"train/{k}": info[k] for k in ("peak_rss_gb", "peak_gpu_gb") if info.get(k) is not None},
    })  # fmt: skip
    ctx.tracker.plot("train/curves", plots.training_curves(info["log_history"]))
    trained = Trained(path, key, info)

    record_checkpoint(ctx, trained, corpus, checkpoint_config(train_cfg))  # <run>/checkpoint link + checkpoint.json + MODEL_CARD.md; W&B model artifact
    return trained
