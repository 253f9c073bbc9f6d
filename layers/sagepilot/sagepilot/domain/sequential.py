"""Anytime-valid comparison of a canary's candidate against the stable variant (pure; stdlib `math` only).

The test is the mixture sequential probability ratio test (mSPRT) of Johari, Pekelis and Walsh, "Always
Valid Inference: Continuous Monitoring of A/B Tests" (Operations Research, 2022; arXiv 1512.04922, 2015),
the family Lindon et al. apply to canaries in "Rapid Regression Detection in Software Deployments through
Sequential Testing" (KDD 2022). For a proportion (errors over invocations, requests over the latency
objective over requests) the difference `d = p_candidate - p_stable` is estimated by `D = x_c/n_c - x_s/n_s`,
approximately normal with variance `V = p_c(1-p_c)/n_c + p_s(1-p_s)/n_s`. Mixing the likelihood ratio of
`d = theta` over a normal prior `N(theta, tau^2)` gives

    Lambda(theta) = sqrt(V / (V + tau^2)) * exp(tau^2 (D - theta)^2 / (2 V (V + tau^2)))

a nonnegative martingale under `d = theta` with `E = 1`, so by Ville's inequality `P(ever Lambda >= 1/alpha)
<= alpha`: the test may be looked at after every new count (every reconcile tick) as often as one likes.
The set of `theta` with `Lambda(theta) < 1/alpha` is a confidence sequence: `D +- h` with

    h = sqrt(V (V + tau^2) / tau^2 * (2 ln(1/alpha) + ln((V + tau^2) / V)))

that covers `d` at every time at once with probability >= 1 - alpha.

Verdicts (higher is worse for every metric judged here; a metric where higher is better is judged on its
complement): WORSE when the whole sequence lies above 0 (the candidate is shown worse than stable), else
NOT_WORSE when it lies below the non-inferiority margin (shown no worse than stable by the margin that
matters), else CONTINUE. P(WORSE | d <= 0) <= alpha and P(NOT_WORSE | d >= margin) <= alpha, whenever
the verdict is read. `tau` is the margin (the effect sizes that matter). The variance uses each arm's
rate with one pseudo-event and one pseudo-success (a rate of 0 out of a few is not a certainty), and
nothing is judged before both arms have `min_trials`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum


class Verdict(StrEnum):
    WORSE = "WORSE"  # roll back
    NOT_WORSE = "NOT_WORSE"  # may move on once the step's minimum evidence is met
    CONTINUE = "CONTINUE"  # keep collecting


@dataclass(frozen=True)
class Counts:
    """`events` (errors, requests over the objective) out of `trials` (invocations)."""

    events: int
    trials: int

    def __post_init__(self) -> None:
        if self.trials < 0 or self.events < 0:
            raise ValueError(f"counts cannot be negative: {self.events}/{self.trials}")
        if self.events > self.trials:
            raise ValueError(f"more events than trials: {self.events}/{self.trials}")

    @property
    def rate(self) -> float:
        return self.events / self.trials if self.trials else 0.0

    @property
    def _smoothed(self) -> float:
        return (self.events + 1) / (self.trials + 2)


@dataclass(frozen=True)
class Judgement:
    """One metric's evidence and verdict, as reported."""

    metric: str
    baseline: Counts
    candidate: Counts
    margin: float
    alpha: float
    difference: float  # candidate's rate minus baseline's
    lower: float  # the confidence sequence at this look
    upper: float
    statistic: float  # ln Lambda(0): evidence that the candidate differs from stable
    boundary: float  # ln(1/alpha): WORSE once the statistic reaches it (with the candidate's rate higher)
    verdict: Verdict

    def describe(self) -> str:
        return (
            f"{self.metric}: candidate {self.candidate.events}/{self.candidate.trials} ({self.candidate.rate:.2%}) "
            f"vs stable {self.baseline.events}/{self.baseline.trials} ({self.baseline.rate:.2%}), "
            f"difference {self.difference:+.2%} in [{self.lower:+.2%}, {self.upper:+.2%}], "
            f"margin {self.margin:.2%}: {self.verdict}"
        )

    def as_dict(self) -> dict[str, object]:
        return {
            "metric": self.metric,
            "baseline": {"events": self.baseline.events, "trials": self.baseline.trials, "rate": self.baseline.rate},
            "candidate": {
                "events": self.candidate.events,
                "trials": self.candidate.trials,
                "rate": self.candidate.rate,
            },
            "margin": self.margin,
            "alpha": self.alpha,
            "difference": self.difference,
            "lower": _finite(self.lower),
            "upper": _finite(self.upper),
            "statistic": self.statistic,
            "boundary": self.boundary,
            "verdict": str(self.verdict),
        }


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


def variance(baseline: Counts, candidate: Counts) -> float:
    """Variance of the difference of the two rates (each arm's rate smoothed by one pseudo-count each way)."""
    pb, pc = baseline._smoothed, candidate._smoothed
    return pb * (1 - pb) / max(baseline.trials, 1) + pc * (1 - pc) / max(candidate.trials, 1)


def half_width(var: float, tau: float, alpha: float) -> float:
    """Half-width of the mSPRT confidence sequence at level `alpha` (see the module docstring)."""
    t2 = tau * tau
    return math.sqrt(var * (var + t2) / t2 * (2 * math.log(1 / alpha) + math.log((var + t2) / var)))


def log_lambda(difference: float, theta: float, var: float, tau: float) -> float:
    """ln of the mixture likelihood ratio against `d = theta`."""
    t2 = tau * tau
    return 0.5 * math.log(var / (var + t2)) + t2 * (difference - theta) ** 2 / (2 * var * (var + t2))


def judge(
    metric: str,
    baseline: Counts,
    candidate: Counts,
    *,
    margin: float,
    alpha: float,
    min_trials: int = 1,
) -> Judgement:
    """The verdict on one proportion where higher is worse, at this look (valid at every look)."""
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    if not 0 < margin < 1:
        raise ValueError(f"the margin must be in (0, 1), got {margin}")
    boundary = math.log(1 / alpha)
    difference = candidate.rate - baseline.rate
    if min(baseline.trials, candidate.trials) < max(min_trials, 1):
        return Judgement(
            metric, baseline, candidate, margin, alpha, difference, -math.inf, math.inf, 0.0, boundary, Verdict.CONTINUE
        )
    var = variance(baseline, candidate)
    h = half_width(var, margin, alpha)
    lower, upper = difference - h, difference + h
    if lower > 0:
        verdict = Verdict.WORSE
    elif upper < margin:
        verdict = Verdict.NOT_WORSE
    else:
        verdict = Verdict.CONTINUE
    statistic = log_lambda(difference, 0.0, var, margin)
    return Judgement(metric, baseline, candidate, margin, alpha, difference, lower, upper, statistic, boundary, verdict)


def overall(judgements: tuple[Judgement, ...]) -> Verdict:
    """WORSE if any metric is worse; NOT_WORSE if every metric is not worse; else CONTINUE."""
    if any(j.verdict is Verdict.WORSE for j in judgements):
        return Verdict.WORSE
    if judgements and all(j.verdict is Verdict.NOT_WORSE for j in judgements):
        return Verdict.NOT_WORSE
    return Verdict.CONTINUE
