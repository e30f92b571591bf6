"""The shared statistics layer: paired differences by seed, Holm's correction and the effect rule, checked
against scipy's own tests on the same numbers."""

import math

import pytest
from scipy import stats as sps

from edgebench.stats import holm, mean_ci, paired, verdict, within


def test_paired_matches_scipy_ttest_rel():
    a = {0: 0.91, 1: 0.90, 2: 0.93, 3: 0.92}
    b = {0: 0.90, 1: 0.905, 2: 0.91, 3: 0.90, 9: 0.5}  # seed 9 has no partner: left out
    d = paired(a, b)
    ref = sps.ttest_rel([a[s] for s in range(4)], [b[s] for s in range(4)])
    assert d.n == 4 and d.seeds == (0, 1, 2, 3)
    assert d.p == pytest.approx(ref.pvalue)
    m, h = mean_ci([a[s] - b[s] for s in range(4)])
    assert (d.mean, d.half) == (pytest.approx(m), pytest.approx(h))
    ci = ref.confidence_interval(0.95)
    assert (d.low, d.high) == (pytest.approx(ci.low), pytest.approx(ci.high))


def test_paired_detects_what_unpaired_intervals_miss():
    # every seed's compressed model is 0.3 pt below its own parent, while the parents vary by 2 pt
    dense = {0: 0.88, 1: 0.90, 2: 0.89}
    comp = {0: 0.877, 1: 0.8968, 2: 0.8871}
    (ma, ha), (mb, hb) = mean_ci(list(comp.values())), mean_ci(list(dense.values()))
    assert ma + ha > mb - hb  # the unpaired intervals overlap
    d = paired(comp, dense)
    assert d.excludes_zero() and verdict(d) == "lower"


def test_one_seed_has_no_interval():
    d = paired({0: 1.0}, {0: 0.5})
    assert d.n == 1 and math.isnan(d.half) and verdict(d) == "n/a"
    assert paired({0: 1.0}, {1: 0.5}).n == 0


def test_holm_matches_the_textbook_example():
    # Holm (1979) step-down: sorted p 0.01, 0.02, 0.03, 0.04 with m=4 -> 0.04, 0.06, 0.06, 0.06
    assert holm([0.03, 0.01, 0.04, 0.02]) == pytest.approx([0.06, 0.04, 0.06, 0.06])
    assert math.isnan(holm([math.nan, 0.01])[0]) and holm([math.nan, 0.01])[1] == pytest.approx(0.01)


def test_verdict_respects_holm_and_within_needs_the_whole_interval():
    d = paired({0: 1.0, 1: 1.1, 2: 1.05}, {0: 0.0, 1: 0.0, 2: 0.0})
    assert verdict(d) == "higher"
    assert verdict(d, p_adjusted=0.2) == "not distinguishable"
    flat = paired({0: 0.001, 1: -0.001, 2: 0.0}, {0: 0, 1: 0, 2: 0})
    assert verdict(flat) == "not distinguishable" and within(flat, 0.01) and not within(d, 0.5)


def test_why_not_an_effect_names_the_reason():
    from edgebench.stats import excludes_zero, why_not_effect

    assert excludes_zero(-0.0138, 0.0046) and not excludes_zero(-0.001, 0.0046)
    assert not excludes_zero(0.01, math.nan) and not excludes_zero(math.nan, 0.01)
    assert why_not_effect(-0.001, 0.0046) == "the interval covers zero"
    assert why_not_effect(0.02, 0.01, family="the board") == (
        "the interval excludes zero, but not after Holm's correction over the board (family-wise 5%)")
