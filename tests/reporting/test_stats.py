"""ded/reporting/stats.py: the primary interval covers the truth at its stated rate on suites
simulated with known replicate, question and sample variance; power, exact bounds, exact rank
tests and Holm agree with their definitions and with statsmodels/scipy."""

import itertools
import math

import numpy as np
import pytest

from ded.reporting.stats import crossed, detectable, exact_bounds, holm, replicate_t, spearman_bootstrap, spearman_exact

R, Q, K = 5, 60, 2  # the suites' design: 5 replicates x 60 held-out questions x avg@2


def simulated_difference(rng, delta, sd_rep=0.04, sd_q=0.10, sd_cell=0.05, R=R):
    """One suite's replicate x question table of (arm b - arm a) accuracies. Each arm's success
    probability is a shared question difficulty plus arm-specific effects (uniform, mean 0, so
    nothing is clipped and the true difference is exactly `delta`): a replicate effect of sd
    `sd_rep` per arm, question and cell effects whose difference has sd `sd_q` and `sd_cell`;
    each cell is the mean of K Bernoulli samples, as avg@k is."""
    def u(sd, shape):  # uniform with this standard deviation
        return rng.uniform(-1, 1, shape) * sd * math.sqrt(3)

    base = rng.uniform(0.35, 0.6, Q)
    arm = [base + u(sd_rep, (R, 1)) + u(sd_q / math.sqrt(2), Q) + u(sd_cell / math.sqrt(2), (R, Q)) for _ in range(2)]
    arm[1] = arm[1] + delta
    a, b = (rng.binomial(K, p) / K for p in arm)
    return b - a


def coverage(interval, n_suites=400, seed=0, delta=0.05, **sd):
    rng = np.random.default_rng(seed)
    hits = 0
    for _ in range(n_suites):
        lo, hi = interval(simulated_difference(rng, delta, **sd))
        hits += lo <= delta <= hi
    return hits / n_suites


def test_primary_interval_covers_the_true_difference_at_95_percent():
    """400 simulated suites (seeded): the crossed interval covers the known difference in 93-97%
    of them, where the naive interval (every replicate x question cell independent) covers far less."""

    def primary(d):
        e = crossed(d)
        return e.ci95_low, e.ci95_high

    def naive(d):  # what the earlier comparisons.md did at the seed x question level
        x = d.ravel()
        half = 1.96 * x.std(ddof=1) / math.sqrt(x.size)
        return x.mean() - half, x.mean() + half

    cov, cov_naive = coverage(primary), coverage(naive)
    print(f"\nsimulated coverage of the 95% interval over 400 suites ({R} replicates x {Q} questions x k={K}): "
          f"crossed {cov:.3f}, naive {cov_naive:.3f}")  # fmt: skip
    assert 0.93 <= cov <= 0.97
    assert cov_naive < 0.90  # replicate variance shared by 60 cells: the naive interval is too narrow


@pytest.mark.parametrize("sd", [dict(sd_rep=0.0), dict(sd_rep=0.08), dict(sd_q=0.0, sd_rep=0.06), dict(sd_rep=0.02, sd_q=0.2), dict(R=3)],
                         ids=["no replicate variance", "large replicate variance", "no question variance", "question variance dominates",
                              "3 replicates (the paper blocks)"])  # fmt: skip
def test_coverage_holds_whichever_component_dominates(sd):
    """Never below 93% when one component is absent or dominant (Satterthwaite's df adapts); with no
    replicate variance at all it is conservative (~98%: the replicate mean square, 4 df, still
    weighs in the df)."""

    def primary(d):
        e = crossed(d)
        return e.ci95_low, e.ci95_high

    cov = coverage(primary, seed=1, **sd)
    print(f"\ncoverage with {sd}: {cov:.3f}")
    assert 0.93 <= cov <= (0.985 if sd.get("sd_rep") == 0.0 else 0.97)


def test_mean_squares_match_statsmodels_two_way_anova():
    """The variance components come from the same mean squares statsmodels' anova_lm computes."""
    import pandas as pd
    import statsmodels.formula.api as smf
    from statsmodels.stats.anova import anova_lm

    rng = np.random.default_rng(3)
    d = simulated_difference(rng, 0.05, sd_rep=0.06)
    long = pd.DataFrame([(r, q, d[r, q]) for r in range(R) for q in range(Q)], columns=["rep", "q", "y"])
    table = anova_lm(smf.ols("y ~ C(rep) + C(q)", long).fit())
    ms_rep, ms_q, ms_cell = table["mean_sq"]
    e = crossed(d)
    assert e.components["cell"] == pytest.approx(ms_cell)
    assert e.components["replicate"] == pytest.approx(max(0.0, (ms_rep - ms_cell) / Q))
    assert e.components["question"] == pytest.approx(max(0.0, (ms_q - ms_cell) / R))
    assert e.se == pytest.approx(math.sqrt(max(ms_rep + ms_q - ms_cell, ms_cell) / (R * Q)))


def test_crossed_names_an_incomplete_table():
    d = np.ones((3, 4))
    d[1, 2] = np.nan
    with pytest.raises(ValueError, match="1 missing cells"):
        crossed(d)


def test_detectable_difference_is_the_noncentral_t_power_point():
    """df -> infinity gives the normal rule 2.80 x s.e.; 3 paired replicates (2 df) give 5.65 x s.e.,
    and at that difference a simulated 3-replicate paired t test rejects 80% of the time."""
    from scipy import stats

    assert detectable(1.0, 1e9) == pytest.approx(2.8016, abs=1e-3)
    mde = detectable(1.0, 2)
    assert mde == pytest.approx(5.65, abs=0.02)
    rng = np.random.default_rng(0)
    sd = math.sqrt(3)  # per-pair sd whose 3-pair mean has s.e. 1
    x = rng.normal(mde, sd, (20000, 3))
    t = x.mean(1) / (x.std(1, ddof=1) / math.sqrt(3))
    # the power at the *true* s.e. (the noncentral t): simulated rejections at 0.80 +- 0.01
    assert np.mean(np.abs(t) > stats.t.ppf(0.975, 2)) == pytest.approx(0.80, abs=0.01)


@pytest.mark.parametrize("df", [0.5, 1.3, 2, 4.4, 30, 236, 5000])
def test_detectable_from_statsmodels_is_the_two_sided_noncentral_t_80_percent_point(df):
    """statsmodels' solver (one-sided at alpha/2) gives the difference at which scipy's exact two-sided
    noncentral-t power (both rejection tails) is 0.80, and the value the earlier hand-written brentq
    on that power found (to 1e-4); fractional df as Satterthwaite's, down to one replicate pair's 0.5."""
    from scipy import optimize, stats

    se = 0.03
    crit = stats.t.ppf(0.975, df)

    def two_sided(delta):  # the wrong-sign tail is NaN in scipy's far tail: it is 0 there
        wrong = stats.nct.cdf(-crit, df, delta / se)
        return stats.nct.sf(crit, df, delta / se) + (0.0 if math.isnan(wrong) else wrong)

    mde = detectable(se, df)
    assert two_sided(mde) == pytest.approx(0.80, abs=1e-4)
    previous = optimize.brentq(lambda d: two_sided(d) - 0.80, 0.0, 1e4 * se)
    assert mde == pytest.approx(previous, rel=1e-4)


def test_detectable_is_nan_without_a_test():
    """No s.e., no df, or under ~0.3 df (where the solver cannot reach 80%): NaN, not a wrong number."""
    assert all(math.isnan(detectable(se, df)) for se, df in [(0.0, 4), (1.0, 0), (math.nan, 4), (1.0, 0.1)])


def test_replicate_t_is_the_paired_t_interval():
    from scipy import stats

    e = replicate_t([0.1, 0.15, 0.05])
    assert e.mean == pytest.approx(0.1) and e.se == pytest.approx(0.028868, abs=1e-6) and e.df == 2
    ref = stats.ttest_1samp([0.1, 0.15, 0.05], 0.0)
    assert e.p == pytest.approx(ref.pvalue)
    assert (e.ci95_low, e.ci95_high) == pytest.approx(tuple(ref.confidence_interval()))


def test_an_arm_that_solved_nothing_gets_an_exact_upper_bound_not_zero_width():
    lo, hi = exact_bounds(0, 600)
    assert lo == 0.0 and hi == pytest.approx(1 - 0.025 ** (1 / 600))
    assert exact_bounds(600, 600)[0] == pytest.approx(0.025 ** (1 / 600))
    e = crossed(np.zeros((5, 60)))
    assert e.se == 0 and math.isnan(e.ci95_low)  # no t statement without variation


def _enumerated_p(x, y):
    from scipy import stats

    rho = stats.spearmanr(x, y).statistic
    perms = [stats.spearmanr(x, p).statistic for p in itertools.permutations(y)]
    return rho, np.mean([abs(r) >= abs(rho) - 1e-12 for r in perms])


@pytest.mark.parametrize("y", [[5, 4, 3, 2, 1], [2, 1, 5, 4, 3], [0.3, 0.1, 0.2, 0.5, 0.4], [1, 3, 2, 5, 4, 6]])
def test_spearman_p_is_exact_at_small_n(y):
    """At n <= 8 the permutation p value is the share of all n! orderings at least as extreme;
    rho = -1 at n = 5 has p = 2/120, not the asymptotic 0."""
    x = list(range(len(y)))
    rho, p = spearman_exact(x, y)
    ref_rho, ref_p = _enumerated_p(x, y)
    assert rho == pytest.approx(ref_rho) and p == pytest.approx(ref_p)
    if y == [5, 4, 3, 2, 1]:
        assert p == pytest.approx(2 / 120)


def test_spearman_p_is_exact_up_to_ten_points_with_ties():
    """Ten teachers (the predictor study's line-up) get every one of the 10! orderings, not a Monte
    Carlo: a perfect ranking has p = 2/10!; with ties the enumeration matches scipy's own exact one."""
    from scipy import stats

    from ded.reporting.stats import _orderings

    assert len({tuple(r) for r in _orderings(5)}) == 120
    rho, p = spearman_exact(range(10), range(10))
    assert rho == pytest.approx(1.0) and p == pytest.approx(2 / math.factorial(10))
    x, y = [3, 1, 4, 1, 5, 9, 2, 6, 5], [2.7, 1.8, 2.8, 1.8, 4.5, 9.0, 0.4, 5.2, 3.5]  # ties in both
    rx, ry = stats.rankdata(x), stats.rankdata(y)

    def pearson(a, axis=-1):  # on ranks, vectorised (scipy's spearmanr per ordering takes a minute)
        a, b = a - a.mean(axis=axis, keepdims=True), ry - ry.mean()
        return (a * b).sum(axis=axis) / np.sqrt((a * a).sum(axis=axis) * (b * b).sum())

    ref = stats.permutation_test((rx,), pearson, permutation_type="pairings", vectorized=True, n_resamples=np.inf)
    assert spearman_exact(x, y)[1] == pytest.approx(ref.pvalue)


def test_spearman_bootstrap_interval_reflects_replicate_noise():
    """Well-separated arms: the interval sits near +1; arms whose replicates overlap: it spans 0."""
    rng = np.random.default_rng(0)
    sep = {a: (np.full(5, a), a + rng.normal(0, 0.01, 5)) for a in range(6)}
    lo, hi = spearman_bootstrap(sep)
    assert lo > 0.8 and hi == pytest.approx(1.0)
    noisy = {a: (np.full(5, a), rng.normal(0, 1, 5)) for a in range(6)}
    lo, hi = spearman_bootstrap(noisy)
    assert lo < 0 < hi
    one = {a: (np.full(1, a), a + rng.normal(0, 0.01, 1)) for a in range(6)}  # one replicate per arm: nothing to resample
    assert all(np.isnan(spearman_bootstrap(one)))


def test_holm_matches_its_definition():
    assert holm([0.013, 0.2, 0.04]) == pytest.approx([0.039, 0.2, 0.08])
    out = holm([0.01, float("nan"), 0.02])
    assert out[0] == pytest.approx(0.02) and math.isnan(out[1]) and out[2] == pytest.approx(0.02)
