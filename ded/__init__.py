"""ded: a research harness for data-efficient reasoning distillation (arXiv 2508.09883)."""

__version__ = "0.1.0"
