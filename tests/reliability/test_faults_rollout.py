"""AWS failing under the rollout path: the rollout still ends where the reference ends, or says why.

The same scenarios and drivers as the delivery suite, with errors injected at the HTTP layer into the
rollout's calls (SageMaker, Application Auto Scaling, CloudWatch, DynamoDB, SNS), so botocore's standard
retry mode runs; and the function invoked as Lambda invokes it asynchronously: a function error is retried
twice, one and then two minutes later, then the event goes to the on-failure destination. The schedule
keeps firing. While the faults last, after every step:

- the endpoint never serves a variant the recorded rollout does not know (intent is recorded first);
- autoscaling is never registered on a variant the endpoint no longer has.

Once they stop, time passes, and the endpoint, its autoscaling, alarms, configs and models, the recorded
rollout and the registry end exactly as in the reference run (notifications may be repeated by a response
that was lost after SNS published, and a quota refusal adds its QUOTA notice).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest
from functional.test_rollout import ENDPOINT
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import sagepilot_cli as cli

from .conftest import (
    TRANSPORT_FAULTS,
    WITHOUT_SHRINKING,
    Kill,
    inject_aws_error,
    inject_transport_fault,
    kill_on,
    record_calls,
)
from .test_delivery_rollout import SCENARIOS, Driver, reference

MAX_ATTEMPTS = 6
ASYNC_RETRY_DELAYS = (60, 120)  # Lambda's retries of an asynchronous invocation, in seconds
SETTINGS = settings(
    deadline=None,
    phases=WITHOUT_SHRINKING,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)
CALLS = [
    ("sagemaker", "CreateEndpoint"), ("sagemaker", "CreateEndpointConfig"), ("sagemaker", "CreateModel"),
    ("sagemaker", "UpdateEndpoint"), ("sagemaker", "UpdateEndpointWeightsAndCapacities"),
    ("sagemaker", "DescribeEndpoint"), ("sagemaker", "ListModelPackages"), ("sagemaker", "UpdateModelPackage"),
    ("sagemaker", "DeleteEndpointConfig"), ("sagemaker", "DeleteModel"),
    ("application-autoscaling", "RegisterScalableTarget"), ("application-autoscaling", "PutScalingPolicy"),
    ("application-autoscaling", "DeleteScalingPolicy"), ("application-autoscaling", "DeregisterScalableTarget"),
    ("cloudwatch", "PutMetricAlarm"), ("cloudwatch", "DeleteAlarms"), ("cloudwatch", "DescribeAlarms"),
    ("dynamodb", "UpdateItem"), ("dynamodb", "GetItem"), ("sns", "Publish"),
]  # fmt: skip
ERRORS = {
    "throttled": {
        "sagemaker": ("ThrottlingException", 400),
        "application-autoscaling": ("ThrottlingException", 400),
        "cloudwatch": ("Throttling", 400),
        "dynamodb": ("ThrottlingException", 400),
        "sns": ("Throttling", 400),
    },
    "unavailable": {
        "sagemaker": ("ServiceUnavailable", 503),
        "application-autoscaling": ("InternalServiceException", 500),
        "cloudwatch": ("ServiceUnavailable", 503),
        "dynamodb": ("InternalServerError", 500),
        "sns": ("InternalError", 500),
    },
}
BUSY = (
    "ValidationException",
    'Cannot update in-progress endpoint "arn:aws:sagemaker:us-east-1:123456789012:endpoint/x".',
)
RLE = ("ResourceLimitExceeded", "The account-level service limit 'ml.m5.large for endpoint usage' is 0 Instances")
SPECIFIC = {  # errors only some calls get
    "in progress": {("sagemaker", "UpdateEndpoint"), ("sagemaker", "UpdateEndpointWeightsAndCapacities")},
    "no capacity": {("sagemaker", "CreateEndpoint"), ("sagemaker", "UpdateEndpoint")},
}
KINDS = (*ERRORS, *TRANSPORT_FAULTS, *SPECIFIC)


def inject(clients: Any, call: tuple[str, str], kind: str, times: int | None) -> Any:
    service, operation = call
    client = clients(service)
    if kind in ERRORS:
        code, status = ERRORS[kind][service]
        return inject_aws_error(client, operation, code, "injected", status=status, times=times)
    if kind == "in progress":
        return inject_aws_error(client, operation, *BUSY, times=times)
    if kind == "no capacity":
        return inject_aws_error(client, operation, *RLE, times=times)
    return inject_transport_fault(client, operation, kind, times=times)


def applicable(fault: tuple[tuple[str, str], str, Any]) -> bool:
    """Every fault on every call, except SageMaker's own refusals on calls that never get them. (A lost response
    to the lease's write, or to an endpoint update whose retry SageMaker refuses as in progress, included: see
    test_a_lost_response_to_taking_the_lease_... and test_a_lost_response_to_an_endpoint_update_...)"""
    call, kind, _ = fault
    return kind not in SPECIFIC or call in SPECIFIC[kind]


@dataclass
class FaultyDriver(Driver):
    """The delivery suite's driver, with Lambda's asynchronous retries and the invariants under faults."""

    errors: list[str] = field(default_factory=list)
    on_failure: list[dict[str, Any]] = field(default_factory=list)
    redriven: int = 0
    kill: Kill | None = None
    refused: list[str] = field(default_factory=list)  # operator commands the CLI refused (see `operate`)

    def invoke(self, event: dict[str, Any]) -> None:
        for delay in (0, *ASYNC_RETRY_DELAYS):
            self.rollout.clock.advance(delay)
            try:
                self.rollout.handle(event)
                return
            except Exception as exc:
                self.errors.append(f"{event['detail-type']}: {type(exc).__name__}: {exc}")
                if self.kill:
                    self.kill.revive()
            finally:
                self.check()
        self.on_failure.append(event)

    def deliver(self, pending: Any) -> None:
        pending.delivered += 1
        pending.copies -= 1
        if pending.copies == 0:
            self.pool.remove(pending)
        self.invoke(pending.event)

    def schedule(self, seconds: float) -> None:
        self.rollout.serve(seconds)  # clients call the endpoint while time passes: the canary's evidence
        self.rollout.clock.advance(seconds)
        self.invoke(
            {"version": "0", "id": "tick", "detail-type": "Scheduled Event", "source": "aws.events",
             "account": "123456789012", "time": "2026-11-25T10:00:00Z", "region": "us-east-1",
             "resources": ["arn:aws:events:us-east-1:123456789012:rule/reconcile"], "detail": {}}
        )  # fmt: skip

    def operate(self, command: str) -> None:
        """A killed move can leave the endpoint unrecorded or its lease held when the operator acts: the CLI
        then refuses, saying so (and the operator's world takes another path). Refused only after a kill."""
        code = cli.main(["--table", self.rollout.store()._table, command, ENDPOINT])
        if code != 0:
            assert self.kill is not None and not self.kill.armed, ("operator", command, "refused without a kill")
            self.refused.append(command)

    def redrive(self) -> None:
        """An operator redrives the events Lambda gave up (waiting at the on-failure destination)."""
        given_up, self.on_failure = self.on_failure, []
        self.redriven += len(given_up)
        for event in given_up:
            self.invoke(event)

    def ready_for(self, what: tuple[str, ...]) -> bool:
        if what[0] == "alarm":
            name = f"{ENDPOINT}-{what[1]}-{what[2]}"
            return bool(self.rollout.clients("cloudwatch").describe_alarms(AlarmNames=[name])["MetricAlarms"])
        if what[0] == "operator":
            state = self.rollout.state()
            item = self.rollout.clients("dynamodb").get_item(
                TableName=self.rollout.store()._table, Key={"pk": {"S": f"endpoint#{ENDPOINT}"}}
            )["Item"]
            return state is not None and state.phase.value == "CANARY" and "leaseOwner" not in item
        return True

    def check(self) -> None:
        if self.kill and self.kill.dead:
            return
        super().check()
        live = self.variants()
        if live:
            state = self.rollout.state()
            assert state is not None, f"the endpoint serves {sorted(live)} but no rollout is recorded"
            known = {r.variant for r in (state.stable, state.candidate) if r}
            assert live <= known, f"the endpoint serves {sorted(live)}; the record knows {sorted(known)}"


def comparable(end: dict[str, Any]) -> dict[str, Any]:
    """The end state; notifications as a set (a crash or an error between sending one and recording that it
    was sent repeats it), without the QUOTA notices a capacity refusal adds. The announcements of a move whose
    intent is recorded first (ROLLOUT STARTED, ROLLING BACK, REVERTING) are recorded with it and sent once the
    move has gone through, whoever finishes it (test_a_move_announced_before_a_crash_...)."""
    found = dict(end)
    found["notifications"] = sorted({s for s, _ in end["notifications"] if not s.startswith("QUOTA")})
    return found


def where_it_ends(end: dict[str, Any]) -> dict[str, Any]:
    """What must not depend on the path taken: the endpoint, its autoscaling and alarms, its configs and models
    (their names are recorded before they are created: see test_models_and_configs_created_by_an_interrupted_...),
    the recorded rollout and the registry."""
    keep = ("status", "shares", "autoscaled", "alarms", "configs", "models", "phase", "stable", "candidate",
            "incidents", "paused", "registry")  # fmt: skip
    return {k: end[k] for k in keep}


def announced_as_the_reference(got: dict[str, Any], expected: dict[str, Any]) -> None:
    """The same announcements as the in-order run, but for two paths a held-up first deployment opens:

    - the first approval held up (beyond its retries, or killed with its lease held) until newer ones had
      arrived and the schedule repaired it: the endpoint is created with the baseline, the newest Approved
      version below the target, which then gets its canary against it. With two approvals that is the
      reference's path (v1 DEPLOYED, v2's canary); with three (v1 held up until v3 is approved), v2 is the
      baseline and v1 never deployed: DEPLOYED of v2, then exactly the reference's announcements of v3;
    - the first deployment going through late (its CreateEndpoint refused for capacity while newer
      approvals arrived): an intermediate version superseded before the endpoint was in service never gets
      a canary, so the reference's announcements about it (ROLLOUT STARTED, ROLLING BACK, ROLLED BACK) are
      missing, and exactly those: every version that did reach the endpoint is announced as in the reference.
    """
    notes, expected_notes = comparable(got)["notifications"], comparable(expected)["notifications"]
    if notes[:1] != expected_notes[:1]:
        (live,) = got["shares"]
        baseline = f"v{int(live[1:]) - 1}"
        target_notes = [n for n in expected_notes if n.rsplit(" ", 1)[1] == live]
        assert len(expected_notes) > len(target_notes) + 1, (notes, expected_notes)  # a version was skipped
        assert notes == sorted([f"DEPLOYED: sagepilot-churn {baseline}", *target_notes]), (notes, expected_notes)
        return
    reached = {note.rsplit(" ", 1)[1] for note in notes}
    skipped = {note.rsplit(" ", 1)[1] for note in expected_notes} - reached
    deployed = {n.rsplit(" ", 1)[1] for n in expected_notes if n.startswith("DEPLOYED")}
    (live,) = got["shares"]
    assert not skipped & (deployed | {live}), (notes, expected_notes)
    assert notes == [n for n in expected_notes if n.rsplit(" ", 1)[1] not in skipped], (notes, expected_notes)


def consistent(end: dict[str, Any]) -> None:
    """An endpoint at rest, whatever happened on the way: one variant, the recorded one, autoscaled, with its
    alarms, and nothing left of the configs and models of earlier moves."""
    assert end["status"] == "InService" and end["phase"] == "STABLE" and end["candidate"] is None, end
    live = f"v{end['stable']}"
    assert set(end["shares"]) == {live}, end
    assert [rid.rsplit("/", 1)[1] for rid, _, _ in end["autoscaled"]] == [live], end
    assert end["alarms"] == [f"{ENDPOINT}-{live}-{k}" for k in ("5xx", "latency", "low-traffic")], end
    assert len(end["configs"]) == 1 and len(end["models"]) == 1, end


# Ticks a stimulus waits for what it needs: SageMaker refusing CreateEndpoint for capacity 36 times (the most
# drawn below) takes 36 ticks of the schedule before the endpoint, and the canary's alarms, exist.
PATIENCE_TICKS = 48


def run_scenario(driver: FaultyDriver, name: str) -> None:
    """The scenario's stimuli, each once what it needs is there (the alarm exists, the canary runs and no
    handler holds the endpoint's lease, for an operator's command): time passes meanwhile."""
    for what in SCENARIOS[name]:
        for _ in range(PATIENCE_TICKS):
            if driver.ready_for(what):
                break
            driver.schedule(120)
            driver.flush()
            driver.redrive()
        driver.stimulus(what)
        driver.flush()


# ---------------------------------------------------------------------------------------- retried by botocore
@pytest.mark.usefixtures("no_retry_delay")
@settings(SETTINGS, max_examples=6)
@given(
    name=st.sampled_from(["canary then promotion", "alarm rolls the canary back", "the live version is rejected"]),
    faults=st.lists(
        st.tuples(st.sampled_from(CALLS), st.sampled_from((*ERRORS, *TRANSPORT_FAULTS)), st.integers(1, 5)).filter(
            applicable
        ),
        min_size=1,
        max_size=4,
        unique_by=lambda f: f[0],
    ),
)
def test_errors_that_botocore_retries_change_nothing(fresh_world: Any, name: str, faults: list[Any]) -> None:
    expected = reference(fresh_world, name)
    with fresh_world() as w:
        driver = FaultyDriver.of(w)
        calls = record_calls(w.clients)
        injected = [(f, inject(w.clients, *f)) for f in faults]
        run_scenario(driver, name)
        driver.settle()
        for fault in injected:
            fault[1].stop()
        assert driver.errors == [], driver.errors
        for (call, kind, times), fault in injected:
            if fault.injected:  # a call the scenario makes
                assert fault.injected == times, f"{call} {kind}: {fault.injected} of {times}"
                assert fault.calls == len(calls.operations(call[1])) + times, f"{call} {kind}: not retried once each"
        got = driver.end_state()
    lost_publish = any(call == ("sns", "Publish") and kind == "response-lost" for call, kind, _ in faults)
    assert (comparable(got) if lost_publish else got) == (comparable(expected) if lost_publish else expected)


# ---------------------------------------------------------------------------------------- beyond the retries
@pytest.mark.usefixtures("no_retry_delay")
@settings(SETTINGS, max_examples=8)
@given(
    name=st.sampled_from(
        ["canary then promotion", "alarm rolls the canary back", "a newer approval supersedes the canary"]
    ),
    faults=st.lists(
        st.tuples(st.sampled_from(CALLS), st.sampled_from(KINDS), st.sampled_from([6, 12, 24, 36])).filter(applicable),
        min_size=1,
        max_size=3,
        unique_by=lambda f: f[0],
    ),
)
# Found by hypothesis: v1's CreateEndpoint refused for capacity until v2 and v3 are approved; v2 never gets a canary.
@example(name="a newer approval supersedes the canary", faults=[(("sagemaker", "CreateEndpoint"), "no capacity", 12)])
# Found by hypothesis: the canary's alarm exists only after 24 refusals and two read timeouts (PATIENCE_TICKS).
@example(
    name="alarm rolls the canary back",
    faults=[(("sagemaker", "DeleteModel"), "unavailable", 12), (("dynamodb", "GetItem"), "read-timeout", 12),
            (("sagemaker", "CreateEndpoint"), "no capacity", 24)],
)  # fmt: skip
def test_errors_beyond_the_retries_are_repaired_by_the_schedule(fresh_world: Any, name: str, faults: list[Any]) -> None:
    """Errors lasting beyond botocore's retries (for one call or several invocations), including SageMaker
    refusing an update of an endpoint that is busy and refusing for lack of quota: the function fails or
    waits, Lambda retries, the schedule repairs, and the end is the reference's."""
    expected = reference(fresh_world, name)
    with fresh_world() as w:
        driver = FaultyDriver.of(w)
        injected = [inject(w.clients, *f) for f in faults]
        run_scenario(driver, name)
        for _ in range(4):  # the faults wear off while the schedule keeps firing
            driver.schedule(60)
            driver.flush()
        for fault in injected:
            fault.stop()
        driver.settle()
        # Events Lambda gave up wait at the function's on-failure destination; an operator redrives them.
        driver.redrive()
        driver.settle()
        got = driver.end_state()
    consistent(got)
    if driver.redriven:
        # What followed may have taken another path (an event given up and redriven long after the fact), but
        # never to a half-done endpoint. (A first approval given up no longer makes the next one deploy directly:
        # the next one deploys the baseline first, as in the reference.)
        return
    assert where_it_ends(got) == where_it_ends(expected), driver.errors
    announced_as_the_reference(got, expected)


# ---------------------------------------------------------------------------------------- killed half-way
KILLS = [
    ("sagemaker", "CreateEndpointConfig"), ("sagemaker", "UpdateEndpoint"),
    ("sagemaker", "UpdateEndpointWeightsAndCapacities"), ("application-autoscaling", "RegisterScalableTarget"),
    ("application-autoscaling", "DeregisterScalableTarget"), ("application-autoscaling", "DeleteScalingPolicy"),
    ("cloudwatch", "PutMetricAlarm"), ("cloudwatch", "DeleteAlarms"), ("sagemaker", "UpdateModelPackage"),
    ("sagemaker", "DeleteEndpointConfig"), ("sns", "Publish"), ("dynamodb", "UpdateItem"),
]  # fmt: skip


@settings(SETTINGS, max_examples=6)
@given(
    name=st.sampled_from(["canary then promotion", "alarm rolls the canary back", "operator rolls back"]),
    kill=st.tuples(st.sampled_from(KILLS), st.integers(2, 8)),
)
# Killed at the first approval's first save: nothing is deployed until the lease has expired, and by then v2
# is approved too: v1 is deployed first as the baseline and v2 gets its canary, as in the reference.
@example(name="canary then promotion", kill=(("dynamodb", "UpdateItem"), 2))
# Killed at the first approval's first save: the operator's rollback comes before anything is recorded and is
# refused (found by hypothesis).
@example(name="operator rolls back", kill=(("dynamodb", "UpdateItem"), 2))
# Found by hypothesis: killed at the first approval's first save; when the lease expires v1 and v2 are both
# Approved. v1 is deployed first as the baseline and v2, the bad one, gets its canary against it: its alarm rolls
# it back, as in the reference (once deployed directly, v2 served all traffic alone when its alarm fired).
@example(name="alarm rolls the canary back", kill=(("dynamodb", "UpdateItem"), 2))
def test_a_function_killed_half_way_is_repaired(fresh_world: Any, name: str, kill: Any) -> None:
    """The function is killed at some call of the scenario (it never releases its lease, and nothing else it
    would send reaches AWS): the triggers that follow find the lease taken until it expires, then the
    schedule repairs what was half done, and the end is the reference's."""
    expected = reference(fresh_world, name)
    (service, operation), nth = kill
    with fresh_world() as w:
        driver = FaultyDriver.of(w)
        driver.kill = kill_on(w.clients, service, operation, nth=nth)
        run_scenario(driver, name)
        driver.settle()
        got = driver.end_state()
    consistent(got)
    if driver.refused:
        # The operator's command came while the killed first move had recorded nothing (or still held the
        # lease): refused, so the operator's world took another path; consistent all the same.
        return
    assert where_it_ends(got) == where_it_ends(expected), driver.errors
    announced_as_the_reference(got, expected)


def test_a_move_announced_before_a_crash_is_announced_once_repaired(fresh_world: Any) -> None:
    """The canary's intent is recorded with its announcement; the function dies at its UpdateEndpoint; the
    schedule, once the lease has expired, adds the candidate and sends the announcement, once."""
    with fresh_world() as w:
        driver = FaultyDriver.of(w)
        driver.kill = kill_on(w.clients, "sagemaker", "UpdateEndpoint", nth=1)  # the canary's first update
        run_scenario(driver, "canary then promotion")
        driver.settle()
        subjects = dict(driver.end_state()["notifications"])
        assert subjects.get("ROLLOUT STARTED: sagepilot-churn v2") == 1, subjects


@pytest.mark.usefixtures("no_retry_delay")
def test_a_lost_response_to_an_endpoint_update_loses_nothing(fresh_world: Any) -> None:
    """SageMaker accepts the canary's UpdateEndpoint, the response is lost, botocore's retry is refused as in
    progress: DescribeEndpoint shows our config pending, so the update counts as done (and its config was
    recorded before it was created)."""
    with fresh_world() as w:
        driver = FaultyDriver.of(w)
        fault = inject_transport_fault(w.clients("sagemaker"), "UpdateEndpoint", "response-lost")
        run_scenario(driver, "canary then promotion")
        driver.settle()
        end = driver.end_state()
        assert fault.injected == 1 and end["shares"] == {"v2": 1.0}
        # Done at once: the update is not taken for another handler's (nor waited for as one).
        assert not any("being updated" in o.note for o in driver.rollout.outcomes), driver.rollout.outcomes
        assert len(end["configs"]) == 1, end["configs"]
        assert dict(end["notifications"]).get("ROLLOUT STARTED: sagepilot-churn v2") == 1, end["notifications"]


@pytest.mark.usefixtures("no_retry_delay")
@pytest.mark.parametrize("interruption", ["killed", "UpdateEndpoint failing"])
def test_models_and_configs_created_by_an_interrupted_move_are_cleaned_up(fresh_world: Any, interruption: str) -> None:
    """The names of a move's models and config are recorded with its intent, before they are created: the
    rollback's CleanUp deletes them whatever became of the move."""
    with fresh_world() as w:
        driver = FaultyDriver.of(w)
        if interruption == "killed":
            driver.kill = kill_on(w.clients, "sagemaker", "CreateEndpointConfig", nth=2)  # after the v2 model
        else:
            inject(w.clients, ("sagemaker", "UpdateEndpoint"), "unavailable", MAX_ATTEMPTS * 3)
        run_scenario(driver, "alarm rolls the canary back")
        driver.settle()
        end = driver.end_state()
        assert end["shares"] == {"v1": 1.0}
        assert len(end["configs"]) == 1 and [m for m in end["models"] if "-v2-" in m] == [], end


def test_a_first_approval_killed_before_its_record_is_still_deployed(fresh_world: Any) -> None:
    """The registry trigger records its group with the lease: the item is listed, and once the dead handler's
    lease has expired the schedule deploys the newest approved version."""
    with fresh_world() as w:
        driver = FaultyDriver.of(w)
        driver.kill = kill_on(w.clients, "sagemaker", "DescribeEndpoint", nth=1)  # the first reconcile's read
        run_scenario(driver, "canary then promotion")
        driver.settle()
        assert driver.variants() == {"v2"}


@pytest.mark.usefixtures("no_retry_delay")
def test_a_lost_response_to_taking_the_lease_does_not_drop_the_trigger(fresh_world: Any) -> None:
    """The lease is taken per invocation (a fresh owner) and the refusal of the retried write returns the item
    (ALL_OLD): the lease it shows is ours, so the handler goes on."""
    with fresh_world() as w:
        driver = FaultyDriver.of(w)
        fault = inject_transport_fault(
            w.clients("dynamodb"), "UpdateItem", "response-lost", when=lambda request: b"leaseOwner" in request.body
        )
        driver.stimulus(("approve",))
        driver.flush()
        assert fault.injected == 1
        assert driver.variants() == {"v1"}, [o.result for o in driver.rollout.outcomes]


@pytest.mark.usefixtures("no_retry_delay")
def test_lost_responses_to_the_state_tables_writes_are_harmless(fresh_world: Any) -> None:
    """The state table's conditional writes (taking the lease, saving the rollout, letting go of the lease) are
    safe to retry when their response is lost after DynamoDB carried them out: every one of them loses its
    first response, botocore retries (a retry refused for the writer's own lease, or for a lease it already let
    go of, is recognised by the item returned with the refusal), no invocation fails, and the rollout ends as
    the reference's."""
    expected = reference(fresh_world, "canary then promotion")
    with fresh_world() as w:
        driver = FaultyDriver.of(w)
        fault = inject_transport_fault(
            w.clients("dynamodb"),
            "UpdateItem",
            "response-lost",
            times=None,
            # every first attempt of every write: taking the lease, saving, letting go
            when=lambda request: request.headers.get("amz-sdk-request", b"").split(b";")[0] == b"attempt=1",
        )
        run_scenario(driver, "canary then promotion")
        driver.settle()
        fault.stop()
        got = driver.end_state()
    assert fault.injected > 10
    assert driver.errors == []
    assert where_it_ends(got) == where_it_ends(expected)
    assert got["notifications"] == expected["notifications"]
