"""One DED pipeline run per Hydra job.

    python run.py                                        # embedded CPU default (~6 min, 2 cores)
    python run.py debug=tiny                             # a minute or two
    python run.py -m diversity=levenshtein,random corpus.size=32,64   # an ablation; data generated once
    python run.py -m teacher=qwq,r1 corpus.size=400,800  # the paper's sweep, on GPUs
"""

import logging

import hydra
from omegaconf import DictConfig

from ded.config import register

register()


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg: DictConfig) -> float | None:
    from ded.pipeline import run  # heavy imports after Hydra has parsed the command line

    logging.getLogger("ded").setLevel(logging.INFO)
    metrics = run(cfg)
    k = cfg.eval.k
    return metrics.get(f"eval/heldout/trained/avg@{k}")  # the value a Hydra sweeper optimises


if __name__ == "__main__":
    main()
