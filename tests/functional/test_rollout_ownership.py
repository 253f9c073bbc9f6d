"""One endpoint, one owner; group settings taken as written or refused (issue 15, points 1 and 8).

Through the template's own rules, as `test_rollout` drives the rollout service: registry events routed
by the RolloutFunction's rules, endpoint transitions finished by the sandbox's SageMaker, the schedule as
a `Scheduled Event`. Several groups and endpoints here, so the pump settles every endpoint.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from moto.sagemaker.models import sagemaker_backends

import sagepilot_cli as cli
from sagepilot.domain.rollout import Phase
from sagepilot_sandbox import faithful
from sagepilot_sandbox.stack.provision import Stack

from .conftest import ACCOUNT, REGION, FakeClock, Notifications
from .test_rollout import Rollout, make_rollout

OWNER, OTHER = "churn", "fraud"
ENDPOINT = "sagepilot-churn"
RENAMED = "sagepilot-churn-b"


class Groups(Rollout):
    """`Rollout` for several groups and endpoints."""

    def pump(self, *, settle: bool = True, rounds: int = 30) -> None:
        for _ in range(rounds):
            events = self._received()
            for event in events:
                self.handle(event)
            settled: list[dict[str, Any]] = []
            if settle:
                for endpoint in self.sm.list_endpoints()["Endpoints"]:
                    settled += faithful.settle_endpoint(endpoint["EndpointName"])
            for event in settled:
                faithful.deliver_event(event)
            if not events and not settled:
                return
        raise AssertionError("the rollout did not settle")

    def approve(self, group: str, tags: dict[str, str] | None = None) -> str:
        """A new Approved version of `group` (created with `tags` if it does not exist yet)."""
        groups = self.sm.list_model_package_groups()["ModelPackageGroupSummaryList"]
        if not any(g["ModelPackageGroupName"] == group for g in groups):
            self.sm.create_model_package_group(
                ModelPackageGroupName=group, Tags=[{"Key": k, "Value": v} for k, v in (tags or {}).items()]
            )
        return str(
            self.sm.create_model_package(
                ModelPackageGroupName=group,
                ModelApprovalStatus="Approved",
                InferenceSpecification={
                    "Containers": [
                        {
                            "Image": f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/{group}:1",
                            "ModelDataUrl": "s3://m/m.tar.gz",
                        }
                    ],
                    "SupportedContentTypes": ["text/csv"],
                    "SupportedResponseMIMETypes": ["text/csv"],
                },
            )["ModelPackageArn"]
        )

    def tag(self, group: str, **tags: str) -> None:
        arn = self.sm.describe_model_package_group(ModelPackageGroupName=group)["ModelPackageGroupArn"]
        self.sm.add_tags(ResourceArn=arn, Tags=[{"Key": f"sagepilot:{k}", "Value": v} for k, v in tags.items()])

    def serving(self, endpoint: str) -> set[str]:
        """The model package ARNs behind the endpoint's live variants."""
        config = self.sm.describe_endpoint(EndpointName=endpoint)["EndpointConfigName"]
        variants = self.sm.describe_endpoint_config(EndpointConfigName=config)["ProductionVariants"]
        models = [self.sm.describe_model(ModelName=v["ModelName"]) for v in variants]
        return {str(m["PrimaryContainer"]["ModelPackageName"]) for m in models}

    def endpoints(self) -> set[str]:
        return {e["EndpointName"] for e in self.sm.list_endpoints()["Endpoints"]}


@pytest.fixture
def groups(stack: Stack, clients: Callable[[str], Any], clock: FakeClock) -> Groups:
    plain = make_rollout(stack, clients, clock)
    return Groups(plain.service, stack, clients, clock)


def _subjects(notifications: Notifications) -> list[str]:
    return [n["subject"] for n in notifications.drain()]


# ------------------------------------------------------------------------------------ one endpoint, one owner
def test_a_second_group_naming_an_owned_endpoint_is_refused_and_nothing_of_the_owners_moves(
    groups: Groups, notifications: Notifications
) -> None:
    owner_v1 = groups.approve(OWNER)
    groups.pump()
    assert _subjects(notifications) == [f"DEPLOYED: {ENDPOINT} v1"]
    config = groups.sm.describe_endpoint(EndpointName=ENDPOINT)["EndpointConfigName"]

    groups.approve(OTHER, {"sagepilot:endpoint-name": ENDPOINT})
    groups.pump()
    [note] = notifications.drain()
    assert note["subject"] == f"INVALID SETTINGS: model package group {OTHER}"
    assert note["message"]["owner"] == OWNER and f"belongs to model package group {OWNER}" in note["message"]["what"]
    assert groups.sm.describe_endpoint(EndpointName=ENDPOINT)["EndpointConfigName"] == config
    assert groups.serving(ENDPOINT) == {owner_v1}
    state = groups.store().read(ENDPOINT)
    assert state.group == OWNER and state.phase is Phase.STABLE and state.candidate is None
    assert (
        state.history[-1].what
        == f"refused group {OTHER} (v1 approved): it names {ENDPOINT}, which belongs to group {OWNER}"
    )
    # The same event again (at-least-once delivery) is refused again, silently: reported once.
    for event in [e for e in groups.delivered if e["detail"].get("ModelPackageGroupName") == OTHER]:
        assert groups.handle(event)[0].result == "invalid"
    assert notifications.drain() == []

    # It stays refused: a newer version of the other group, and the schedule, change nothing either.
    groups.approve(OTHER)
    groups.tick()
    assert [n["subject"] for n in notifications.drain()] == [f"INVALID SETTINGS: model package group {OTHER}"]
    assert groups.serving(ENDPOINT) == {owner_v1}
    # The owner's own approvals still roll out.
    groups.approve(OWNER)
    groups.pump()
    assert groups.shares() == {"v1": 0.9, "v2": 0.1}


def test_of_two_groups_racing_for_one_endpoint_the_one_holding_it_wins(
    groups: Groups, notifications: Notifications
) -> None:
    # The owner's handler has taken the endpoint (its group recorded with the lease) and not saved yet.
    store = groups.store()
    lease = store.acquire(ENDPOINT, "owner-handler", groups.clock(), group=OWNER)
    assert lease.group == OWNER
    groups.approve(OTHER, {"sagepilot:endpoint-name": ENDPOINT})
    groups.pump()
    assert groups.endpoints() == set()
    assert [n["subject"] for n in notifications.drain()] == [f"INVALID SETTINGS: model package group {OTHER}"]
    # Taken again once the holder is gone (its lease expired), the record still names the first group.
    groups.clock.advance(3600)
    again = store.acquire(ENDPOINT, "other-handler", groups.clock(), group=OTHER)
    assert again.group == OWNER


def test_renaming_the_endpoint_moves_the_group_and_retires_the_old_endpoint(
    groups: Groups, notifications: Notifications
) -> None:
    v1 = groups.approve(OWNER)
    groups.pump()
    notifications.drain()
    old_models = {m["ModelName"] for m in groups.sm.list_models()["Models"]}
    # The rename, and an approval right after it (within the tag cache's minute): it goes to the new name, a first
    # deployment there: created with v1 (the baseline, the Approved version below v2), then v2's canary beside it.
    groups.tag(OWNER, **{"endpoint-name": RENAMED})
    v2 = groups.approve(OWNER)
    groups.pump()
    assert groups.serving(RENAMED) == {v1, v2}
    assert groups.shares() == {"v1": 1.0}  # the old endpoint is not rolled out to
    subjects = _subjects(notifications)
    assert f"DEPLOYED: {RENAMED} v1" in subjects and f"ROLLOUT STARTED: {RENAMED} v2" in subjects
    assert groups.store().read(ENDPOINT).group == OWNER  # not retired by the approval itself

    groups.tick(60)  # the schedule looks at a renamed group's old endpoint on every pass
    groups.tick(60)
    assert groups.endpoints() == {RENAMED}
    assert groups.store().read(ENDPOINT) is None
    assert groups.store().group_of(ENDPOINT) is None
    assert f"RETIRED: {ENDPOINT}" in _subjects(notifications)
    assert not [a for a in groups.alarms() if a.startswith(f"{ENDPOINT}-v")]
    assert groups.scaled_variants() == set()  # (ENDPOINT's scalable targets)
    assert not old_models & {m["ModelName"] for m in groups.sm.list_models()["Models"]}
    configs = {c["EndpointConfigName"] for c in groups.sm.list_endpoint_configs()["EndpointConfigs"]}
    assert all(c.startswith(RENAMED) for c in configs)

    # Released: another group may now have the old name.
    other_v1 = groups.approve(OTHER, {"sagepilot:endpoint-name": ENDPOINT})
    groups.pump()
    assert groups.serving(ENDPOINT) == {other_v1}
    assert groups.store().read(ENDPOINT).group == OTHER


def test_a_rename_during_a_canary_lets_the_canary_finish_before_retiring(groups: Groups) -> None:
    groups.approve(OWNER)
    groups.pump()
    groups.approve(OWNER)
    groups.pump()
    assert groups.shares() == {"v1": 0.9, "v2": 0.1}
    groups.tag(OWNER, **{"endpoint-name": RENAMED})
    groups.tick(600)  # the old endpoint's canary goes on by its own rules (alarms still guard it)
    assert groups.shares() == {"v1": 0.5, "v2": 0.5}
    groups.tick(600)
    groups.tick(600)
    assert groups.shares() == {"v2": 1.0}
    assert RENAMED not in groups.endpoints()  # nothing new approved: nothing deployed to the new name yet
    assert groups.store().read(ENDPOINT).phase is Phase.STABLE


def test_a_deleted_group_whose_endpoint_is_deleted_releases_it(groups: Groups, notifications: Notifications) -> None:
    arn = groups.approve(OWNER)
    groups.pump()
    # The group and its versions deleted (moto has no DeleteModelPackage(Group): gone from its backend, so
    # that SageMaker's answers are those for a deleted group), and the endpoint deleted by a person.
    backend = sagemaker_backends[ACCOUNT][REGION]
    backend.model_packages.pop(arn)
    backend.model_package_groups.pop(OWNER)
    groups.sm.delete_endpoint(EndpointName=ENDPOINT)
    groups.pump()
    notifications.drain()
    groups.tick(3600)
    assert groups.store().group_of(ENDPOINT) is None
    assert f"RELEASED: {ENDPOINT}" in _subjects(notifications)
    other_v1 = groups.approve(OTHER, {"sagepilot:endpoint-name": ENDPOINT})
    groups.pump()
    assert groups.serving(ENDPOINT) == {other_v1}


# ------------------------------------------------------------------------ settings taken as written or refused
@pytest.mark.parametrize(
    ("tags", "named", "allowed"),
    [
        ({"sagepilot:instance-count": "1000"}, "sagepilot:instance-count", "between 1 and 10"),
        ({"sagepilot:canary-steps": "10,,100"}, "sagepilot:canary-steps", "like '10,50,100'"),
        ({"sagepilot:canary-steps": "10,50,100,"}, "sagepilot:canary-steps", "like '10,50,100'"),
    ],
)
def test_a_tag_value_that_would_be_changed_is_refused(
    groups: Groups, notifications: Notifications, tags: dict[str, str], named: str, allowed: str
) -> None:
    groups.approve(OWNER, tags)
    groups.pump()
    assert groups.endpoints() == set()
    [note] = notifications.drain()
    assert note["subject"] == f"INVALID SETTINGS: model package group {OWNER}"
    assert named in note["message"]["what"] and allowed in note["message"]["what"]


def test_a_group_named_control_does_not_confuse_status_or_alarms(
    groups: Groups, capsys: pytest.CaptureFixture[str]
) -> None:
    groups.approve("control")
    groups.approve("control-v1")  # endpoint sagepilot-control-v1: its alarms start "sagepilot-control-v1-"
    groups.pump()
    assert groups.endpoints() == {"sagepilot-control", "sagepilot-control-v1"}
    cw = groups.clients("cloudwatch")
    cw.set_alarm_state(AlarmName="sagepilot-control-v1-5xx", StateValue="ALARM", StateReason="12 errors")

    assert cli.main(["status"]) == 0
    status = capsys.readouterr().out.splitlines()
    assert status[0].startswith("control plane sagepilot: healthy, no alarm in ALARM (11 ")
    assert not [line for line in status if line.startswith("sagepilot-control-v1")]

    assert cli.main(["alarms", "sagepilot-control"]) == 0
    shown = [line.split()[0] for line in capsys.readouterr().out.splitlines()[1:]]
    assert shown == [f"sagepilot-control-v1-{kind}" for kind in ("5xx", "latency", "low-traffic")]
    assert cli.main(["alarms", "sagepilot-control-v1"]) == 0
    shown = [line.split()[0] for line in capsys.readouterr().out.splitlines()[1:]]
    assert shown == [f"sagepilot-control-v1-v1-{kind}" for kind in ("5xx", "latency", "low-traffic")]
