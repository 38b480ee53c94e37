"""Statistics for the experiment grids, with the standard library only:
Student's t distribution (its CDF through the regularised incomplete beta
function, its quantiles by bisection), the paired t-test with its 95 %
confidence interval, an equivalence check against a stated margin, and
Holm's step-down correction across a family of comparisons.
"""

import math
import statistics


def _betacf(a, b, x):
    """The continued fraction of the incomplete beta function (modified Lentz)."""
    tiny, eps = 1e-300, 3e-16
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1.0)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 300):
        m2 = 2 * m
        for num in (m * (b - m) * x / ((a + m2 - 1) * (a + m2)),
                    -(a + m) * (a + b + m) * x / ((a + m2) * (a + m2 + 1))):
            d = 1.0 + num * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + num / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
        if abs(d * c - 1.0) < eps:
            break
    return h


def betainc(a, b, x):
    """The regularised incomplete beta function I_x(a, b)."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    front = math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b)
                     + a * math.log(x) + b * math.log1p(-x))
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _betacf(a, b, x) / a
    return 1.0 - front * _betacf(b, a, 1.0 - x) / b


def t_cdf(t, df):
    """P(T <= t) for Student's t with `df` degrees of freedom."""
    tail = 0.5 * betainc(df / 2.0, 0.5, df / (df + t * t))
    return 1.0 - tail if t > 0 else tail


def t_quantile(p, df):
    """The t with P(T <= t) = p, by bisection (to 1e-12)."""
    lo, hi = -1e4, 1e4
    for _ in range(200):
        mid = (lo + hi) / 2.0
        if t_cdf(mid, df) < p:
            lo = mid
        else:
            hi = mid
        if hi - lo < 1e-12:
            break
    return (lo + hi) / 2.0


def paired_t(diffs, level=0.95):
    """Mean of paired differences, its two-sided `level` confidence interval
    from the t distribution, and the two-sided p-value of mean 0; None for
    fewer than two differences. With no spread the interval is the mean and
    p is 0 (1 when the mean is 0)."""
    n = len(diffs)
    if n < 2:
        return None
    mean = statistics.fmean(diffs)
    se = statistics.stdev(diffs) / math.sqrt(n)
    if se == 0.0:
        return mean, (mean, mean), 0.0 if mean != 0.0 else 1.0
    half = t_quantile(0.5 + level / 2.0, n - 1) * se
    p = 2.0 * (1.0 - t_cdf(abs(mean) / se, n - 1))
    return mean, (mean - half, mean + half), p


def equivalent(interval, margin):
    """Whether a confidence interval lies within (-margin, margin): the
    difference is smaller than the margin stated before the results."""
    lo, hi = interval
    return -margin < lo and hi < margin


def holm(pvalues):
    """Holm's step-down adjusted p-values, in the order given: the i-th
    smallest p times (m - i), kept monotone, at most 1. Reject a hypothesis
    at level alpha when its adjusted p is below alpha."""
    m = len(pvalues)
    order = sorted(range(m), key=lambda i: pvalues[i])
    adjusted, running = [0.0] * m, 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * pvalues[i]))
        adjusted[i] = running
    return adjusted
