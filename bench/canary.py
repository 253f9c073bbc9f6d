"""The `canary` section: thousands of seeded `ab` rollouts simulated in pure code, four ways of judging them.

Traffic: `RATE` requests a minute, split by the candidate's share (steps 10, 50, 100), one reconcile a
minute, `BAKE` minutes a step (today's fixed schedule: 2 x BAKE to full traffic, 3 x BAKE to promotion),
`MIN_INVOCATIONS` per step. Stable fails 1% of requests with a 5xx and misses the latency objective on 5%;
`TAIL` of a miss is also over the p99 alarm's threshold. Scenarios: A/A (the candidate identical: also the
good candidate), a regression under the alarms' thresholds (errors 1% -> 2%, objective misses 5% -> 10%),
a candidate that gets no traffic, and (printed only) the error regression alone. Every arm has the alarms
and the minimum of invocations:

- alarms: the stack's two rollout alarms, with thresholds an operator would set above normal: 5xx
  `ERRORS_PER_MINUTE` a minute (1 of 1), and the p99 latency over its threshold in 2 of 2 minutes (more
  than 1% of a minute's requests over it); steps move on after the bake;
- fixed: a one-sided z-test per metric at the end of each bake (Kayenta's way: one look at a fixed window),
  at the same split level as the gate;
- peeked: the same z-test looked at every minute (what the sequential test is for);
- gate: `domain.canary_gate` at every minute (WORSE rolls back, NOT_WORSE moves on, undecided at the bake
  holds: `on-inconclusive` hold, counted as not promoted).

Each run draws its requests from its own seeded generator, the same for every arm (common random numbers),
so the arms differ only in how they judge. Proportions carry Wilson 95% intervals, medians a distribution-
free 95% interval (order statistics).
"""

from __future__ import annotations

import math
import random
import statistics
import time
from dataclasses import dataclass

from bench.common import Figure, SectionResult, Target
from sagepilot.domain.canary_gate import GateSettings, StepEvidence, VariantCounts, assess
from sagepilot.domain.sequential import Verdict

RATE = 6_000  # requests a minute (100 a second)
STEPS = (10, 50, 100)
BAKE = 30  # minutes a step (BakeSeconds 1800)
MIN_INVOCATIONS = 100
ERROR_RATE, MISS_RATE = 0.01, 0.05
TAIL = 0.05  # of the requests over the objective, the share also over the p99 alarm's threshold
ERRORS_PER_MINUTE = 150  # the 5xx alarm's threshold (over 2% of the full traffic: 120 a minute)
SETTINGS = GateSettings()
ARMS = ("alarms", "fixed", "peeked", "gate")


@dataclass(frozen=True)
class Candidate:
    errors: float
    misses: float
    reachable: bool = True  # False: requests never reach it (no traffic)


@dataclass
class Outcome:
    rolled_back_at: float | None = None  # minutes since the rollout began
    full_traffic_at: float | None = None
    promoted_at: float | None = None
    held: bool = False


def _binomial(rng: random.Random, n: int, p: float) -> int:
    if n <= 0 or p <= 0:
        return 0
    mean = n * p
    if mean < 30:  # Poisson (Knuth), close to the binomial for small p
        limit, k, product = math.exp(-mean), 0, rng.random()
        while product > limit:
            k += 1
            product *= rng.random()
        return min(k, n)
    return max(0, min(n, round(rng.gauss(mean, math.sqrt(mean * (1 - p))))))


def _z_worse(bx: int, bn: int, cx: int, cn: int) -> float:
    if bn == 0 or cn == 0:
        return 0.0
    pooled = (bx + cx) / (bn + cn)
    var = pooled * (1 - pooled) * (1 / bn + 1 / cn)
    return (cx / cn - bx / bn) / math.sqrt(var) if var > 0 else 0.0


def simulate(arm: str, candidate: Candidate, seed: int) -> Outcome:
    rng = random.Random(seed)
    out = Outcome()
    alpha = (1 - SETTINGS.confidence) / (2 * sum(1 for s in STEPS if s < 100))
    z = statistics.NormalDist().inv_cdf(1 - alpha)  # one-sided, at the gate's split level
    minute = 0
    for share in STEPS:
        if share == 100 and out.full_traffic_at is None:
            out.full_traffic_at = minute
        s = [0, 0, 0]  # invocations, errors, misses
        c = [0, 0, 0]
        slow_streak = 0
        elapsed = 0
        while True:
            minute += 1
            elapsed += 1
            n_c = _binomial(rng, RATE, share / 100) if candidate.reachable else 0
            n_s = RATE - n_c if share < 100 else 0
            e_s, m_s = _binomial(rng, n_s, ERROR_RATE), _binomial(rng, n_s, MISS_RATE)
            e_c, m_c = _binomial(rng, n_c, candidate.errors), _binomial(rng, n_c, candidate.misses)
            tail_c = _binomial(rng, m_c, TAIL)
            for acc, add in ((s, (n_s, e_s, m_s)), (c, (n_c, e_c, m_c))):
                for i in range(3):
                    acc[i] += add[i]
            # The alarms (every arm): 5xx a minute; p99 over its threshold in 2 consecutive minutes.
            slow_streak = slow_streak + 1 if n_c and tail_c > 0.01 * n_c else 0
            if e_c >= ERRORS_PER_MINUTE or slow_streak >= 2:
                out.rolled_back_at = minute
                return out
            evidence = c[0] >= MIN_INVOCATIONS
            baked = elapsed >= BAKE
            looks = share < 100 and arm in ("fixed", "peeked") and (arm == "peeked" or baked)
            if looks and (_z_worse(s[1], s[0], c[1], c[0]) > z or _z_worse(s[2], s[0], c[2], c[0]) > z):
                out.rolled_back_at = minute
                return out
            if share < 100 and arm == "gate":
                counts = StepEvidence(
                    VariantCounts(s[0], s[1], s[2], s[0]), VariantCounts(c[0], c[1], c[2], c[0]), 0, minute
                )
                verdict = assess(counts, SETTINGS, STEPS).verdict
                if verdict is Verdict.WORSE:
                    out.rolled_back_at = minute
                    return out
                if verdict is Verdict.NOT_WORSE and evidence:
                    break
                if baked:
                    out.held = True  # on-inconclusive hold (or NO TRAFFIC): a person decides
                    return out
                continue
            if baked and evidence:
                break
            if elapsed >= 2 * BAKE:  # MaxBakeSeconds (2 bakes here): short of evidence, held (NO TRAFFIC)
                out.held = True
                return out
    out.promoted_at = minute
    return out


def wilson(k: int, n: int) -> tuple[float, float]:
    if n == 0:
        return (0.0, 1.0)
    p, z = k / n, 1.96
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (max(0.0, centre - half), min(1.0, centre + half))


def median_ci(values: list[float]) -> tuple[float, float, float] | None:
    if not values:
        return None
    ordered = sorted(values)
    n = len(ordered)
    low = max(0, math.floor(n / 2 - 1.96 * math.sqrt(n) / 2))
    high = min(n - 1, math.ceil(n / 2 + 1.96 * math.sqrt(n) / 2))
    return statistics.median(ordered), ordered[low], ordered[high]


def _share(k: int, n: int) -> str:
    low, high = wilson(k, n)
    return f"{k / n:6.1%} [{low:.1%}, {high:.1%}]" if n else "-"


def _minutes(values: list[float], n: int) -> str:
    found = median_ci(values)
    if found is None:
        return "never"
    mid, low, high = found
    return f"{mid:5.0f} min [{low:.0f}, {high:.0f}] ({len(values)}/{n})"


def run(runs: int = 2_000, seed: int = 18) -> SectionResult:
    started = time.monotonic()
    result = SectionResult("canary")
    scenarios = {
        "A/A": Candidate(ERROR_RATE, MISS_RATE),
        "regression": Candidate(2 * ERROR_RATE, 2 * MISS_RATE),
        "no traffic": Candidate(ERROR_RATE, MISS_RATE, reachable=False),
        "errors only": Candidate(2 * ERROR_RATE, MISS_RATE),
    }
    outcomes = {
        (name, arm): [simulate(arm, cand, seed * 1_000_003 + i) for i in range(runs)]
        for name, cand in scenarios.items()
        for arm in ARMS
    }
    header = f"{'arm':<8} {'A/A false rollback':>24} {'regression caught':>24} {'time to rollback':>26} " + (
        f"{'A/A to full traffic':>26} {'no traffic promoted':>20} {'errors-only caught, time':>40}"
    )
    text = [
        f"canary: {runs:,} seeded rollouts per scenario and arm; {RATE:,} requests/min, steps {STEPS}, "
        f"bake {BAKE} min (today: full traffic at {2 * BAKE} min, promotion at {3 * BAKE}), errors "
        f"{ERROR_RATE:.0%} -> {2 * ERROR_RATE:.0%}, objective misses {MISS_RATE:.0%} -> {2 * MISS_RATE:.0%}",
        header,
    ]
    for arm in ARMS:
        aa, bad, silent = outcomes[("A/A", arm)], outcomes[("regression", arm)], outcomes[("no traffic", arm)]
        false_rb = sum(o.rolled_back_at is not None for o in aa)
        caught = [o.rolled_back_at for o in bad if o.rolled_back_at is not None and o.promoted_at is None]
        full = [o.full_traffic_at for o in aa if o.full_traffic_at is not None and o.rolled_back_at is None]
        promoted_silent = sum(o.promoted_at is not None for o in silent)
        alone = [o.rolled_back_at for o in outcomes[("errors only", arm)] if o.rolled_back_at and not o.promoted_at]
        text.append(
            f"{arm:<8} {_share(false_rb, runs):>24} {_share(len(caught), runs):>24} "
            f"{_minutes([float(x) for x in caught], runs):>26} {_minutes([float(x) for x in full], runs):>26} "
            f"{promoted_silent:>20} {_share(len(alone), runs):>22} {_minutes([float(x) for x in alone], runs):>17}"
        )
        gate = arm == "gate"
        label = f"{arm}: "
        result.figures.append(
            Figure(
                "canary",
                label + "A/A false rollback rate",
                false_rb / runs,
                "ratio",
                target=Target("value", "<=", 0.05) if gate else None,
                spread="Wilson 95% [{:.3f}, {:.3f}], n={}".format(*wilson(false_rb, runs), runs),
            )
        )
        result.figures.append(
            Figure(
                "canary",
                label + "regression caught before promotion",
                len(caught) / runs,
                "ratio",
                target=Target("value", ">=", 0.95) if gate else None,
                spread="Wilson 95% [{:.3f}, {:.3f}], n={}".format(*wilson(len(caught), runs), runs),
            )
        )
        rollback = median_ci([float(x) for x in caught])
        result.figures.append(
            Figure(
                "canary",
                label + "median time to rollback (minutes)",
                rollback[0] if rollback else None,
                "min",
                baseline=float(BAKE),
                baseline_label="the fixed bake",
                target=Target("ratio", "<=", 0.5) if gate else None,
                spread=f"95% [{rollback[1]:.0f}, {rollback[2]:.0f}] min" if rollback else "none caught",
            )
        )
        to_full = median_ci([float(x) for x in full])
        result.figures.append(
            Figure(
                "canary",
                label + "A/A median time to full traffic (minutes)",
                to_full[0] if to_full else None,
                "min",
                baseline=float(2 * BAKE),
                baseline_label="today's fixed schedule",
                target=Target("ratio", "<=", 0.5) if gate else None,
                spread=(f"95% [{to_full[1]:.0f}, {to_full[2]:.0f}] min, {len(full)}/{runs} reached it")
                if to_full
                else "none reached it",
            )
        )
        result.figures.append(
            Figure(
                "canary",
                label + "zero-traffic candidates promoted",
                float(promoted_silent),
                "runs",
                target=Target("value", "==", 0.0),
            )
        )
    result.text = text
    result.seconds = time.monotonic() - started
    return result
