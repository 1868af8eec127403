"""Stage 5, training: SFT of the student on the corpus with TRL (``train``); the checkpoint is
cached by student, corpus content and train config, so a rerun retrains nothing."""

from __future__ import annotations

from dataclasses import dataclass

from ded import plots
from ded.stages import Run, prompt_prefix_for, stage
from ded.stages.curation import Corpus


@dataclass
class Trained:
    path: str  # checkpoint directory (in the stage cache)
    key: str  # its cache key: names the trained model in evaluation's sample cache
    info: dict  # train_loss, steps, seconds, loss_curve, batch_layout, cached


@stage("training")
def run(ctx: Run, corpus: Corpus) -> Trained:
    from ded.generation.factory import model_identity
    from ded.models import local_checkpoint
    from ded.train import train

    cfg = ctx.cfg
    student_path = local_checkpoint(cfg.student.path, ctx.cache_root, cfg.student.revision)
    path, key, info = train(student_path, model_identity(cfg.student), corpus.examples, prompt_prefix_for(cfg.student), cfg.train, ctx.stage_cache)
    ctx.tracker.log({
        "train/cached": info["cached"],
        "train/loss": info["train_loss"],
        "train/steps": info["steps"],
        "train/seconds": info["seconds"],
        "train/loss_tokens_per_epoch": info.get("completion_tokens_per_epoch"),
        "train/batch_layout": info.get("batch_layout"),
    })  # fmt: skip
    for step, loss in info["loss_curve"]:
        ctx.tracker.log({"train/loss_curve": loss}, step=step)
    ctx.tracker.plot("train/loss", plots.loss_curve(info["loss_curve"]))
    return Trained(path, key, info)
