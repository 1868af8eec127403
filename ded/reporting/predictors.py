"""Teacher-choice predictors validated across student architectures (DED's open questions 1 and 2):
a rule fitted on one student ranks the teachers for another, against a rule that knows only the
teacher's accuracy.

    from ded.reporting.predictors import transfer
    rows, ranks = transfer(runs, by="choice.teacher", student="choice.student", target="eval/heldout/trained/avg@k",
                           predictors=[...], baseline="filter/teacher/kept_share")

The input is the suite's runs table: one row per (teacher, student, replicate) with the predictors
(known before training: teacher accuracy, corpus entropy under the student, PCA shift, length,
representation similarity) and the trained score. Per-student rank correlations of each predictor
with the score are ``ded.reporting.comparisons.predict(..., within=<student column>)``; this module
asks the harder question: does what predicts the score for student A predict it for student B?

**The rule.** Ridge regression of the score on the predictors, fitted on student A's teachers only,
one point per teacher (its mean over replicates). Predictors and score are z-scored within the
student (mean 0, population sd 1 over its teachers) first, because the raw scales differ between
architectures (entropy in nats under another tokenizer, hidden states of another width) while the
question is about rankings; a predictor constant over a student's teachers contributes 0. Ridge,
not least squares: with ~10 teachers and 4-5 predictors that move together (longer corpora have
lower entropy and larger shifts), least squares would split weight arbitrarily between near-copies;
``alpha`` (default 1.0, on standardized predictors whose cross-product has diagonal n) adds one
pseudo-observation's worth of shrinkage towards 0 per coefficient: small next to n = 10 teachers
for a predictor that stands alone, decisive only along near-singular directions. No intercept is
needed (everything is centred) and none matters (a ranking ignores shifts).

**Transfer.** The rule's weights are applied to student B's predictors, z-scored with B's own
teacher means (predictors only: nothing of B's scores enters the prediction). Reported: Spearman's
rho between the predicted and the measured ranking of B's teachers; its p value from
``stats.spearman_exact`` (every ordering up to 10 teachers, else 100,000 seeded random orderings);
a 95% percentile interval over 2,000 resamples of B's replicates (each teacher's replicates drawn
with replacement, as ``stats.spearman_bootstrap`` does; A's fit and B's standardization held
fixed, so the interval is about B's replicate noise, not about A's; with one replicate per teacher
there is nothing to resample and the interval is left empty); both directions.

**Baseline.** The same procedure with teacher accuracy alone (``baseline``, e.g.
``filter/teacher/kept_share``, the share of the teacher's samples that were correct). With one
predictor a ridge fit only sets the sign, so this is "rank by accuracy, in the direction student A
showed". Each rule row also carries rho(rule) - rho(baseline) with its interval on the same
resamples (paired).
"""

from __future__ import annotations

import logging
import math
import warnings
from pathlib import Path

import numpy as np

from ded.reporting.comparisons import replicate_key, replicates_per_arm
from ded.reporting.stats import spearman_exact

log = logging.getLogger(__name__)

N_BOOT = 2000


def _numeric(df, cols):
    import pandas as pd

    return df.assign(**{c: pd.to_numeric(df[c], errors="coerce") for c in cols})


def zscore(values: np.ndarray, center: np.ndarray | None = None, scale: np.ndarray | None = None):
    """(z, center, scale) per column; a column with no spread gets scale 1 (so z = 0 throughout)."""
    values = np.asarray(values, dtype=float)
    center = values.mean(axis=0) if center is None else center
    scale = values.std(axis=0) if scale is None else scale
    scale = np.where(scale > 0, scale, 1.0)
    return (values - center) / scale, center, scale


def fit_rule(x: np.ndarray, y: np.ndarray, alpha: float = 1.0) -> np.ndarray:
    """Ridge weights of z-scored `y` on z-scored `x` ([teachers, predictors]): (Z'Z + alpha I)^-1 Z'y."""
    z, _, _ = zscore(x)
    yz, _, _ = zscore(np.asarray(y, dtype=float)[:, None])
    return np.linalg.solve(z.T @ z + alpha * np.eye(z.shape[1]), z.T @ yz[:, 0])


def _rho_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Spearman's rho of each row of `a` with the same row of `b` ([resamples, teachers]; ties get
    average ranks); NaN for a row holding a NaN or without spread."""
    from scipy import stats

    bad = np.isnan(a).any(axis=1) | np.isnan(b).any(axis=1)
    ra, rb = stats.rankdata(np.nan_to_num(a), axis=1), stats.rankdata(np.nan_to_num(b), axis=1)
    ra, rb = ra - ra.mean(axis=1, keepdims=True), rb - rb.mean(axis=1, keepdims=True)
    den = np.sqrt((ra * ra).sum(axis=1) * (rb * rb).sum(axis=1))
    with np.errstate(invalid="ignore", divide="ignore"):
        out = (ra * rb).sum(axis=1) / den
    out[bad | (den == 0)] = np.nan
    return out


def _groups(d, by: str, cols: list[str], target: str, rep: str | None) -> dict:
    """teacher -> ([replicates, predictors] values, [replicates] targets), replicates in a fixed order."""
    out = {}
    for arm, g in d.groupby(by, sort=True):
        g = g.sort_values(rep) if rep else g
        out[str(arm)] = (g[cols].to_numpy(dtype=float), g[target].to_numpy(dtype=float))
    return out


def _means(groups: dict) -> tuple[list[str], np.ndarray, np.ndarray]:
    arms = list(groups)
    return arms, np.array([np.nanmean(groups[a][0], axis=0) for a in arms]), np.array([np.nanmean(groups[a][1]) for a in arms])


def _complete(d, by: str, cols: list[str], target: str):
    """Rows with the target, and the teachers with every predictor on some replicate; the left-out teachers."""
    d = d.dropna(subset=[target])
    known = d.groupby(by)[cols].apply(lambda g: g.notna().any().all())
    gone = sorted(str(a) for a, ok in known.items() if not ok)
    return d[d[by].isin([a for a, ok in known.items() if ok])], gone


def transfer(df, by: str, student: str, target: str, predictors, baseline: str | None = None, alpha: float = 1.0,
             n_boot: int = N_BOOT, seed: int = 0) -> tuple[list[dict], list[dict]]:  # fmt: skip
    """(rows, ranks): for every ordered pair of students (A, B), the predictors' rule and the baseline
    rule fitted on A and scored on B (module docstring); `ranks` holds each teacher's predicted and
    measured rank per row (1 = best). Holm over the rows' p values is added by the caller
    (``holm_family``)."""
    if student not in df:
        raise KeyError(f"transfer.student: no column {student!r} in the runs table")
    if by not in df or target not in df:
        log.warning("transfer: the runs table lacks %s: no transfer rows", [c for c in (by, target) if c not in df])
        return [], []
    present = [p for p in predictors if p in df]
    if missing := [p for p in predictors if p not in df]:
        log.warning("transfer: predictors %s are in no run record: the rule uses %s", missing, present)
    rules = {"predictors": present}
    if baseline:
        if baseline in df:
            rules[f"baseline: {baseline}"] = [baseline]
        else:
            log.warning("transfer: no column %r for the baseline rule", baseline)
    rep = replicate_key(df)
    d = _numeric(df[df[by].notna() & df[student].notna()], [*{*present, *([baseline] if baseline in df else [])}, target])
    students = sorted(d[student].astype(str).unique())
    rows, ranks = [], []
    for a in students:
        for b in students:
            if a == b:
                continue
            done = {}  # rule -> (row, rhos on the resamples, teachers ranked)
            for rule, cols in rules.items():
                if not cols:
                    continue
                row, rank, rhos = _one_direction(d, by, student, target, cols, a, b, rep, alpha, n_boot, seed)
                done[rule] = ({"fitted on": a, "ranked for": b, "rule": rule} | row, rhos, [r["teacher"] for r in rank])
                ranks += [{"fitted on": a, "ranked for": b, "rule": rule} | r for r in rank]
            base = next((r for r in done if r.startswith("baseline")), None)
            # paired only when both rules rank the same teachers: then the same seed draws the same resamples
            if base and "predictors" in done and len(done["predictors"][1]) and done["predictors"][2] == done[base][2]:
                (row, rhos, _), (base_row, base_rhos, _) = done["predictors"], done[base]
                diff = (rhos - base_rhos)[~np.isnan(rhos - base_rhos)]
                lo, hi = np.percentile(diff, [2.5, 97.5]) if len(diff) >= n_boot / 2 else (math.nan, math.nan)
                row |= {"rho minus baseline": row["spearman rho"] - base_row["spearman rho"],
                        "minus baseline ci95_low": float(lo), "minus baseline ci95_high": float(hi)}  # fmt: skip
            rows += [row for row, _, _ in done.values()]
    for r in rows:
        r["replicate key"] = rep
    return rows, ranks


def _one_direction(d, by, student, target, cols, a, b, rep, alpha, n_boot, seed):
    """One rule fitted on student `a` and scored on student `b`: (row, per-teacher ranks, bootstrap rhos)."""
    from scipy import stats

    da, gone_a = _complete(d[d[student].astype(str) == a], by, cols, target)
    db, gone_b = _complete(d[d[student].astype(str) == b], by, cols, target)
    ga, gb = _groups(da, by, cols, target, rep), _groups(db, by, cols, target, rep)
    note = "; ".join(f"left out of {s} (a predictor never measured): {', '.join(g)}" for s, g in [(a, gone_a), (b, gone_b)] if g)
    info = {"predictors": ", ".join(cols), "teachers fitted": len(ga), "teachers ranked": len(gb),
            "replicates per teacher": replicates_per_arm([len(v[1]) for v in gb.values()]), "note": note}  # fmt: skip
    if len(ga) < 3 or len(gb) < 3:
        return info | {"spearman rho": math.nan, "note": (note + "; " if note else "") + "needs 3 teachers on each student"}, [], np.array([])
    arms_a, xa, ya = _means(ga)
    w = fit_rule(xa, ya, alpha)
    fit_rho = float(stats.spearmanr(zscore(xa)[0] @ w, ya).statistic)
    arms_b, xb, yb = _means(gb)
    zb, center, scale = zscore(xb)
    pred = zb @ w
    rho, p = spearman_exact(pred, yb)
    rng = np.random.default_rng(seed)  # the same seed for every rule: the resamples are shared (paired difference)
    rhos = np.full(n_boot, math.nan)  # one replicate per teacher: every resample is the data, so no interval
    if any(len(gb[arm][1]) > 1 for arm in arms_b):
        px, ty = [], []  # per teacher: [n_boot, predictors] and [n_boot] means of its resampled replicates
        for arm in arms_b:
            x, t = gb[arm]
            idx = rng.integers(0, len(t), (n_boot, len(t)))
            with warnings.catch_warnings():  # a resample of only missing values: NaN, dropped below
                warnings.simplefilter("ignore", RuntimeWarning)
                px.append(np.nanmean(x[idx], axis=1))
                ty.append(np.nanmean(t[idx], axis=1))
        rhos = _rho_rows(zscore(np.stack(px, axis=1), center, scale)[0] @ w, np.stack(ty, axis=1))
    ok = rhos[~np.isnan(rhos)]
    lo, hi = np.percentile(ok, [2.5, 97.5]) if len(ok) >= n_boot / 2 else (math.nan, math.nan)
    pr, mr = stats.rankdata(-pred, method="average"), stats.rankdata(-yb, method="average")
    ranks = [{"teacher": arm, "predicted": float(pv), "predicted rank": float(r1), "measured": float(m), "measured rank": float(r2)}
             for arm, pv, r1, m, r2 in zip(arms_b, pred, pr, yb, mr)]  # fmt: skip
    weights = ", ".join(f"{c} {v:+.2f}" for c, v in zip(cols, w))
    row = info | {"spearman rho": rho, "ci95_low": float(lo), "ci95_high": float(hi), "p": p, "family": "primary",
                  "weights (z units)": weights, "fit rho on A": fit_rho}  # fmt: skip
    return row, ranks, rhos


def _label_points(ax, points: list[tuple[float, float, str]], color: str = "0.1") -> None:
    """Name each point without labels overlapping: points at (nearly) the same spot (tied ranks, equal
    scores) share one stacked label, and adjustText moves the labels off each other and the markers."""
    from adjustText import adjust_text

    if not points:
        return
    xs, ys = np.array([p[0] for p in points], float), np.array([p[1] for p in points], float)
    tol_x, tol_y = 0.02 * (np.ptp(xs) or 1.0), 0.03 * (np.ptp(ys) or 1.0)  # closer than this reads as one spot
    groups: list[list[int]] = []
    for i in range(len(points)):
        near = [g for g in groups if abs(xs[g[0]] - xs[i]) <= tol_x and abs(ys[g[0]] - ys[i]) <= tol_y]
        if near:
            near[0].append(i)
        else:
            groups.append([i])
    ax.margins(x=0.12, y=0.18)  # room inside the axes for labels pushed off the edge points
    texts = [ax.text(xs[g].mean(), ys[g].mean(), "\n".join(sorted(points[i][2] for i in g)), fontsize=6.5, color=color, linespacing=0.95)
             for g in groups]  # fmt: skip
    # iter_lim: a fixed count, not adjustText's default 1 s of work, so a figure rebuilds byte-identically on any machine
    adjust_text(texts, x=list(xs), y=list(ys), ax=ax, arrowprops=dict(arrowstyle="-", color="0.6", lw=0.5),
                min_arrow_len=3, expand=(1.15, 1.5), force_text=(0.3, 0.6), iter_lim=400)  # fmt: skip


def scatter_plot(df, by: str, within: str, target: str, predictors, path: Path, rows: list[dict] | None = None) -> None:
    """Each predictor (rows of panels) against the target, one panel per student (columns): one point
    per teacher at its replicate means, bars spanning its replicates' range, labelled; rho and p from `rows`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    present = [p for p in predictors if p in df]
    if by not in df or within not in df or target not in df or not present:
        return
    d = _numeric(df[df[by].notna() & df[within].notna()], [*present, target])
    students = sorted(d[within].astype(str).unique())
    stat = {(str(r.get("within")), r["predictor"]): r for r in rows or []}
    fig, axes = plt.subplots(len(present), len(students), figsize=(4.6 * len(students), 3.3 * len(present)), squeeze=False)
    for i, p in enumerate(present):
        for j, s in enumerate(students):
            ax, g = axes[i][j], d[d[within].astype(str) == s]
            agg = g.groupby(by)[[p, target]].agg(["mean", "min", "max"])
            labels = []
            for arm, r in agg.iterrows():
                x, y = r[(p, "mean")], r[(target, "mean")]
                if x != x or y != y:
                    continue
                ax.errorbar(x, y, xerr=[[x - r[(p, "min")]], [r[(p, "max")] - x]], yerr=[[y - r[(target, "min")]], [r[(target, "max")] - y]],
                            fmt="o", color="tab:blue", ecolor="0.75", ms=5, lw=1)  # fmt: skip
                labels.append((x, y, str(arm)))
            _label_points(ax, labels, color="0.3")
            r = stat.get((s, p))
            if r:
                ax.set_title(f"{s}: rho {r['spearman rho']:+.2f}, p {r.get('p', math.nan):.2g}", fontsize=9)
            else:
                ax.set_title(s, fontsize=9)
            ax.set_xlabel(p.split("/", 1)[-1], fontsize=8)
            ax.set_ylabel(target.split("/")[-1] if j == 0 else "", fontsize=8)
            ax.grid(alpha=0.3)
    fig.suptitle(f"Predictors known before training vs the trained student's {target}\n"
                 "one point per teacher (replicate mean; bars: the replicates' range)", fontsize=10)  # fmt: skip
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def transfer_plot(rows: list[dict], ranks: list[dict], path: Path) -> None:
    """Predicted vs measured rank of the teachers on the student the rule was not fitted on: one panel
    per (direction, rule); the diagonal is a perfect transfer."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [r for r in rows if not math.isnan(r.get("spearman rho", math.nan))]
    if not panels:
        return
    directions = list(dict.fromkeys((r["fitted on"], r["ranked for"]) for r in panels))
    rules = list(dict.fromkeys(r["rule"] for r in panels))
    fig, axes = plt.subplots(len(rules), len(directions), figsize=(5.4 * len(directions), 5.0 * len(rules)), squeeze=False)
    for i, rule in enumerate(rules):
        for j, (a, b) in enumerate(directions):
            ax = axes[i][j]
            row = next((r for r in panels if r["rule"] == rule and (r["fitted on"], r["ranked for"]) == (a, b)), None)
            pts = [r for r in ranks if r["rule"] == rule and (r["fitted on"], r["ranked for"]) == (a, b)]
            if not row or not pts:
                ax.axis("off")
                continue
            n = len(pts)
            ax.plot([1, n], [1, n], color="0.6", lw=0.8, ls="--")
            ax.scatter([r["predicted rank"] for r in pts], [r["measured rank"] for r in pts], color="tab:green" if rule == "predictors" else "tab:gray")
            _label_points(ax, [(r["predicted rank"], r["measured rank"], r["teacher"]) for r in pts])
            lo, hi = row.get("ci95_low", math.nan), row.get("ci95_high", math.nan)
            one = row.get("replicates per teacher") == "1"
            ci = f"[{lo:+.2f}, {hi:+.2f}]" if not math.isnan(lo) else "(no interval: one replicate)" if one else "(no interval)"
            ax.set_title(f"{rule}\nfit on {a}, ranked for {b}\nrho {row['spearman rho']:+.2f} {ci}, p {row.get('p', math.nan):.2g}", fontsize=8.5)
            ax.set_xticks(range(1, n + 1))  # ranks only: the margins left room for labels, not for rank 0
            ax.set_yticks(range(1, n + 1))
            ax.set_xlabel("predicted rank (1 = best)", fontsize=8)
            ax.set_ylabel("measured rank", fontsize=8)
            ax.invert_xaxis()
            ax.invert_yaxis()
            ax.grid(alpha=0.3)
    fig.suptitle("Cross-architecture validation: a rule fitted on one student ranks the teachers for the other", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
