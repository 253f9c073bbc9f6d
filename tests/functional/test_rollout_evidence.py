"""Issue 15, through the template's own rules: evidence before promotion, `sagepilot:deploy=false` on every
path (tags read for every decision), and a rolled-back version that does not bring back what it superseded.

Driven as in test_rollout.py: `Rollout.pump` delivers what the RolloutFunction's rules let through, `tick`
lets time pass on the fake clock while clients call the endpoint (`rollout.rate` invocations a second).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest

import sagepilot_cli as cli
from sagepilot_sandbox.cloudwatch import alarms
from sagepilot_sandbox.stack.provision import Stack

from .conftest import FakeClock, Notifications
from .test_canary_gate import serve
from .test_rollout import BAKE, ENDPOINT, GROUP, RATE, Rollout, alarm_only, deploy_v1, make_rollout

MAX_BAKE = 3600  # the template's MaxBakeSeconds default


@pytest.fixture
def rollout(stack: Stack, clients: Callable[[str], Any], clock: FakeClock) -> Rollout:
    return make_rollout(stack, clients, clock)


def tag_group(rollout: Rollout, **tags: str) -> None:
    arn = rollout.sm.describe_model_package_group(ModelPackageGroupName=GROUP)["ModelPackageGroupArn"]
    rollout.sm.add_tags(ResourceArn=arn, Tags=[{"Key": f"sagepilot:{k}", "Value": v} for k, v in tags.items()])


def subjects(notifications: Notifications) -> list[str]:
    return [str(n["subject"]) for n in notifications.drain()]


def history(rollout: Rollout) -> list[str]:
    return [h.what for h in rollout.state().history]


def status(rollout: Rollout, arn: str) -> str:
    return str(rollout.sm.describe_model_package(ModelPackageName=arn)["ModelApprovalStatus"])


# ------------------------------------------------------------------------------- 3. evidence before promotion
def test_a_candidate_nobody_calls_is_held_and_reported_never_promoted(
    rollout: Rollout, notifications: Notifications
) -> None:
    deploy_v1(rollout)
    rollout.rate = 0  # nobody calls the endpoint: no Invocations datapoint at all, so no alarm can fire either
    rollout.register()
    rollout.pump()
    assert rollout.shares() == {"v1": 0.9, "v2": 0.1}
    notifications.drain()
    for _ in range(2 * MAX_BAKE // BAKE):
        rollout.tick()
    assert rollout.shares() == {"v1": 0.9, "v2": 0.1}  # held at its first step: silence is no evidence
    assert rollout.state().starved
    assert subjects(notifications) == [f"NO TRAFFIC: {ENDPOINT} v2"]  # announced once
    assert sum("NO TRAFFIC" in h for h in history(rollout)) == 1
    # Traffic comes: the step has its evidence (its minimum, and enough for the canary gate to decide) and moves on.
    rollout.rate = RATE
    rollout.tick()
    assert rollout.shares() == {"v1": 0.5, "v2": 0.5}
    assert not rollout.state().starved


def test_each_step_needs_its_own_evidence(rollout: Rollout, notifications: Notifications) -> None:
    deploy_v1(rollout)
    rollout.register()
    rollout.pump()
    rollout.tick()
    assert rollout.shares() == {"v1": 0.5, "v2": 0.5}  # 600 s x 10/s x 10% = 600 invocations at 10%
    rollout.rate = 0  # what the candidate served at 10% does not count for 50%
    for _ in range(MAX_BAKE // BAKE + 1):
        rollout.tick()
    assert rollout.shares() == {"v1": 0.5, "v2": 0.5}
    assert f"NO TRAFFIC: {ENDPOINT} v2" in subjects(notifications)


def test_too_little_traffic_for_the_group_minimum_holds_the_last_step(
    rollout: Rollout, notifications: Notifications
) -> None:
    rollout.sm.create_model_package_group(
        ModelPackageGroupName=GROUP,
        Tags=[
            {"Key": "sagepilot:min-invocations", "Value": "100000"},
            {"Key": "sagepilot:max-bake-seconds", "Value": "1200"},
            {"Key": "sagepilot:canary-steps", "Value": "100"},
        ],
    )
    deploy_v1(rollout)
    rollout.register()
    rollout.pump()
    assert rollout.shares() == {"v1": 0.0, "v2": 1.0}
    notifications.drain()
    for _ in range(4):
        rollout.tick()  # 6000 invocations a tick, all v2's: 24,000 of the 100,000 the group asks for
    assert rollout.shares() == {"v1": 0.0, "v2": 1.0}  # not promoted: v1 stays ready to take the traffic back
    assert subjects(notifications) == [f"NO TRAFFIC: {ENDPOINT} v2"]


def test_the_minimum_is_counted_over_the_step_not_per_tick(rollout: Rollout, notifications: Notifications) -> None:
    rollout.sm.create_model_package_group(
        ModelPackageGroupName=GROUP,
        Tags=[
            {"Key": "sagepilot:min-invocations", "Value": "1000"},
            {"Key": "sagepilot:max-bake-seconds", "Value": "1200"},
        ],
    )
    deploy_v1(rollout)
    rollout.rate = 1  # 60 invocations of the candidate per 600-s tick at 10%
    rollout.register()
    rollout.pump()
    notifications.drain()
    rollout.tick()
    rollout.tick()
    assert rollout.shares() == {"v1": 0.9, "v2": 0.1}
    assert subjects(notifications) == [f"NO TRAFFIC: {ENDPOINT} v2"]  # 120 of 1000 after the 1200-s limit
    rollout.rate = 100
    rollout.tick()  # 6000 more at 10%: the step has its 1000
    assert rollout.shares() == {"v1": 0.5, "v2": 0.5}
    assert any("shifting to 50%" in h and "invocations" in h for h in history(rollout))


def test_a_minimum_of_zero_moves_on_after_the_bake_alone(rollout: Rollout) -> None:
    alarm_only(rollout, **{"min-invocations": "0"})  # alarm-only, and no minimum: the bake alone moves it on
    deploy_v1(rollout)
    rollout.rate = 0
    rollout.register()
    rollout.pump()
    for _ in range(3):
        rollout.tick()
    assert rollout.shares() == {"v2": 1.0}


def test_with_the_gate_on_by_default_a_minimum_of_zero_still_never_promotes_on_silence(
    rollout: Rollout, notifications: Notifications
) -> None:
    rollout.sm.create_model_package_group(
        ModelPackageGroupName=GROUP, Tags=[{"Key": "sagepilot:min-invocations", "Value": "0"}]
    )
    deploy_v1(rollout)
    rollout.rate = 0
    rollout.register()
    rollout.pump()
    notifications.drain()
    for _ in range(2 * MAX_BAKE // BAKE):
        rollout.tick()
    assert rollout.shares() == {"v1": 0.9, "v2": 0.1}  # the gate has nothing to compare: it never says not worse
    assert subjects(notifications) == [f"INCONCLUSIVE: {ENDPOINT} v2"]  # held at the longest bake, said once


def test_an_operator_may_still_promote_a_held_canary(rollout: Rollout, capsys: pytest.CaptureFixture[str]) -> None:
    deploy_v1(rollout)
    rollout.rate = 0
    rollout.register()
    rollout.pump()
    for _ in range(MAX_BAKE // BAKE + 1):
        rollout.tick()
    assert rollout.state().starved
    assert cli.main(["--table", rollout.store()._table, "promote", ENDPOINT]) == 0
    rollout.pump()
    assert rollout.shares() == {"v2": 1.0}


# ------------------------------------------------------------------------------- 2. deploy=false on every path
def _list_tags_calls(rollout: Rollout) -> list[str]:
    calls: list[str] = []
    rollout.sm.meta.events.register("before-call.sagemaker.ListTags", lambda **_: calls.append("ListTags"))
    return calls


def test_deploy_false_set_just_before_an_approval_is_seen(rollout: Rollout, notifications: Notifications) -> None:
    deploy_v1(rollout)
    tag_group(rollout, deploy="false")  # no time passes: a tag cache would still say true
    rollout.register()
    rollout.pump()
    assert rollout.shares() == {"v1": 1.0}
    assert rollout.state().phase.value == "STABLE"


def test_deploy_false_holds_the_scheduled_reconcile_too(rollout: Rollout, notifications: Notifications) -> None:
    deploy_v1(rollout)
    tag_group(rollout, deploy="false")
    rollout.register()
    rollout.pump()
    for _ in range(4):
        rollout.tick(1000)  # past STABLE_CHECK_SECONDS: the schedule reconciles the stable endpoint
    assert rollout.shares() == {"v1": 1.0}
    withheld = [h for h in history(rollout) if "sagepilot:deploy tag is false" in h]
    assert len(withheld) == 1 and "v2" in withheld[0]
    # Set back to true: the next decision rolls v2 out.
    tag_group(rollout, deploy="true")
    rollout.tick(1000)
    assert rollout.shares() == {"v1": 0.9, "v2": 0.1}


def test_deploy_false_during_a_canary_rolls_it_back_without_rejecting_it(
    rollout: Rollout, notifications: Notifications
) -> None:
    deploy_v1(rollout)
    v2 = rollout.register()
    rollout.pump()
    assert rollout.shares() == {"v1": 0.9, "v2": 0.1}
    tag_group(rollout, deploy="false")
    rollout.tick(60)  # the next decision (the schedule's) sees it
    assert rollout.shares() == {"v1": 1.0}
    assert status(rollout, v2) == "Approved"
    assert f"ROLLED BACK: {ENDPOINT} v2" in subjects(notifications)
    for _ in range(3):
        rollout.tick(1000)
    assert rollout.shares() == {"v1": 1.0}  # and nothing starts again while the flag is false


def test_deploy_false_creates_no_endpoint_on_any_path(rollout: Rollout) -> None:
    rollout.sm.create_model_package_group(
        ModelPackageGroupName=GROUP, Tags=[{"Key": "sagepilot:deploy", "Value": "false"}]
    )
    rollout.register()
    rollout.pump()
    # A registry trigger that recorded its group with the lease and died is what the schedule repairs.
    rollout.store().acquire(ENDPOINT, "died", rollout.clock(), group=GROUP)
    rollout.tick(1000)
    assert rollout.sm.list_endpoints()["Endpoints"] == []


def test_tags_are_read_once_per_trigger(rollout: Rollout) -> None:
    deploy_v1(rollout)
    calls = _list_tags_calls(rollout)
    rollout.register()
    rollout.pump(settle=False)  # the approval's one trigger
    assert len(calls) == 1
    calls.clear()
    before = len(rollout.delivered)
    rollout.pump()  # the endpoint's InService event
    rollout.tick()  # the schedule (one canary), then the InService event of the step it took
    triggers = len(rollout.delivered) - before
    assert triggers == 3 and len(calls) == triggers  # fresh for every decision, and no more


# ------------------------------------------------------------------------------- 7. rolled back stays back
def test_a_rolled_back_version_does_not_bring_back_the_one_it_superseded(
    rollout: Rollout, notifications: Notifications
) -> None:
    deploy_v1(rollout)
    v2 = rollout.register()
    rollout.pump()
    assert rollout.shares() == {"v1": 0.9, "v2": 0.1}
    v3 = rollout.register()  # supersedes v2's canary
    rollout.pump()
    assert rollout.shares() == {"v1": 0.9, "v3": 0.1}
    assert cli.main(["--table", rollout.store()._table, "rollback", ENDPOINT]) == 0
    rollout.pump()
    for _ in range(3):
        rollout.tick(1000)
    assert rollout.shares() == {"v1": 1.0}  # one rollback was enough: v2 did not start a canary by itself
    assert status(rollout, v3) == "Rejected"
    assert status(rollout, v2) == "PendingManualApproval"
    assert "approved again" in rollout.sm.describe_model_package(ModelPackageName=v2)["ApprovalDescription"]
    assert any("v2" in h and "PendingManualApproval" in h for h in history(rollout))
    # Approving v2 again is a person's decision: it rolls out.
    rollout.set_status(v2, "Approved")
    rollout.pump()
    assert rollout.shares() == {"v1": 0.9, "v2": 0.1}


def test_an_alarm_rollback_withdraws_the_superseded_versions_too(rollout: Rollout) -> None:
    deploy_v1(rollout)
    v2 = rollout.register()
    rollout.pump()
    rollout.register()
    rollout.pump()
    rollout.clients("cloudwatch").set_alarm_state(AlarmName=f"{ENDPOINT}-v3-5xx", StateValue="ALARM", StateReason="x")
    rollout.pump()
    rollout.tick(1000)
    assert rollout.shares() == {"v1": 1.0}
    assert status(rollout, v2) == "PendingManualApproval"


# ------------------------------------------------------------------------------- 9. a new endpoint is not idle
def _evaluate_idle_alarm(rollout: Rollout) -> str:
    """CloudWatch's evaluation of v1's low-traffic alarm at the fake clock's time (missing data breaching)."""
    name = f"{ENDPOINT}-v1-low-traffic"
    return alarms.evaluate_alarm(name, now=datetime.fromtimestamp(rollout.clock(), UTC))


def test_a_new_endpoint_is_not_scaled_in_before_it_could_have_served(
    rollout: Rollout, notifications: Notifications
) -> None:
    rollout.sm.create_model_package_group(
        ModelPackageGroupName=GROUP, Tags=[{"Key": "sagepilot:instance-count", "Value": "10"}]
    )
    deploy_v1(rollout)
    [variant] = rollout.endpoint()["ProductionVariants"]
    assert variant["CurrentInstanceCount"] == 10
    notifications.drain()
    # Its first evaluation looks back IdleMinutes (60) at minutes when v1 did not exist: ALARM at once.
    assert _evaluate_idle_alarm(rollout) == "ALARM"
    rollout.pump()
    [variant] = rollout.endpoint()["ProductionVariants"]
    assert variant["CurrentInstanceCount"] == 10  # not idle: it has not served for IdleMinutes yet
    assert subjects(notifications) == []
    name = f"{ENDPOINT}-v1-low-traffic"
    alarm = rollout.clients("cloudwatch").describe_alarms(AlarmNames=[name])["MetricAlarms"][0]
    assert alarm["StateValue"] == "INSUFFICIENT_DATA"  # to be judged again by CloudWatch
    # An hour in service with no invocation at all: that is idle.
    rollout.clock.advance(3600)
    assert _evaluate_idle_alarm(rollout) == "ALARM"
    rollout.pump()
    [variant] = rollout.endpoint()["ProductionVariants"]
    assert variant["CurrentInstanceCount"] == 1
    assert subjects(notifications) == [f"SCALED IN: {ENDPOINT} v1"]


def _new_endpoint_with_its_idle_alarm_firing(rollout: Rollout) -> str:
    rollout.sm.create_model_package_group(
        ModelPackageGroupName=GROUP, Tags=[{"Key": "sagepilot:instance-count", "Value": "10"}]
    )
    deploy_v1(rollout)
    assert _evaluate_idle_alarm(rollout) == "ALARM"
    return f"{ENDPOINT}-v1-low-traffic"


def _alarm_state(rollout: Rollout, name: str) -> str:
    return str(rollout.clients("cloudwatch").describe_alarms(AlarmNames=[name])["MetricAlarms"][0]["StateValue"])


def test_an_alarm_event_that_finds_the_lease_taken_is_judged_by_the_next_holder(rollout: Rollout) -> None:
    """Under Lambda's concurrency an alarm's event often comes while another handler holds the endpoint (the one
    that created the alarms, say). A rerun alone would not judge the alarm (it reads a canary's alarms only): the
    alarm is handed over with the lease, and whoever holds it next judges it, here a later endpoint event after
    the first holder let go without a rerun (as the operator's command does)."""
    name = _new_endpoint_with_its_idle_alarm_firing(rollout)
    store = rollout.store()
    holder = store.acquire(ENDPOINT, "someone-else", rollout.clock())
    outcome = rollout.service.on_alarm(ENDPOINT, name)
    assert outcome.result == "deferred" and name in outcome.note
    assert _alarm_state(rollout, name) == "ALARM"  # nobody judged it yet
    store.release(holder, rollout.clock(), force=True)
    rollout.service.on_endpoint_signal(ENDPOINT)
    assert _alarm_state(rollout, name) == "INSUFFICIENT_DATA"  # judged: not idle yet, to be evaluated again
    [variant] = rollout.endpoint()["ProductionVariants"]
    assert variant["CurrentInstanceCount"] == 10
    item = rollout.clients("dynamodb").get_item(
        TableName=store._table, Key={"pk": {"S": f"endpoint#{ENDPOINT}"}}, ConsistentRead=True
    )["Item"]
    assert "pendingAlarms" not in item and "leaseOwner" not in item  # judged, then let go


def test_an_alarm_event_that_comes_during_a_move_is_judged_by_the_moves_rerun(
    rollout: Rollout, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The holder is a reconcile of this function: the deferred alarm comes while it works, so its release finds
    the rerun flag, and the rerun judges the alarm handed to it."""
    name = _new_endpoint_with_its_idle_alarm_firing(rollout)
    store = rollout.service._store
    release = store.release
    deferred: list[str] = []

    def release_after_an_alarm_came(lease: Any, now: float, **kwargs: Any) -> bool:
        if not deferred:
            deferred.append(rollout.service.on_alarm(ENDPOINT, name).result)
        return release(lease, now, **kwargs)

    monkeypatch.setattr(store, "release", release_after_an_alarm_came)
    rollout.service.on_endpoint_signal(ENDPOINT)
    assert deferred == ["deferred"]
    assert _alarm_state(rollout, name) == "INSUFFICIENT_DATA"


def test_a_step_waiting_for_traffic_is_not_reported_late_before_it_is_held(
    stack: Stack, clients: Callable[[str], Any], clock: FakeClock, notifications: Notifications
) -> None:
    """RolloutOverdueSeconds (the rollout-stuck alarm, 10 minutes over) counts from the longest a step may wait
    for its evidence, not from its bake: nobody calling the canary is announced as NO TRAFFIC first, then, if it
    stays held, the rollout is late."""
    from sagepilot.metrics import MemoryRecorder

    metrics = MemoryRecorder()
    rollout = make_rollout(stack, clients, clock, metrics)
    deploy_v1(rollout)
    rollout.rate = 0
    rollout.register()
    rollout.pump()
    notifications.drain()
    late: list[float] = []
    while not rollout.state().starved:
        metrics.emitted.clear()
        rollout.tick()
        late += [value for name, value, _ in metrics.emitted if name == "RolloutOverdueSeconds"]
    assert late and max(late) == 0.0  # before this rule: "late" from the end of the bake on
    assert subjects(notifications) == [f"NO TRAFFIC: {ENDPOINT} v2"]
    for _ in range(3):
        rollout.tick()
    assert [value for name, value, _ in metrics.emitted if name == "RolloutOverdueSeconds"][-1] > 0  # held, late


def test_an_unknown_tag_set_under_a_canary_is_said_once_and_the_canary_goes_on_with_the_defaults(
    rollout: Rollout, notifications: Notifications
) -> None:
    alarm_only(rollout)
    deploy_v1(rollout)
    rollout.register()
    rollout.pump()
    notifications.drain()
    tag_group(rollout, **{"bake-secs": "60"})
    rollout.tick()
    rollout.tick()
    (line,) = [h for h in history(rollout) if h.startswith("INVALID SETTINGS")]
    assert "sagepilot:bake-secs" in line and "goes on with the stack's defaults" in line
    assert subjects(notifications) == [f"INVALID SETTINGS: model package group {GROUP}"]  # once, not per tick
    assert rollout.shares() == {"v1": 0.0, "v2": 1.0}  # two bakes of the default length: it moved on


def test_tags_made_invalid_under_a_canary_do_not_stop_its_rollback(
    rollout: Rollout, notifications: Notifications
) -> None:
    """A person sets an invalid tag while v2's canary runs (found by trying it: the rollout then ignored its
    alarms and `sagepilot rollback`, saying nothing). The rollout goes on with the stack's default for that tag,
    says INVALID SETTINGS once, and rolls back when v2's alarm fires; a version approved meanwhile waits for valid
    tags instead of being deployed on them."""
    alarm_only(rollout)
    deploy_v1(rollout)
    rollout.register()
    rollout.pump()
    assert rollout.shares() == {"v1": 0.9, "v2": 0.1}
    notifications.drain()
    tag_group(rollout, **{"bake-seconds": "-1"})
    rollout.tick()
    rollout.tick()
    (line,) = [h for h in history(rollout) if h.startswith("INVALID SETTINGS")]
    assert "sagepilot:bake-seconds" in line and "goes on with the stack's defaults" in line
    assert subjects(notifications) == [f"INVALID SETTINGS: model package group {GROUP}"]  # once, not per tick
    v3 = rollout.register()
    rollout.pump()
    assert rollout.state().candidate is not None and rollout.state().candidate.version == 2  # v3 waits
    rollout.clients("cloudwatch").set_alarm_state(AlarmName=f"{ENDPOINT}-v2-5xx", StateValue="ALARM", StateReason="5xx")
    rollout.pump()
    rollout.tick()
    assert rollout.shares() == {"v1": 1.0}
    assert any(h.startswith("rolled back to v1") for h in history(rollout)), history(rollout)
    assert status(rollout, v3) == "Approved"


# ------------------------------------------------------------------- alarm-only: the baked step's error rates compared
def test_with_analysis_off_a_candidate_refusing_what_the_live_version_serves_is_rolled_back_and_rejected(
    rollout: Rollout, notifications: Notifications
) -> None:
    """Found by a hostile-user session: v2 expecting 5 features where callers send 4 answers 400 to every request
    (ModelError, Invocation4XXErrors). Its alarms watch 5xx and latency, so with the gate off it was promoted on
    the bake; the baked step now compares both variants' error rates (4xx + 5xx)."""
    alarm_only(rollout, **{"error-margin": "0.01"})
    deploy_v1(rollout)
    rollout.rate = 0  # the test publishes the traffic itself (`serve`)
    arn = rollout.register()
    rollout.pump()
    notifications.drain()
    no_5xx, fast = {"v1": 0.0, "v2": 0.0}, {"v1": 0.0, "v2": 0.0}
    minutes = 0
    while rollout.shares() == {"v1": 0.9, "v2": 0.1} and minutes < 2 * BAKE // 60:
        serve(rollout, 60, errors=no_5xx, slow=fast, refused={"v2": 1.0})
        rollout.tick(60)
        minutes += 1
    assert minutes == BAKE // 60  # left its step when it had baked: not before (alarm-only), not promoted after
    rollout.pump()
    assert rollout.shares() == {"v1": 1.0}
    description = rollout.sm.describe_model_package(ModelPackageName=arn)["ApprovalDescription"]
    assert status(rollout, arn) == "Rejected"
    assert "error rates compared: v2 is worse than v1 on errors (4xx+5xx: v2 1200/1200 = 100.00%" in description
    assert "margin 1.00%" in description and "not the sequential test" in description
    assert any(h.startswith("rolling back: error rates compared") for h in history(rollout))
    assert f"ROLLING BACK: {ENDPOINT} v2" in subjects(notifications)


def test_with_analysis_off_callers_mistakes_on_both_variants_do_not_stop_the_canary(rollout: Rollout) -> None:
    alarm_only(rollout, **{"error-margin": "0.01"})
    deploy_v1(rollout)
    rollout.rate = 0
    rollout.register()
    rollout.pump()
    for _ in range(BAKE // 60):
        both = {"v1": 0.2, "v2": 0.2}  # a fifth of the callers send what no version accepts
        serve(rollout, 60, errors={"v1": 0.0, "v2": 0.0}, slow={"v1": 0.0, "v2": 0.0}, refused=both)
        rollout.tick(60)
    assert rollout.shares() == {"v1": 0.5, "v2": 0.5}  # moved on after its bake, as alarm-only does
