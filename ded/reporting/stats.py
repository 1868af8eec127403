"""The statistics a suite reports: intervals valid for its replicate x question design, power from
each test's own distribution, exact bounds and exact rank tests, and Holm's correction.

A suite scores every arm on the same held-out questions in each of R replicates (each replicate a
fresh corpus and a freshly trained model: ``replicate=``). A score is then one cell of a crossed
design, y[r, q] = mu + a[r] + b[q] + e[r, q]: a replicate's model is shared by all its questions,
and a question recurs in every replicate, so the R x Q cells are not independent. ``crossed`` is
the primary estimate: the method-of-moments (two-way ANOVA) variance of the grand mean,
Var = (MS_rep + MS_question - MS_cell) / (R Q) (unbiased for any mix of the three components),
floored at MS_cell / (R Q), with Satterthwaite's degrees of freedom of the unfloored combination
(so the df does not jump when the floor applies); it generalises to new replicates and new
questions. tests/reporting/test_stats.py simulates suites with known components
and checks its coverage. ``replicate_t`` (a t interval over the R replicate means, R - 1 dof)
is the secondary estimate: valid for these questions only.
"""

from __future__ import annotations

import functools
import math
from dataclasses import asdict, dataclass, field

import numpy as np

ALPHA, POWER = 0.05, 0.80


@dataclass
class Estimate:
    """A mean with its standard error, degrees of freedom, 95% interval, two-sided p value (against
    0) and the smallest true difference its own test finds with 80% power at the 5% level."""

    mean: float
    se: float
    df: float
    ci95_low: float
    ci95_high: float
    p: float
    detectable: float
    method: str
    n_replicates: int = 0
    n_questions: int = 0
    components: dict = field(default_factory=dict)  # variance of one replicate, question, cell effect

    def as_dict(self) -> dict:
        return asdict(self)


def detectable(se: float, df: float, alpha: float = ALPHA, power: float = POWER) -> float:
    """The true difference a two-sided t test with this s.e. and df rejects with probability `power`
    (noncentral t, statsmodels' power solver; the normal rule 2.8 x s.e. is its df -> infinity limit).
    NaN where no such test exists (no s.e., no df) or the solver misses (below ~0.3 df)."""
    from statsmodels.stats.power import TTestPower

    if not (se > 0 and df > 0) or not math.isfinite(se):
        return math.nan
    n = min(df, 1e4) + 1  # statsmodels' one-sample form (df = nobs - 1); past 10^4 df the t is the normal to 1e-4
    # one-sided at alpha/2: the two-sided power adds the wrong-sign tail, which scipy's nct gives as NaN
    # at few df (the solver then stops off target); that tail is under 1e-6 of the power at 80%
    solver = TTestPower()
    d = solver.solve_power(nobs=n, alpha=alpha / 2, power=power, alternative="larger")
    on_target = abs(solver.power(d, n, alpha / 2, alternative="larger") - power) < 1e-4  # below ~0.3 df it can stop short silently
    return float(d * math.sqrt(n) * se) if on_target else math.nan


def _t_estimate(mean: float, se: float, df: float, method: str, **info) -> Estimate:
    from scipy import stats

    if not (se > 0):  # no variation at all: no t statement (see exact_bounds)
        return Estimate(mean, 0.0, df, math.nan, math.nan, math.nan, math.nan, method, **info)
    lo, hi = stats.t.interval(1 - ALPHA, df, loc=mean, scale=se)
    p = float(2 * stats.t.sf(abs(mean) / se, df))
    return Estimate(mean, se, df, float(lo), float(hi), p, detectable(se, df), method, **info)


def crossed(cells) -> Estimate:
    """The primary estimate of the mean of a complete replicate x question table (a 2-D array or a
    DataFrame, rows = replicates, columns = questions). Hand-written on purpose: statsmodels' anova_lm
    gives the same mean squares (the test checks) but no library combines them into the grand mean's
    crossed variance with Satterthwaite's df (MixedLM fits crossed effects without a small-sample df)."""
    y = np.asarray(cells, dtype=float)
    if y.ndim != 2 or np.isnan(y).any():
        raise ValueError(f"crossed() needs a complete 2-D replicate x question table, got shape {y.shape} "
                         f"with {int(np.isnan(y).sum()) if y.ndim == 2 else '?'} missing cells")  # fmt: skip
    r, q = y.shape
    mean = float(y.mean())
    if r < 2 or q < 2:
        raise ValueError(f"crossed() needs at least 2 replicates and 2 questions, got {r} x {q}")
    rep, que = y.mean(axis=1), y.mean(axis=0)
    ms = np.array([q * ((rep - mean) ** 2).sum() / (r - 1),  # replicates
                   r * ((que - mean) ** 2).sum() / (q - 1),  # questions
                   ((y - rep[:, None] - que[None, :] + mean) ** 2).sum() / ((r - 1) * (q - 1))])  # cells  # fmt: skip
    dfs = np.array([r - 1, q - 1, (r - 1) * (q - 1)], dtype=float)
    coef = np.array([1.0, 1.0, -1.0])
    v = max(float(coef @ ms), float(ms[2]))  # never below the cell term alone
    # Satterthwaite on the unfloored combination: its df stays small when the replicate mean square
    # (R - 1 df) carries the estimate, floored or not (a switch to the cell df would narrow the interval)
    denom = float((((coef * ms) ** 2) / dfs).sum())
    df = v * v / denom if denom > 0 else math.inf
    comps = {"replicate": max(0.0, float(ms[0] - ms[2]) / q), "question": max(0.0, float(ms[1] - ms[2]) / r), "cell": float(ms[2])}
    return _t_estimate(mean, math.sqrt(v / (r * q)), df, "crossed replicate x question", n_replicates=r, n_questions=q, components=comps)


def replicate_t(values) -> Estimate:
    """The secondary estimate: a t interval over per-replicate values (R - 1 dof)."""
    x = np.asarray(values, dtype=float)
    x = x[~np.isnan(x)]
    n = len(x)
    if n < 2:
        mean = float(x.mean()) if n else math.nan
        return Estimate(mean, math.nan, 0, math.nan, math.nan, math.nan, math.nan, "replicates", n_replicates=n)
    return _t_estimate(float(x.mean()), float(x.std(ddof=1) / math.sqrt(n)), n - 1, "replicates", n_replicates=n)


def exact_bounds(successes: int, trials: int, alpha: float = ALPHA) -> tuple[float, float]:
    """Clopper-Pearson (1 - alpha) interval of a proportion: what is known of an arm that solved
    nothing (or everything) instead of [0, 0]. Treats the samples as independent, so it is a lower
    bound on the uncertainty of a clustered design."""
    from statsmodels.stats.proportion import proportion_confint

    lo, hi = proportion_confint(successes, trials, alpha=alpha, method="beta")
    return float(lo), float(hi)


def holm(pvalues) -> list[float]:
    """Holm-adjusted p values (family-wise error at the stated level); NaN entries stay NaN."""
    from statsmodels.stats.multitest import multipletests

    p = np.asarray(pvalues, dtype=float)
    out = np.full(len(p), np.nan)
    ok = ~np.isnan(p)
    if ok.any():
        out[ok] = multipletests(p[ok], method="holm")[1]
    return out.tolist()


EXACT_UP_TO = 10  # n! orderings enumerated up to n = 10 (3,628,800: a teacher line-up of 10); beyond, a seeded Monte Carlo of 100,000


@functools.lru_cache(maxsize=2)
def _orderings(n: int) -> np.ndarray:
    """Every permutation of range(n), one per row (int8; n = 10: 36 MB), built by inserting k at each position."""
    perms = np.zeros((1, 0), dtype=np.int8)
    for k in range(n):
        perms = np.concatenate([np.insert(perms, pos, k, axis=1) for pos in range(k + 1)])
    return perms


def _exact_pairings_p(stat, rx: np.ndarray) -> float:
    """Two-sided p of `stat` over every ordering of rx, as scipy's permutation_test defines it (twice
    the smaller tail, at most 1), enumerated in numpy: scipy's own enumeration takes seconds per test
    at n = 10, this a fraction of one."""
    t = float(stat(rx))
    tol = 1e-12 * max(1.0, abs(t))  # ties in the null distribution count as extreme, as in scipy
    perms, ge, le = _orderings(len(rx)), 0, 0
    for i in range(0, len(perms), 400_000):  # in chunks: 400k orderings at a time
        s = stat(rx[perms[i : i + 400_000]])
        ge, le = ge + int((s >= t - tol).sum()), le + int((s <= t + tol).sum())
    return min(1.0, 2 * min(ge, le) / len(perms))


def spearman_exact(x, y, seed: int = 0) -> tuple[float, float]:
    """Spearman's rho and its two-sided permutation p value (scipy's: twice the smaller one-sided
    p, conservative under ties): exact (every ordering) up to EXACT_UP_TO points, else 100,000
    seeded random orderings. Pairs with a NaN are left out; NaN with fewer than 3 points left."""
    from scipy import stats

    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if len(x) != len(y):
        raise ValueError(f"spearman_exact: {len(x)} x values but {len(y)} y values")
    ok = ~(np.isnan(x) | np.isnan(y))
    x, y = x[ok], y[ok]
    if len(x) < 3:
        return math.nan, math.nan
    rx, ry = stats.rankdata(x), stats.rankdata(y)
    if np.ptp(rx) == 0 or np.ptp(ry) == 0:
        return math.nan, math.nan

    def stat(a, axis=-1):  # Spearman = Pearson on ranks (average ranks for ties), vectorised over permutations
        a = a - a.mean(axis=axis, keepdims=True)
        b = ry - ry.mean()
        return (a * b).sum(axis=axis) / np.sqrt((a * a).sum(axis=axis) * (b * b).sum())

    rho = float(stat(rx))
    if len(x) <= EXACT_UP_TO:
        return rho, _exact_pairings_p(stat, rx)
    res = stats.permutation_test((rx,), stat, permutation_type="pairings", vectorized=True, alternative="two-sided",
                                 n_resamples=100_000, rng=np.random.default_rng(seed))  # fmt: skip
    return rho, float(res.pvalue)


def spearman_bootstrap(groups: dict, n_boot: int = 2000, seed: int = 0) -> tuple[float, float]:
    """95% percentile interval of Spearman's rho between arm means, resampling each arm's
    replicates with replacement: how stable the ranking is under replicate noise (descriptive; the
    arms are held fixed, and with few replicates a percentile interval runs narrow). `groups`: arm -> (predictor values, target values), one pair per
    replicate (a predictor that is a property of the corpus differs between replicates too)."""
    from scipy import stats

    rng = np.random.default_rng(seed)
    arms = [(np.asarray(p, dtype=float), np.asarray(t, dtype=float)) for p, t in groups.values()]
    if len(arms) < 3 or any(len(p) == 0 for p, _ in arms):
        return math.nan, math.nan
    if all(len(p) == 1 for p, _ in arms):  # one replicate per arm: nothing to resample, no interval (not a zero-width one)
        return math.nan, math.nan
    rhos = []
    for _ in range(n_boot):
        px, ty = [], []
        for p, t in arms:
            idx = rng.integers(0, len(p), len(p))
            px.append(np.nanmean(p[idx]))
            ty.append(np.nanmean(t[idx]))
        r = stats.spearmanr(px, ty).statistic
        if not math.isnan(r):
            rhos.append(r)
    if len(rhos) < n_boot / 2:
        return math.nan, math.nan
    lo, hi = np.percentile(rhos, [2.5, 97.5])
    return float(lo), float(hi)
