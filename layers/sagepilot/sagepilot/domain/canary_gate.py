"""The `ab` canary's statistical gate: candidate against stable on what SageMaker publishes per variant (pure).

At every reconcile of a canary step where both variants serve (the candidate below 100%), the service reads
each variant's counts since the step began (one GetMetricData call: `Invocations`, `Invocation5XXErrors`,
`ModelLatency` SampleCount and its percentile rank `PR(:objective)`) and `assess` judges, with the
anytime-valid test of `domain.sequential`:

- errors: 5xx and 4xx responses over invocations, non-inferiority margin `error_margin` (absolute);
- latency: the share of requests over the group's latency objective (out of the requests with a
  `ModelLatency`), margin `latency_margin`. A variant without latency data is not judged not worse;
- each metric the user publishes per variant (`custom`: namespace, name, which direction is good, margin),
  judged where it is meaningful for this test: a per-request 0/1 outcome (a conversion, a wrong answer)
  published with dimensions `EndpointName` and `VariantName`, whose Sum over SampleCount is a proportion.
  Where higher is better, its complement (the requests without the outcome) is judged.

The level `1 - confidence` is split evenly (Bonferroni) over the metrics and the steps the gate judges, so
that a rollout of identical variants is rolled back by the gate with probability at most `1 - confidence`
however often it is looked at. The step's verdict: WORSE if any metric is shown worse (roll back, the
candidate Rejected with the metric named), NOT_WORSE once every metric is shown not worse (the step moves
on as soon as its minimum of invocations is met), else CONTINUE (keep collecting until the longest bake,
then the group's `on-inconclusive` policy: hold and report, roll back, or promote).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from sagepilot.domain.sequential import Counts, Judgement, Verdict, judge, overall

ERRORS = "errors"
LATENCY = "latency"
# Nothing is judged on fewer invocations than this per variant (the normal approximation needs a few).
MIN_TRIALS = 100


@dataclass(frozen=True)
class CustomMetric:
    """A proportion the user publishes per variant (`sagepilot:metrics`: `Namespace/Name:lower|higher:margin`)."""

    namespace: str
    name: str
    higher_is_better: bool
    margin: float

    def __post_init__(self) -> None:
        if not self.namespace or not self.name:
            raise ValueError("a metric needs a namespace and a name")
        if not 0 < self.margin < 1:
            raise ValueError(f"the margin of {self.name} must be in (0, 1), got {self.margin}")

    @property
    def label(self) -> str:
        return f"{self.namespace}/{self.name}"


class Inconclusive(StrEnum):
    """What a step still undecided at its longest bake does."""

    HOLD = "hold"  # stay at the step and report (a person decides: sagepilot promote / rollback)
    ROLLBACK = "rollback"
    PROMOTE = "promote"  # move on, as today's fixed bake does (never on silence: the minimum still holds)


@dataclass(frozen=True)
class GateSettings:
    enabled: bool = True
    confidence: float = 0.95
    error_margin: float = 0.005  # 0.5 percentage points of errors (4xx + 5xx); also compare_errors' margin
    latency_margin: float = 0.02  # 2 percentage points of requests over the objective
    latency_objective_ms: int = 0  # 0: the group's latency alarm threshold
    on_inconclusive: Inconclusive = Inconclusive.HOLD
    custom: tuple[CustomMetric, ...] = ()

    def __post_init__(self) -> None:
        if not 0.5 <= self.confidence < 1:
            raise ValueError(f"the confidence must be in [0.5, 1), got {self.confidence}")
        if not 0 < self.error_margin < 1 or not 0 < self.latency_margin < 1:
            raise ValueError("margins must be in (0, 1)")
        if self.latency_objective_ms < 0:
            raise ValueError("the latency objective cannot be negative")


@dataclass(frozen=True)
class VariantCounts:
    """One variant's counts since the step began."""

    invocations: int
    errors: int
    over_objective: int  # requests whose model latency exceeded the objective
    latency_samples: int  # requests with a model latency (ModelLatency's SampleCount)
    custom: tuple[tuple[int, int], ...] = ()  # per GateSettings.custom metric: (Sum, SampleCount)

    def __post_init__(self) -> None:
        if min(self.invocations, self.errors, self.over_objective, self.latency_samples) < 0:
            raise ValueError(f"counts cannot be negative: {self}")


@dataclass(frozen=True)
class StepEvidence:
    stable: VariantCounts
    candidate: VariantCounts
    start: float  # the window the counts cover (epoch seconds)
    end: float


@dataclass(frozen=True)
class Assessment:
    verdict: Verdict
    judgements: tuple[Judgement, ...]
    evidence: StepEvidence
    alpha: float  # per metric and step

    def worst(self) -> Judgement | None:
        return next((j for j in self.judgements if j.verdict is Verdict.WORSE), None)

    def summary(self) -> str:
        return "; ".join(j.describe() for j in self.judgements)


def gated_steps(steps: tuple[int, ...]) -> int:
    """How many steps the gate judges: those where stable still serves (below 100%)."""
    return sum(1 for s in steps if s < 100)


def assess(
    evidence: StepEvidence, settings: GateSettings, steps: tuple[int, ...], *, stages: int | None = None
) -> Assessment:
    """The gate's verdict on one step's evidence (valid whenever it is read; see the module docstring).
    `stages`: how many looks of the rollout the gate acts on (default: the steps below 100%; a shadow test
    adds one: `RolloutPolicy.judged_stages`)."""
    metrics = 2 + len(settings.custom)
    alpha = (1 - settings.confidence) / (metrics * max(gated_steps(steps) if stages is None else stages, 1))

    def counts(events: int, trials: int) -> Counts:
        # CloudWatch's counts of one minute can disagree by a request or two (published apart): clamp.
        return Counts(min(events, trials), trials)

    s, c = evidence.stable, evidence.candidate
    judgements: tuple[Judgement, ...] = (
        judge(
            ERRORS,
            counts(s.errors, s.invocations),
            counts(c.errors, c.invocations),
            margin=settings.error_margin,
            alpha=alpha,
            min_trials=MIN_TRIALS,
        ),
        judge(
            LATENCY,
            counts(s.over_objective, s.latency_samples),
            counts(c.over_objective, c.latency_samples),
            margin=settings.latency_margin,
            alpha=alpha,
            min_trials=MIN_TRIALS,
        ),
    )
    for index, metric in enumerate(settings.custom):

        def outcome(variant: VariantCounts, metric: CustomMetric = metric, index: int = index) -> Counts:
            total, samples = variant.custom[index] if index < len(variant.custom) else (0, 0)
            events = min(total, samples)
            return counts(samples - events if metric.higher_is_better else events, samples)

        judgements += (
            judge(metric.label, outcome(s), outcome(c), margin=metric.margin, alpha=alpha, min_trials=MIN_TRIALS),
        )
    return Assessment(overall(judgements), judgements, evidence, alpha)


# With the gate off (alarm-only), a baked step's plain comparison of the error rates needs at least this many of
# the candidate's errors for a verdict: one stray 4xx at low traffic is not one.
MIN_COMPARED_ERRORS = 10


@dataclass(frozen=True)
class ErrorComparison:
    """With `sagepilot:analysis` `off`, the plain comparison of a baked step's error rates (4xx + 5xx over
    invocations): the candidate is worse when its rate exceeds stable's by more than the group's error margin,
    with at least `MIN_COMPARED_ERRORS` of its own errors. Not the sequential test: no confidence level, one look
    at the step's totals once it has baked. It catches a model that refuses what the live one serves (4xx, which
    the per-variant alarms do not watch: alone, a 4xx count cannot tell the model's refusals from the callers'
    own mistakes, which hit both variants alike)."""

    evidence: StepEvidence
    margin: float
    worse: bool

    @staticmethod
    def rate(counts: VariantCounts) -> float:
        return min(counts.errors, counts.invocations) / counts.invocations if counts.invocations else 0.0

    def describe(self, stable: str, candidate: str) -> str:
        s, c = self.evidence.stable, self.evidence.candidate
        return (
            f"4xx+5xx: {candidate} {min(c.errors, c.invocations)}/{c.invocations} = {self.rate(c):.2%}, "
            f"{stable} {min(s.errors, s.invocations)}/{s.invocations} = {self.rate(s):.2%}, margin {self.margin:.2%}; "
            "a plain comparison of the baked step's totals, not the sequential test: sagepilot:analysis is off"
        )


def compare_errors(evidence: StepEvidence, margin: float, min_errors: int = MIN_COMPARED_ERRORS) -> ErrorComparison:
    """The alarm-only comparison of one baked step's error rates (see ErrorComparison). Nothing to compare
    against (stable served nothing in the step), or fewer than `min_errors` of the candidate's errors: not worse."""
    if not 0 < margin < 1:
        raise ValueError(f"the error margin must be in (0, 1), got {margin}")
    if min_errors < 1:
        raise ValueError(f"the minimum of errors for a verdict must be at least 1, got {min_errors}")
    s, c = evidence.stable, evidence.candidate
    worse = (
        s.invocations > 0
        and c.invocations > 0
        and min(c.errors, c.invocations) >= min_errors
        and ErrorComparison.rate(c) - ErrorComparison.rate(s) > margin
    )
    return ErrorComparison(evidence, margin, worse)
