"""The rollout's state table and endpoint calls when a handler dies or a response is lost, under the embedded
AWS: the lease's marker of a registry trigger, recognising one's own lease and release, triggers about
endpoints the stack does not manage, SageMaker calls whose retry is refused as in progress, and a move's
names and announcements recorded with its intent."""

from __future__ import annotations

from typing import Any

import pytest

from sagepilot.adapters.endpoints import EndpointBusy, Endpoints
from sagepilot.adapters.rollout_state import LeaseBusy, LeaseLost, NotManaged
from sagepilot.domain.rollout import Phase

from .conftest import FakeClock, HandlerCrashed, Notifications, crash_on
from .test_rollout import ENDPOINT, GROUP, Rollout, deploy_v1, make_rollout

OTHER = "sagepilot-someone-else"


@pytest.fixture
def rollout(stack: Any, clients: Any, clock: FakeClock) -> Rollout:
    return make_rollout(stack, clients, clock)


def items(rollout: Rollout) -> dict[str, dict[str, Any]]:
    table = rollout.store()._table
    found = rollout.clients("dynamodb").scan(TableName=table)["Items"]
    return {i["pk"]["S"]: i for i in found if i["pk"]["S"].startswith("endpoint#")}


def test_a_registry_trigger_leaves_its_group_with_the_lease_until_something_is_recorded(rollout: Rollout) -> None:
    store, now = rollout.store(), rollout.clock()
    lease = store.acquire(ENDPOINT, "first", now, group=GROUP)
    assert lease.state is None and lease.group == GROUP
    assert store.survey() == ([], [(ENDPOINT, GROUP)])
    assert store.all() == []  # the operator's listing shows recorded rollouts only
    assert store.group_of(ENDPOINT) == GROUP
    # Dying (or failing) keeps the marker: the schedule comes back once the lease has expired.
    assert store.release(lease, now, force=True) is True
    assert store.survey()[1] == [(ENDPOINT, GROUP)]
    again = store.acquire(ENDPOINT, "second", now)
    assert again.group == GROUP
    # A clean finish with nothing recorded (no approved version, say) takes it away.
    assert store.release(again, now, forget=True) is True
    assert store.survey() == ([], [])
    assert store.group_of(ENDPOINT) is None


def test_forgetting_never_drops_a_recorded_rollout(rollout: Rollout) -> None:
    deploy_v1(rollout)
    store, now = rollout.store(), rollout.clock()
    lease = store.acquire(ENDPOINT, "someone", now, group=GROUP)
    assert lease.state is not None
    assert store.release(lease, now, forget=True) is True
    ((state, _),) = store.all()
    assert state.endpoint == ENDPOINT and state.phase is Phase.STABLE


def test_the_lease_taken_again_by_its_owner_is_its_own(rollout: Rollout) -> None:
    """What botocore's retry of a lease write whose response was lost amounts to."""
    deploy_v1(rollout)
    store, now = rollout.store(), rollout.clock()
    lease = store.acquire(ENDPOINT, "me", now)
    same = store.acquire(ENDPOINT, "me", now)
    assert same.owner == "me" and same.state == lease.state
    with pytest.raises(LeaseBusy):
        store.acquire(ENDPOINT, "another", now)
    assert store.release(same, now) is False  # "another" asked for a rerun
    assert store.release(same, now) is True


def test_letting_go_twice_is_letting_go(rollout: Rollout) -> None:
    """What botocore's retry of a release whose response was lost amounts to; a lease taken over meanwhile
    is still reported lost."""
    deploy_v1(rollout)
    store, now = rollout.store(), rollout.clock()
    lease = store.acquire(ENDPOINT, "me", now)
    assert store.release(lease, now) is True
    assert store.release(lease, now) is True
    mine = store.acquire(ENDPOINT, "me-again", now)
    theirs = store.acquire(ENDPOINT, "them", now + store._lease_seconds + 1)  # mine expired
    with pytest.raises(LeaseLost):
        store.release(mine, now + store._lease_seconds + 2)
    assert store.release(theirs, now + store._lease_seconds + 2) is True


def test_triggers_naming_no_group_write_nothing_about_unknown_endpoints(rollout: Rollout) -> None:
    deploy_v1(rollout)
    before = items(rollout)
    with pytest.raises(NotManaged):
        rollout.store().acquire(OTHER, "me", rollout.clock(), existing=True)
    assert rollout.service.on_endpoint_signal(OTHER).result == "ignored"
    assert rollout.service.on_alarm(OTHER, f"{OTHER}-v1-5xx").result == "ignored"
    assert items(rollout) == before
    # A managed endpoint still takes its lease (and lets go).
    assert rollout.service.on_endpoint_signal(ENDPOINT).result == "waiting"


def test_an_update_refused_as_in_progress_is_done_when_it_is_ours(rollout: Rollout) -> None:
    deploy_v1(rollout)
    rollout.register()
    rollout.pump(settle=False)  # the canary's UpdateEndpoint is under way
    described = rollout.endpoint()
    ours = described["PendingDeploymentSummary"]["EndpointConfigName"]
    endpoints = Endpoints(rollout.sm, "arn:aws:iam::123456789012:role/sagemaker")
    endpoints.update(ENDPOINT, ours)  # the retry of an accepted update: done
    with pytest.raises(EndpointBusy):
        endpoints.update(ENDPOINT, described["EndpointConfigName"])
    with pytest.raises(EndpointBusy):
        endpoints.set_weights(ENDPOINT, (("v1", 1.0),))  # busy with an update, not with these weights
    rollout.pump()
    endpoints.set_weights(ENDPOINT, (("v1", 0.5), ("v2", 0.5)))
    endpoints.set_weights(ENDPOINT, (("v1", 0.5), ("v2", 0.5)))  # the same change, still under way: done
    with pytest.raises(EndpointBusy):
        endpoints.set_weights(ENDPOINT, (("v1", 0.9), ("v2", 0.1)))
    with pytest.raises(EndpointBusy):
        endpoints.set_capacity(ENDPOINT, "v1", 3)


def test_a_move_killed_before_its_update_is_finished_and_announced_by_the_next(
    rollout: Rollout, notifications: Notifications
) -> None:
    deploy_v1(rollout)
    notifications.drain()
    models_before = {m["ModelName"] for m in rollout.sm.list_models()["Models"]}
    crash = crash_on(rollout.sm, "UpdateEndpoint")
    rollout.register()
    with pytest.raises(HandlerCrashed):
        rollout.pump()
    crash.stop()
    state = rollout.state()
    assert state.phase is Phase.CANARY
    # Recorded before the calls: the names of what the move creates, and what it announces.
    assert [s for s, _ in state.announcements] == [f"ROLLOUT STARTED: {ENDPOINT} v2"]
    created = {m["ModelName"] for m in rollout.sm.list_models()["Models"]} - models_before
    assert created and created <= set(state.models)
    assert {c["EndpointConfigName"] for c in rollout.sm.list_endpoint_configs()["EndpointConfigs"]} <= set(
        state.configs
    )
    assert notifications.drain() == []
    # The dead handler's lease expires; the schedule adds the candidate and announces the move, once.
    rollout.tick(rollout.store()._lease_seconds + 1)
    assert rollout.shares() == {"v1": 0.9, "v2": 0.1}
    assert [n["subject"] for n in notifications.drain()] == [f"ROLLOUT STARTED: {ENDPOINT} v2"]
    assert rollout.state().announcements == ()
    rollout.tick()
    assert [n["subject"] for n in notifications.drain()] == []
