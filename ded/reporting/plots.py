"""The run's figures (matplotlib, headless)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def pass_rate_histogram(rates: list[float], k: int, min_rate: float, max_rate: float):
    fig, ax = plt.subplots(figsize=(5, 3.2))
    bins = [(i - 0.5) / k for i in range(k + 2)]
    ax.hist(rates, bins=bins, color="#4c72b0", edgecolor="white")
    ax.axvline(max_rate, color="#c44e52", ls="--", label=f"drop at >= {max_rate:g}")
    if min_rate > 0:
        ax.axvline(min_rate, color="#dd8452", ls="--", label=f"drop below {min_rate:g}")
    ax.set(xlabel=f"student pass rate (k={k})", ylabel="questions", title="Pass-rate compression")
    ax.legend(fontsize=8)
    return fig


def accuracy_by_level(base: dict, trained: dict, k: int):
    levels = sorted(set(base["by_level"]) | set(trained["by_level"]))
    fig, ax = plt.subplots(figsize=(5.5, 3.2))
    w = 0.38
    xs = range(len(levels))
    ax.bar([x - w / 2 for x in xs], [base["by_level"].get(lv, 0) for lv in levels], w, label="base student")
    ax.bar([x + w / 2 for x in xs], [trained["by_level"].get(lv, 0) for lv in levels], w, label="trained student")
    ax.set_xticks(list(xs), [f"level {lv}" for lv in levels])
    ax.set(ylabel=f"avg@{k}", ylim=(0, 1), title="Held-out accuracy by difficulty")
    ax.legend(fontsize=8)
    return fig


def pca_scatter(ref_xy, other_xy, ref_label: str, other_label: str, shift: float):
    fig, ax = plt.subplots(figsize=(4.8, 4))
    ax.scatter(ref_xy[:, 0], ref_xy[:, 1] if ref_xy.shape[1] > 1 else 0 * ref_xy[:, 0], s=12, alpha=0.6, label=ref_label)
    ax.scatter(other_xy[:, 0], other_xy[:, 1] if other_xy.shape[1] > 1 else 0 * other_xy[:, 0], s=12, alpha=0.6, label=other_label)
    ax.set(xlabel="PC1 (fit on the first cloud)", ylabel="PC2", title=f"PCA shift {shift:.2f} (reference std units)")
    ax.legend(fontsize=8)
    return fig


# (log key, panel title, y label): TRL's per-step log entries, one panel each
TRAINING_PANELS = (
    ("loss", "Training loss", "cross-entropy (nats/token)"),
    ("learning_rate", "Learning rate", "learning rate"),
    ("grad_norm", "Gradient norm", "L2 norm (before clipping)"),
    ("mean_token_accuracy", "Token accuracy", "share of response tokens"),
)


# GRPO's entries (TRL's names): what RL is doing to the reward, the groups, the answers and the policy
RL_PANELS = (
    ("reward", "Reward (mean over completions)", "reward"),
    ("frac_reward_zero_std", "Groups with one reward for all", "share of groups (no signal)"),
    ("completions/mean_length", "Completion length", "tokens"),
    ("kl", "KL to the starting model", "KL (nats/token)"),
)


def training_curves(history: list[dict], panels=TRAINING_PANELS):
    """TRL's log history (entries with "step") as small panels sharing the optimizer-step axis."""
    from matplotlib.ticker import MaxNLocator

    fig, axes = plt.subplots(2, 2, figsize=(8, 5.2), sharex=True)
    for ax, (key, title, ylabel) in zip(axes.flat, panels):
        points = [(h["step"], h[key]) for h in history if h.get(key) is not None]
        if points:
            ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", ms=3)
        else:
            ax.text(0.5, 0.5, "not logged", ha="center", va="center", transform=ax.transAxes, color="grey")
        ax.set(title=title, ylabel=ylabel)
        if key == "learning_rate":
            ax.ticklabel_format(axis="y", style="sci", scilimits=(-2, 3))
    for ax in axes[-1]:
        ax.set_xlabel("optimizer step")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # steps are whole numbers
    fig.tight_layout()
    return fig
