"""An in-memory endpoint and registry that apply rollout decisions the way SageMaker would.

Used by the decision tests and the property tests: it refuses what SageMaker refuses (an update while
the endpoint is not InService, removing a variant still registered for autoscaling) so that a decision
that would fail in AWS fails here too. Its clients call the endpoint while time passes (`rate` a second,
split by the variants' shares, unless `calling` is off): the ledger CloudWatch's Invocations would hold,
from which each decision is given what the canary's candidate served in its step.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sagepilot.domain import rollout as plan
from sagepilot.domain.rollout import EndpointView, Release, RolloutPolicy, RolloutState, Strategy, VariantView

ENDPOINT = "sp-churn"
GROUP = "churn"
ALLOWED = ("123456789012.dkr.ecr.us-east-1.amazonaws.com/churn",)  # the stack's ImageRepositoriesAllowed


def release(version: int) -> Release:
    return Release(version, f"arn:aws:sagemaker:us-east-1:123456789012:model-package/{GROUP}/{version}")


class Refused(AssertionError):
    """SageMaker would have refused this call."""


@dataclass
class FakeEndpoint:
    status: str | None = None  # None: does not exist
    variants: dict[str, float] = field(default_factory=dict)  # name -> current weight
    pending: dict[str, float] | None = None
    autoscaled: set[str] = field(default_factory=set)
    last_modified: float = 0.0
    fail_next: str = ""
    native_rollback_next: bool = False
    failure_reason: str = ""
    updates: int = 0
    removed_variants: list[str] = field(default_factory=list)
    # The next UpdateEndpoint that starts a new variant fails to (its container does not pass the health
    # check): SageMaker leaves the endpoint InService on the old variants with this FailureReason.
    fail_next_update: str = ""
    failed_updates: list[frozenset[str]] = field(default_factory=list)  # the variant each one could not start
    _config_update: bool = False
    # ShadowProductionVariants: name -> weight (relative to the one production variant's: the share copied).
    shadows: dict[str, float] = field(default_factory=dict)
    pending_shadows: dict[str, float] = field(default_factory=dict)

    def view(self) -> EndpointView | None:
        if self.status is None:
            return None
        return EndpointView(
            status=self.status,
            config_name=f"config-{self.updates}",
            variants=tuple(VariantView(n, w, 1) for n, w in sorted(self.variants.items())),
            last_modified=self.last_modified,
            failure_reason=self.failure_reason,
            shadows=tuple(VariantView(n, w, 1) for n, w in sorted(self.shadows.items())),
        )

    def _later(self, now: float) -> float:
        """SageMaker's LastModifiedTime of a change: never earlier than the one before (moves within one
        instant of the test's clock are a millisecond apart)."""
        return max(now, self.last_modified + 0.001)

    def _require_in_service(self) -> None:
        if self.status != "InService":
            raise Refused(f"Cannot update in-progress endpoint (status {self.status})")

    def create(self, variants: dict[str, float], now: float) -> None:
        if self.status is not None:
            raise Refused("Cannot create already existing endpoint")
        self.status, self.pending, self.last_modified = "Creating", variants, self._later(now)

    def update(
        self, variants: dict[str, float], now: float, native: bool = False, shadows: dict[str, float] | None = None
    ) -> None:
        self._require_in_service()
        if shadows and (len(variants) != 1 or len(shadows) != 1):
            raise Refused("a config with a shadow variant has exactly one production variant and one shadow")
        self.pending_shadows = dict(shadows or {})
        removed = set(self.variants) - set(variants)
        still = removed & self.autoscaled
        if still:
            raise Refused(f"variants {sorted(still)} must be deregistered as scalable targets first")
        self.status, self.last_modified, self.updates = "Updating", self._later(now), self.updates + 1
        self.failure_reason, self._config_update = "", True  # SageMaker clears the reason of a new update
        self.pending = dict(self.variants) if native and self.native_rollback_next else variants
        if native and self.native_rollback_next:
            self.native_rollback_next = False
            self.failure_reason = "alarm fired; rolled back"

    def set_weights(self, weights: dict[str, float], now: float) -> None:
        self._require_in_service()
        unknown = set(weights) - set(self.variants)
        if unknown:
            raise Refused(f"unknown variants {unknown}")
        self.status, self.last_modified, self._config_update = "Updating", self._later(now), False
        self.pending = {**self.variants, **weights}

    def settle(self, now: float) -> bool:
        """Finish the running change (SageMaker's side); True if something changed."""
        if self.status not in ("Creating", "Updating") or self.pending is None:
            return False
        if self.fail_next and self.status == "Creating":
            self.status, self.failure_reason, self.fail_next = "Failed", self.fail_next, ""
            return True
        started = frozenset(self.pending) - frozenset(self.variants)
        if self.fail_next_update and self.status == "Updating" and self._config_update and started:
            # The variant that did not start: the newest version among those the update starts.
            self.failed_updates.append(frozenset({max(started, key=lambda v: int(v.lstrip("v") or 0))}))
            self.status, self.failure_reason, self.fail_next_update = "InService", self.fail_next_update, ""
            self.pending, self.last_modified = None, self._later(now)
            return True
        self.removed_variants += sorted(set(self.variants) - set(self.pending))
        if self._config_update:
            self.shadows, self.pending_shadows = self.pending_shadows, {}
        self.variants, self.pending, self.status, self.last_modified = self.pending, None, "InService", self._later(now)
        return True

    def copied(self) -> dict[str, float]:
        """Each shadow variant's share of the requests (copies of them: the callers get production's answers)."""
        production = sum(self.variants.values())
        return {n: (min(1.0, w / production) if production else 0.0) for n, w in self.shadows.items()}

    def shares(self) -> dict[str, float]:
        total = sum(self.variants.values())
        return {n: (w / total if total else 0.0) for n, w in self.variants.items()}


@dataclass
class World:
    policy: RolloutPolicy = field(default_factory=lambda: RolloutPolicy(Strategy.AB, (10, 50, 100), 600))
    endpoint: FakeEndpoint = field(default_factory=FakeEndpoint)
    approved: dict[int, Release] = field(default_factory=dict)
    rejected: dict[int, str] = field(default_factory=dict)
    firing: set[str] = field(default_factory=set)
    state: RolloutState | None = None
    now: float = 1_000.0
    notes: list[str] = field(default_factory=list)
    notifications: list[str] = field(default_factory=list)
    actions: list[plan.Action] = field(default_factory=list)
    deploy: bool = True  # the group's sagepilot:deploy
    foreign: set[int] = field(default_factory=set)  # versions whose inference image ALLOWED does not allow
    calling: bool = True  # clients call the endpoint while time passes
    rate: float = 1.0  # invocations a second
    served: list[tuple[float, str, int]] = field(default_factory=list)  # (at, variant, invocations)
    # Each move: (state before, decision, the evidence it was given)
    moves: list[tuple[RolloutState | None, plan.Decision, int | None]] = field(default_factory=list)

    def advance(self, seconds: float) -> None:
        """Time passes; the clients (if calling) are served by the variants in proportion to their shares."""
        if self.calling and self.endpoint.status in ("InService", "Updating"):
            for variant, share in {**self.endpoint.shares(), **self.endpoint.copied()}.items():
                count = int(self.rate * seconds * share)
                if count:
                    self.served.append((self.now + seconds / 2, variant, count))
        self.now += seconds

    def invocations(self, variant: str, since: float) -> int:
        return sum(n for at, v, n in self.served if v == variant and since <= at < self.now)

    def approve(self, version: int) -> None:
        self.approved[version] = release(version)
        self.rejected.pop(version, None)

    def reject(self, version: int) -> None:
        self.approved.pop(version, None)

    @property
    def target(self) -> Release | None:
        return self.approved[max(self.approved)] if self.approved else None

    def decide(self) -> plan.Decision:
        firing: tuple[str, ...] = ()
        if self.state and self.state.candidate and self.state.phase in (plan.Phase.CANARY, plan.Phase.SHADOW):
            firing = tuple(sorted(a for a in self.firing if a.startswith(self.state.candidate.variant)))
        return plan.decide(
            self.state,
            self.endpoint.view(),
            self.target,
            firing,
            self.policy,
            self.now,
            endpoint=ENDPOINT,
            group=GROUP,
            deploy=self.deploy,
            invocations=self.evidence(),
            live_approved=self.live_approved(),
            baseline=self.baseline(),
        )

    def images(self, version: int) -> tuple[str, ...]:
        repository = "999999999999.dkr.ecr.us-east-1.amazonaws.com/other" if version in self.foreign else ALLOWED[0]
        return (f"{repository}:{version}",)

    def baseline(self) -> Release | None:
        """On a first deployment (nothing recorded, no endpoint), the newest Approved version below the target, as
        the service reads it (see `Rollouts._baseline`)."""
        target = self.target
        if self.state is not None or self.endpoint.view() is not None or target is None:
            return None
        below = max((v for v in self.approved if v < target.version), default=None)
        if below is None:
            return None
        return plan.first_baseline(target, self.approved[below], self.images(below), ALLOWED)

    def live_approved(self) -> bool | None:
        """Whether the live version is Approved, where the service reads it (see `Rollouts._live_approved`)."""
        state, target = self.state, self.target
        if state is None or state.stable is None or target is None:
            return None
        testing = state.phase in (plan.Phase.CANARY, plan.Phase.SHADOW) and target == state.candidate
        if not testing and self.endpoint.view() is not None:
            return None
        return state.stable.version in self.approved

    def evidence(self) -> int | None:
        state = self.state
        if state is None or state.candidate is None or state.phase not in (plan.Phase.CANARY, plan.Phase.SHADOW):
            return None
        return self.invocations(state.candidate.variant, state.step_started_at)

    def reconcile(self) -> plan.Decision:
        evidence = self.evidence()
        decision = self.decide()
        self.moves.append((self.state, decision, evidence))
        self.notes.append(decision.note)
        for action in decision.actions:
            self.apply(action, decision.state)
        self.state = decision.state
        return decision

    def apply(self, action: plan.Action, state: RolloutState | None) -> None:
        self.actions.append(action)
        ep = self.endpoint
        match action:
            case plan.CreateEndpoint(release=r):
                ep.create({r.variant: 1.0}, self.now)
            case plan.ApplyVariants(variants=variants, deregister=deregister, shadow=shadow):
                for name in deregister:
                    ep.autoscaled.discard(name)
                ep.update(
                    {r.variant: share for r, share in variants}, self.now, shadows={r.variant: w for r, w in shadow}
                )
            case plan.NativeUpdate(release=r, deregister=deregister):
                for name in deregister:
                    ep.autoscaled.discard(name)
                ep.update({r.variant: 1.0}, self.now, native=True)
            case plan.SetWeights(weights=weights):
                ep.set_weights(dict(weights), self.now)
            case plan.RegisterAutoscaling(variant=v):
                if v not in ep.variants:
                    raise Refused(f"cannot register autoscaling for missing variant {v}")
                ep.autoscaled.add(v)
            case plan.RejectInRegistry(release=r, description=d):
                self.approved.pop(r.version, None)
                self.rejected[r.version] = d
            case plan.WithdrawApprovals(newer_than=low, older_than=high):
                for version in [v for v in self.approved if low < v < high]:
                    del self.approved[version]
            case plan.DeleteEndpoint():
                ep.status, ep.variants, ep.pending, ep.autoscaled = None, {}, None, set()
                ep.failure_reason = ""
            case plan.Notify(subject=subject):
                self.notifications.append(subject)
            case _:
                pass

    def settle(self) -> bool:
        return self.endpoint.settle(self.now)

    def v2_under_test(self) -> None:
        """v1 approved and live, then v2 approved and its test (canary or shadow) started."""
        self.approve(1)
        self.run()
        self.approve(2)
        self.reconcile()
        self.settle()

    def tick(self, seconds: float = 60) -> plan.Decision:
        """Time passes, then one reconcile (its SageMaker changes applied)."""
        self.advance(seconds)
        decision = self.reconcile()
        self.settle()
        return decision

    def run(self, max_moves: int = 50, step_seconds: float | None = None) -> None:
        """Reconcile and let SageMaker finish, advancing time by the bake, until nothing moves."""
        advance = self.policy.bake_seconds if step_seconds is None else step_seconds
        for _ in range(max_moves):
            decision = self.reconcile()
            if self.settle():
                continue
            if decision.is_wait:
                if self.state and self.state.phase in (plan.Phase.CANARY, plan.Phase.SHADOW) and not self.state.paused:
                    self.advance(advance)
                    continue
                return
        raise AssertionError(f"no fixed point after {max_moves} moves: {self.notes[-5:]}")
