"""Questions: the unit every stage works on."""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass
class Question:
    id: str
    text: str  # exactly what the model is asked (the user turn)
    answer: str  # gold answer, a string math-verify can parse
    level: int = 0  # difficulty level where the source has one (0 = unknown)
    domain: str = "math"
    kind: str = "math"  # how answers are checked (ded.verify.check_answer): math | gsm8k | choice

    def to_dict(self) -> dict:
        return asdict(self)


def load_task(cfg) -> tuple[list[Question], list[Question]]:
    """(train pool, held-out eval split) for `cfg.corpus` (task name + its parameters)."""
    if cfg.corpus.task == "arithmetic":
        from ded.data import arithmetic

        return arithmetic.build(cfg.corpus.pool_size, cfg.eval.size, list(cfg.corpus.levels), cfg.corpus.seed)
    if cfg.corpus.task == "pool":
        from omegaconf import OmegaConf

        from ded.data.pools import load_pools

        specs = [OmegaConf.to_container(p, resolve=True) for p in cfg.corpus.pools]
        # One seeded mix of pool_size + eval.size questions: the last eval.size are held out, so the
        # held-out split never overlaps the train pool and growing the pool keeps its prefix stable.
        questions, _ = load_pools(specs, size=cfg.corpus.pool_size + cfg.eval.size, seed=cfg.corpus.seed)
        return questions[: cfg.corpus.pool_size], questions[cfg.corpus.pool_size :]
    raise ValueError(f"corpus.task: unknown task {cfg.corpus.task!r}; allowed: ['arithmetic', 'pool']")
