"""The canary's anytime-valid test (domain.sequential): its verdicts, its confidence sequence, and its
error guarantee under continuous monitoring (A/A simulations looked at every tick)."""

from __future__ import annotations

import math
import random

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from sagepilot.domain.sequential import Counts, Verdict, half_width, judge, log_lambda, overall, variance


def _binomial(rng: random.Random, n: int, p: float) -> int:
    return sum(1 for _ in range(n) if rng.random() < p)


def test_clearly_worse_candidate_is_worse() -> None:
    j = judge("errors", Counts(100, 10_000), Counts(300, 10_000), margin=0.005, alpha=0.05)
    assert j.verdict is Verdict.WORSE
    assert j.lower > 0
    assert j.statistic >= j.boundary


def test_equal_rates_with_much_evidence_are_not_worse() -> None:
    j = judge("errors", Counts(1_000, 100_000), Counts(100, 10_000), margin=0.005, alpha=0.05)
    assert j.verdict is Verdict.NOT_WORSE
    assert j.upper < 0.005 and j.lower <= 0


def test_little_evidence_continues() -> None:
    j = judge("errors", Counts(1, 100), Counts(2, 100), margin=0.005, alpha=0.05)
    assert j.verdict is Verdict.CONTINUE


def test_nothing_is_judged_below_the_minimum_of_trials() -> None:
    j = judge("errors", Counts(0, 50_000), Counts(40, 40), margin=0.005, alpha=0.05, min_trials=50)
    assert j.verdict is Verdict.CONTINUE
    assert j.as_dict()["lower"] is None  # infinite bounds are reported as null, not as invalid JSON


def test_better_candidate_is_not_worse_not_worse_than_margin() -> None:
    j = judge("errors", Counts(500, 10_000), Counts(100, 10_000), margin=0.005, alpha=0.05)
    assert j.verdict is Verdict.NOT_WORSE


def test_invalid_counts_and_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="more events than trials"):
        Counts(3, 2)
    with pytest.raises(ValueError, match="negative"):
        Counts(-1, 2)
    with pytest.raises(ValueError, match="alpha"):
        judge("e", Counts(1, 10), Counts(1, 10), margin=0.01, alpha=1.0)
    with pytest.raises(ValueError, match="margin"):
        judge("e", Counts(1, 10), Counts(1, 10), margin=0.0, alpha=0.05)


def test_overall_verdict() -> None:
    worse = judge("a", Counts(100, 10_000), Counts(300, 10_000), margin=0.005, alpha=0.05)
    fine = judge("b", Counts(1_000, 100_000), Counts(100, 10_000), margin=0.005, alpha=0.05)
    unsure = judge("c", Counts(1, 100), Counts(2, 100), margin=0.005, alpha=0.05)
    assert overall((fine, worse)) is Verdict.WORSE
    assert overall((fine, fine)) is Verdict.NOT_WORSE
    assert overall((fine, unsure)) is Verdict.CONTINUE
    assert overall(()) is Verdict.CONTINUE


def test_the_sequence_is_where_the_mixture_ratio_stays_below_the_boundary() -> None:
    """The confidence sequence's ends are exactly where ln Lambda(theta) = ln(1/alpha)."""
    var, tau, alpha, d = 2e-6, 0.005, 0.05, 0.003
    h = half_width(var, tau, alpha)
    assert log_lambda(d, d + h, var, tau) == pytest.approx(math.log(1 / alpha))
    assert log_lambda(d, d - h, var, tau) == pytest.approx(math.log(1 / alpha))
    assert log_lambda(d, d, var, tau) < math.log(1 / alpha)


@settings(max_examples=200, deadline=None)
@given(
    xb=st.integers(0, 2_000),
    nb=st.integers(1, 100_000),
    xc=st.integers(0, 2_000),
    nc=st.integers(1, 100_000),
    alpha=st.floats(0.001, 0.2),
    margin=st.floats(0.001, 0.2),
)
@example(xb=0, nb=202, xc=45, nc=2485, alpha=0.125, margin=0.125)  # shown worse at 0.125, not at 0.0625
def test_properties(xb: int, nb: int, xc: int, nc: int, alpha: float, margin: float) -> None:
    baseline, candidate = Counts(min(xb, nb), nb), Counts(min(xc, nc), nc)
    j = judge("m", baseline, candidate, margin=margin, alpha=alpha)
    assert j.lower <= j.difference <= j.upper
    # The verdict is what the sequence says, and WORSE exactly when the mSPRT against d = 0 rejects with
    # the candidate's rate higher.
    assert (j.verdict is Verdict.WORSE) == (j.lower > 0)
    if j.verdict is Verdict.WORSE:
        assert j.difference > 0 and j.statistic >= j.boundary - 1e-9
    if j.verdict is Verdict.NOT_WORSE:
        assert j.upper < margin
    # More confidence never makes a verdict where less confidence had none, and each verdict it makes, less
    # confidence made too or had the evidence for: a stricter WORSE was a WORSE; a stricter NOT_WORSE had its upper
    # bound under the margin at the looser level (where WORSE may have taken precedence: an interval wholly
    # inside (0, margin) is a regression shown, which rolls back).
    stricter = judge("m", baseline, candidate, margin=margin, alpha=alpha / 2)
    if j.verdict is Verdict.CONTINUE:
        assert stricter.verdict is Verdict.CONTINUE
    if stricter.verdict is Verdict.WORSE:
        assert j.verdict is Verdict.WORSE
    if stricter.verdict is Verdict.NOT_WORSE:
        assert j.upper < margin and j.verdict in (Verdict.NOT_WORSE, Verdict.WORSE)
        assert j.verdict is Verdict.NOT_WORSE or j.lower > 0


@settings(max_examples=100, deadline=None)
@given(x=st.integers(0, 500), n=st.integers(500, 50_000), k=st.integers(2, 10))
def test_more_of_the_same_evidence_narrows_the_sequence(x: int, n: int, k: int) -> None:
    small = variance(Counts(x, n), Counts(x, n))
    large = variance(Counts(x * k, n * k), Counts(x * k, n * k))
    assert large < small
    assert half_width(large, 0.01, 0.05) < half_width(small, 0.01, 0.05)


@pytest.mark.parametrize(("rate", "share"), [(0.01, 0.1), (0.05, 0.5), (0.002, 0.1)])
def test_a_a_false_worse_rate_under_continuous_monitoring_is_within_alpha(rate: float, share: float) -> None:
    """Identical variants, the test looked at every tick for 120 ticks, never stopped on NOT_WORSE (the
    hardest case for the guarantee): the share of runs ever called WORSE stays within alpha."""
    alpha, runs, ticks, per_tick = 0.05, 300, 120, 400
    rng = random.Random(20_261_205)
    false_alarms = 0
    for _ in range(runs):
        xb = nb = xc = nc = 0
        for _ in range(ticks):
            c = _binomial(rng, per_tick, share)
            nb, nc = nb + per_tick - c, nc + c
            xb += _binomial(rng, per_tick - c, rate)
            xc += _binomial(rng, c, rate)
            if judge("e", Counts(xb, nb), Counts(xc, nc), margin=0.005, alpha=alpha).verdict is Verdict.WORSE:
                false_alarms += 1
                break
    # The observed rate's 95% upper bound (normal approximation) is within alpha.
    p = false_alarms / runs
    assert p + 1.96 * math.sqrt(max(p * (1 - p), 1e-9) / runs) <= alpha + 0.02
    assert p <= alpha


def test_peeking_a_fixed_horizon_test_every_tick_would_inflate_false_alarms() -> None:
    """Why the sequential test: a plain z-test at 95% looked at every tick calls an A/A worse far more
    often than 5% (the same simulation as above); the mSPRT does not (the test above)."""
    rng = random.Random(7)
    runs, ticks, per_tick, rate, share = 300, 120, 400, 0.01, 0.1
    fired = 0
    for _ in range(runs):
        xb = nb = xc = nc = 0
        for _ in range(ticks):
            c = _binomial(rng, per_tick, share)
            nb, nc = nb + per_tick - c, nc + c
            xb += _binomial(rng, per_tick - c, rate)
            xc += _binomial(rng, c, rate)
            var = variance(Counts(xb, nb), Counts(xc, nc))
            if (xc / nc - xb / nb) / math.sqrt(var) > 1.645:
                fired += 1
                break
    assert fired / runs > 2 * 0.05


def test_a_regression_at_ten_percent_traffic_is_shown_worse() -> None:
    """1% -> 2% errors with 10% of 6000 requests a minute: shown worse in (nearly) every run, within an hour."""
    rng = random.Random(11)
    caught = 0
    for _ in range(100):
        xb = nb = xc = nc = 0
        for _ in range(60):
            c = _binomial(rng, 6_000, 0.1)
            nb, nc = nb + 6_000 - c, nc + c
            xb += _binomial(rng, 6_000 - c, 0.01)
            xc += _binomial(rng, c, 0.02)
            verdict = judge("e", Counts(xb, nb), Counts(xc, nc), margin=0.005, alpha=0.05).verdict
            if verdict is not Verdict.CONTINUE:
                caught += verdict is Verdict.WORSE
                break
    assert caught >= 95
