"""At-least-once delivery on the rollout path: the same endpoint whatever the delivery.

Each scenario is a list of things people and CloudWatch do (approve a version, reject one, an alarm going
to ALARM or back to OK, an operator's command). It is run twice in fresh embedded AWS accounts:

- the reference: each event the template's rules route to the rollout function is delivered once, in
  order, SageMaker finishes each endpoint change at once, and the next stimulus comes when all is quiet;
- as hypothesis draws it: every routed event (`Model Package State Change`, `Endpoint State Change`,
  `CloudWatch Alarm State Change`, the operator's `Rollout Command`, and the `Scheduled Event` fired at
  random moments) is delivered 1 to 5 times, in any order, late copies long after the fact, interleaved
  with SageMaker finishing endpoint changes whenever hypothesis says so.

Then time passes (the schedule fires after each bake time, clients calling the endpoint meanwhile, which is
the evidence a canary step needs) until nothing moves, and the two end states
must be the same: the endpoint's variants and weights, autoscaling, alarms, configs and models, the
recorded rollout, the registry, and the notifications (so: one rollout per approval, one DEPLOYED, one
PROMOTED...). Along the way the endpoint must go through the same shapes (so no variant is removed twice
and none comes back), and autoscaling is never registered on a variant the endpoint no longer has.
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from functional.test_rollout import BAKE, ENDPOINT, GROUP, Rollout
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import sagepilot_cli as cli
from sagepilot import wiring
from sagepilot.settings import load_rollout_settings
from sagepilot_sandbox import faithful

from .conftest import ROLLOUT, WITHOUT_SHRINKING, FakeClock, World

Stimulus = tuple[str, ...]
SCENARIOS: dict[str, list[Stimulus]] = {
    "canary then promotion": [("approve",), ("approve",)],
    "alarm rolls the canary back": [("approve",), ("approve",), ("alarm", "v2", "5xx", "ALARM")],
    "operator promotes": [("approve",), ("approve",), ("operator", "promote")],
    "operator rolls back": [("approve",), ("approve",), ("operator", "rollback")],
    "operator pauses and resumes": [("approve",), ("approve",), ("operator", "pause"), ("operator", "resume")],
    "a newer approval supersedes the canary": [("approve",), ("approve",), ("approve",)],
    "the candidate is rejected": [("approve",), ("approve",), ("reject", "2")],
    "the live version is rejected": [("approve",), ("approve",), ("operator", "promote"), ("reject", "2")],
    "an incident opens and closes": [("approve",), ("alarm", "v1", "5xx", "ALARM"), ("alarm", "v1", "5xx", "OK")],
    # One endpoint, one owner: another group's versions, whatever their delivery, never reach it.
    "a second group names the endpoint": [("approve",), ("approve_other",), ("approve",), ("approve_other",)],
}
OTHER = "fraud"  # a group whose sagepilot:endpoint-name tag names GROUP's endpoint


@dataclass
class Pending:
    event: dict[str, Any]
    copies: int
    delivered: int = 0

    def __repr__(self) -> str:
        detail = self.event.get("detail", {})
        what = (
            detail.get("ModelApprovalStatus")
            or detail.get("EndpointStatus")
            or detail.get("state", {}).get("value")
            or detail.get("command")
        )
        name = detail.get("ModelPackageVersion") or detail.get("alarmName") or ""
        return f"<{self.event['detail-type']} {name} {what}, {self.copies} more>"


@dataclass
class Driver:
    world: World
    rollout: Rollout
    packages: list[str] = field(default_factory=list)
    shapes: list[frozenset[str]] = field(default_factory=list)
    pool: list[Pending] = field(default_factory=list)

    @classmethod
    def of(cls, world: World) -> Driver:
        """The rollout service wired on the product's clients; the test looks through other clients."""
        clock = FakeClock()
        settings = load_rollout_settings(world.stack.functions[ROLLOUT].environment)
        assert world.observer is not None
        return cls(world, Rollout(wiring.rollouts(settings, world.clients, clock), world.stack, world.observer, clock))

    # The outside world ----------------------------------------------------------------------------
    def stimulus(self, what: Stimulus) -> None:
        r = self.rollout
        if what[0] == "approve":
            self.packages.append(r.register())
        elif what[0] == "approve_other":
            if not r.sm.list_model_package_groups(NameContains=OTHER)["ModelPackageGroupSummaryList"]:
                r.sm.create_model_package_group(
                    ModelPackageGroupName=OTHER, Tags=[{"Key": "sagepilot:endpoint-name", "Value": ENDPOINT}]
                )
            r.sm.create_model_package(
                ModelPackageGroupName=OTHER,
                ModelApprovalStatus="Approved",
                InferenceSpecification={
                    "Containers": [{"Image": "123456789012.dkr.ecr.us-east-1.amazonaws.com/fraud:1",
                                    "ModelDataUrl": "s3://m/fraud.tar.gz"}],
                    "SupportedContentTypes": ["text/csv"],
                    "SupportedResponseMIMETypes": ["text/csv"],
                },
            )  # fmt: skip
        elif what[0] == "reject":
            r.set_status(self.packages[int(what[1]) - 1], "Rejected")
        elif what[0] == "alarm":
            _, variant, kind, value = what
            r.clients("cloudwatch").set_alarm_state(
                AlarmName=f"{ENDPOINT}-{variant}-{kind}", StateValue=value, StateReason=f"test: {value}"
            )
        else:
            self.operate(what[1])

    def operate(self, command: str) -> None:
        """The operator's command through the real CLI; in an undisturbed world it is always taken."""
        assert cli.main(["--table", self.rollout.store()._table, command, ENDPOINT]) == 0, ("operator", command)

    def receive(self, copies: Callable[[], int]) -> None:
        for event in self.rollout._received():
            self.pool.append(Pending(event, copies()))

    def deliver(self, pending: Pending) -> None:
        pending.delivered += 1
        pending.copies -= 1
        if pending.copies == 0:
            self.pool.remove(pending)
        self.rollout.handle(pending.event)
        self.check()

    def sagemaker_finishes(self) -> bool:
        event = faithful.complete_endpoint_transition(ENDPOINT)
        if event is None:
            return False
        faithful.deliver_event(event)
        self.check()
        return True

    def busy(self) -> bool:
        return faithful.pending_endpoint_transition(ENDPOINT) is not None

    def schedule(self, seconds: float) -> None:
        self.rollout.serve(seconds)  # clients call the endpoint while time passes: the canary's evidence
        self.rollout.clock.advance(seconds)
        self.rollout.handle(
            {"version": "0", "id": "tick", "detail-type": "Scheduled Event", "source": "aws.events",
             "account": "123456789012", "time": "2026-11-25T10:00:00Z", "region": "us-east-1",
             "resources": ["arn:aws:events:us-east-1:123456789012:rule/reconcile"], "detail": {}}
        )  # fmt: skip
        self.check()

    # What must hold at every step -----------------------------------------------------------------
    def variants(self) -> frozenset[str]:
        try:
            endpoint = self.rollout.endpoint()
        except self.rollout.sm.exceptions.ClientError:
            return frozenset()
        return frozenset(v["VariantName"] for v in endpoint.get("ProductionVariants") or ())

    def check(self) -> None:
        self.only_the_owners_versions_serve()
        live = self.variants()
        if live and (not self.shapes or self.shapes[-1] != live):
            self.shapes.append(live)
        stray = self.rollout.scaled_variants() - live
        assert not stray, f"autoscaling registered on {sorted(stray)}, which the endpoint does not have ({live})"

    def only_the_owners_versions_serve(self) -> None:
        """The endpoint only ever serves versions of its owner group (the group that deployed it first)."""
        sm = self.rollout.sm
        try:
            config = sm.describe_endpoint(EndpointName=ENDPOINT)["EndpointConfigName"]
        except sm.exceptions.ClientError:
            return
        for variant in sm.describe_endpoint_config(EndpointConfigName=config)["ProductionVariants"]:
            package = sm.describe_model(ModelName=variant["ModelName"])["PrimaryContainer"]["ModelPackageName"]
            assert f":model-package/{GROUP}/" in package, f"{ENDPOINT} serves {package}, not a version of {GROUP}"

    # Runs -----------------------------------------------------------------------------------------
    def settle(self) -> None:
        """Time passes until nothing moves: the schedule after each bake, SageMaker finishing changes. Three
        quiet bakes in a row: past STABLE_CHECK_SECONDS (900), so a stable endpoint is looked at again too."""
        quiet = 0
        for _ in range(15):
            before = self.snapshot_key()
            self.schedule(BAKE)
            self.flush()
            quiet = quiet + 1 if self.snapshot_key() == before else 0
            if quiet == 3:
                return
        raise AssertionError("the rollout did not settle")

    def flush(self) -> None:
        """Every routed event once, SageMaker finishing every change, until quiet (the reference's way)."""
        for _ in range(50):
            self.receive(lambda: 1)
            if self.pool:
                self.deliver(self.pool[0])
            elif not self.sagemaker_finishes():
                return
        raise AssertionError("the rollout did not quiet down")

    def snapshot_key(self) -> Any:
        state = self.rollout.state()
        return (state.phase, state.step, state.stable, state.candidate) if state else None

    def end_state(self) -> dict[str, Any]:
        r = self.rollout
        sm = r.sm
        endpoint = r.endpoint()
        state = r.state()
        targets = r.clients("application-autoscaling").describe_scalable_targets(ServiceNamespace="sagemaker")
        packages = sm.list_model_packages(ModelPackageGroupName=GROUP)["ModelPackageSummaryList"]
        return {
            "status": endpoint["EndpointStatus"],
            "shares": r.shares(),
            "autoscaled": sorted(
                (t["ResourceId"], t["MinCapacity"], t["MaxCapacity"]) for t in targets["ScalableTargets"]
            ),
            "alarms": [a for a in r.alarms() if a.startswith(ENDPOINT)],
            "configs": sorted(c["EndpointConfigName"] for c in sm.list_endpoint_configs()["EndpointConfigs"]),
            "models": sorted(m["ModelName"] for m in sm.list_models()["Models"]),
            "phase": state.phase.value,
            "stable": state.stable.version if state.stable else None,
            "candidate": state.candidate.version if state.candidate else None,
            "incidents": state.incidents,
            "paused": state.paused,
            "registry": sorted((p["ModelPackageVersion"], p["ModelApprovalStatus"]) for p in packages),
            "notifications": sorted(Counter(n["subject"] for n in self.world.notifications.drain()).items()),
            "shapes": [sorted(s) for s in self.shapes],
        }


def reference_run(driver: Driver, scenario: list[Stimulus]) -> dict[str, Any]:
    for what in scenario:
        driver.stimulus(what)
        driver.flush()
    driver.settle()
    return driver.end_state()


def shuffled_run(driver: Driver, scenario: list[Stimulus], data: st.DataObject) -> dict[str, Any]:
    def copies() -> int:
        return data.draw(st.integers(1, 5), label="copies of this event")

    for what in scenario:
        driver.stimulus(what)
        # Random moves until every event routed so far was delivered at least once and SageMaker is done.
        for _ in itertools.count():
            driver.receive(copies)
            fresh = [p for p in driver.pool if p.delivered == 0]
            if not fresh and not driver.busy():
                break
            actions: list[tuple[str, Any]] = [(f"deliver {p!r}", p) for p in driver.pool]
            if driver.busy():
                actions.append(("SageMaker finishes the endpoint's change", None))
            actions.append(("the schedule fires", None))
            label, chosen = actions[
                data.draw(st.integers(0, len(actions) - 1), label=" | ".join(a for a, _ in actions))
            ]
            if chosen is not None:
                driver.deliver(chosen)
            elif label.startswith("SageMaker"):
                driver.sagemaker_finishes()
            else:
                driver.schedule(data.draw(st.sampled_from([0, 10, 30]), label="seconds since the last tick"))
    # The late copies, in any order, while SageMaker and the schedule go on.
    while driver.pool:
        pending = driver.pool[data.draw(st.integers(0, len(driver.pool) - 1), label=f"late one of {driver.pool}")]
        driver.deliver(pending)
        driver.receive(copies)
        while driver.sagemaker_finishes():
            driver.receive(copies)
    driver.settle()
    return driver.end_state()


_REFERENCES: dict[str, dict[str, Any]] = {}


def reference(fresh_world: Any, name: str) -> dict[str, Any]:
    if name not in _REFERENCES:
        with fresh_world() as w:
            _REFERENCES[name] = reference_run(Driver.of(w), SCENARIOS[name])
    return _REFERENCES[name]


EXPECTED = {
    # scenario: (live shares, registry, the endpoint's shapes)
    "canary then promotion": ({"v2": 1.0}, [(1, "Approved"), (2, "Approved")], [["v1"], ["v1", "v2"], ["v2"]]),
    "alarm rolls the canary back": (
        {"v1": 1.0}, [(1, "Approved"), (2, "Rejected")], [["v1"], ["v1", "v2"], ["v1"]],
    ),
    "operator promotes": ({"v2": 1.0}, [(1, "Approved"), (2, "Approved")], [["v1"], ["v1", "v2"], ["v2"]]),
    "operator rolls back": ({"v1": 1.0}, [(1, "Approved"), (2, "Rejected")], [["v1"], ["v1", "v2"], ["v1"]]),
    "operator pauses and resumes": (
        {"v2": 1.0}, [(1, "Approved"), (2, "Approved")], [["v1"], ["v1", "v2"], ["v2"]],
    ),
    "a newer approval supersedes the canary": (
        {"v3": 1.0},
        [(1, "Approved"), (2, "Approved"), (3, "Approved")],
        [["v1"], ["v1", "v2"], ["v1"], ["v1", "v3"], ["v3"]],
    ),
    "the candidate is rejected": ({"v1": 1.0}, [(1, "Approved"), (2, "Rejected")], [["v1"], ["v1", "v2"], ["v1"]]),
    "the live version is rejected": (
        {"v1": 1.0}, [(1, "Approved"), (2, "Rejected")], [["v1"], ["v1", "v2"], ["v2"], ["v1"]],
    ),
    "an incident opens and closes": ({"v1": 1.0}, [(1, "Approved")], [["v1"]]),
    "a second group names the endpoint": (
        {"v2": 1.0}, [(1, "Approved"), (2, "Approved")], [["v1"], ["v1", "v2"], ["v2"]],
    ),
}  # fmt: skip


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_the_reference_runs_are_what_the_readme_promises(fresh_world: Any, name: str) -> None:
    expected = reference(fresh_world, name)
    shares, registry, shapes = EXPECTED[name]
    assert (expected["shares"], expected["registry"], expected["shapes"]) == (shares, registry, shapes)
    live = sorted(shares)
    assert expected["status"] == "InService" and expected["phase"] == "STABLE" and expected["candidate"] is None
    assert [rid.rsplit("/", 1)[1] for rid, _, _ in expected["autoscaled"]] == live
    assert expected["alarms"] == [f"{ENDPOINT}-{v}-{k}" for v in live for k in ("5xx", "latency", "low-traffic")]
    assert len(expected["configs"]) == 1 and len(expected["models"]) == 1
    assert expected["incidents"] == ()
    notes = dict(expected["notifications"])
    assert notes[f"DEPLOYED: {ENDPOINT} v1"] == 1
    refusals = notes.pop(f"INVALID SETTINGS: model package group {OTHER}", 0)
    assert refusals == sum(what == ("approve_other",) for what in SCENARIOS[name])  # one per version refused
    assert all(n == 1 for n in notes.values()), notes


@settings(
    max_examples=10,
    deadline=None,
    phases=WITHOUT_SHRINKING,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(name=st.sampled_from(list(SCENARIOS)), data=st.data())
def test_any_delivery_ends_like_the_reference(fresh_world: Any, name: str, data: st.DataObject) -> None:
    expected = reference(fresh_world, name)
    with fresh_world() as w:
        got = shuffled_run(Driver.of(w), SCENARIOS[name], data)
    assert got == expected


@settings(
    max_examples=5,
    deadline=None,
    phases=WITHOUT_SHRINKING,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(data=st.data())
def test_a_second_group_naming_the_endpoint_never_reaches_it_whatever_the_delivery(
    fresh_world: Any, data: st.DataObject
) -> None:
    """The stimulus of `test_any_delivery_ends_like_the_reference`, drawn every time; `Driver.check` asserts
    after every move that the endpoint serves only versions of its owner group."""
    name = "a second group names the endpoint"
    expected = reference(fresh_world, name)
    with fresh_world() as w:
        got = shuffled_run(Driver.of(w), SCENARIOS[name], data)
    assert got == expected
