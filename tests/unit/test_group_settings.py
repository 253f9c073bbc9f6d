"""Group settings taken as written or refused, and the retirement of a renamed endpoint: pure decisions."""

from __future__ import annotations

import pytest

from sagepilot.domain.deployment import AlarmThresholds, Autoscaling, Deployment, InvalidGroupSettings, resolve
from sagepilot.domain.ownership import Step, refusal, retire
from sagepilot.domain.rollout import EndpointView, Phase, Release, RolloutPolicy, RolloutState, Strategy, VariantView

DEFAULTS = Deployment(
    enabled=True,
    endpoint="",
    rollout=RolloutPolicy(Strategy.AB, (10, 50, 100), 600),
    instance_type="ml.m5.large",
    instance_count=1,
    autoscaling=Autoscaling(1, 10, 1000.0, 300, 60),
    alarms=AlarmThresholds(5, 2000, 60, 10),
)


def settings(**tags: str) -> Deployment:
    return resolve(DEFAULTS, "sp", "churn", {f"sagepilot:{k}": v for k, v in tags.items()})


@pytest.mark.parametrize(
    ("tags", "message"),
    [
        ({"instance-count": "1000"}, r"sagepilot:instance-count must be between 1 and 10 .*got 1000"),
        ({"instance-count": "1", "autoscaling-min": "2"}, r"sagepilot:instance-count must be between 2 and 10"),
        ({"canary-steps": "10,,100"}, r"sagepilot:canary-steps must be .* got '10,,100' \(a step is empty\)"),
        ({"canary-steps": "10,50,100,"}, r"sagepilot:canary-steps"),
        ({"canary-steps": ",100"}, r"sagepilot:canary-steps"),
        ({"endpoint-name": "sp-Churn"}, r"sagepilot:endpoint-name must be lowercase, got 'sp-Churn'"),
    ],
)
def test_a_value_that_would_have_been_changed_is_refused_naming_the_tag_and_the_range(
    tags: dict[str, str], message: str
) -> None:
    with pytest.raises(InvalidGroupSettings, match=message):
        settings(**tags)


def test_values_within_range_are_taken_as_written() -> None:
    assert settings(**{"instance-count": "10"}).instance_count == 10
    assert settings(**{"canary-steps": " 25, 100 "}).rollout.steps == (25, 100)
    # Without the tag, the stack's default count is brought into the group's own autoscaling range.
    assert settings(**{"autoscaling-min": "3"}).instance_count == 3


def _state(endpoint: str = "sp-churn", phase: Phase = Phase.STABLE, version: int = 1) -> RolloutState:
    return RolloutState(endpoint, "churn", phase, Release(version, f"arn:model-package/churn/{version}"))


def _view(status: str = "InService") -> EndpointView:
    return EndpointView(status, "c", (VariantView("v1", 1.0, 1),))


def test_a_renamed_endpoint_keeps_serving_until_its_successor_serves_then_goes() -> None:
    old = _state()
    waiting = retire(old, _view(), "sp-new", None, 10.0)
    assert waiting.step is Step.WAIT and "keeps serving" in waiting.note
    assert retire(waiting.state, _view(), "sp-new", None, 20.0).state == waiting.state  # noted once
    creating = _state("sp-new", Phase.CREATING, 2)
    assert retire(old, _view(), "sp-new", creating, 10.0).step is Step.WAIT
    other_group = RolloutState("sp-new", "fraud", Phase.STABLE, Release(1, "arn"))
    assert retire(old, _view(), "sp-new", other_group, 10.0).step is Step.WAIT

    serving = _state("sp-new", Phase.STABLE, 2)
    deleting = retire(old, _view(), "sp-new", serving, 10.0)
    assert deleting.step is Step.DELETE and deleting.variants == ("v1",) and "serves v2" in deleting.note
    assert retire(old, _view("Deleting"), "sp-new", serving, 10.0).step is Step.WAIT
    assert retire(old, None, "sp-new", serving, 10.0).step is Step.FORGET


def test_the_refusal_names_the_owner_and_how_to_release_the_endpoint() -> None:
    what = refusal("sp-churn", "fraud", "churn")
    assert "belongs to model package group churn" in what and "sagepilot:endpoint-name" in what


def test_a_group_with_capitals_needs_a_lowercase_endpoint_name() -> None:
    """SageMaker endpoint names are case-insensitive: group "FF"'s default "sp-FF" would be the endpoint a group
    tagging "sp-ff" owns, under a second owner record (found trying it on the sandbox)."""
    with pytest.raises(InvalidGroupSettings, match=r"capitals.*'sp-FF'.*sagepilot:endpoint-name.*'sp-ff'"):
        resolve(DEFAULTS, "sp", "FF", {})
    assert resolve(DEFAULTS, "sp", "FF", {"sagepilot:endpoint-name": "sp-ff"}).endpoint == "sp-ff"


def test_a_rollout_under_way_keeps_the_valid_tags_and_the_defaults_for_the_invalid_ones_on_its_endpoint() -> None:
    from sagepilot.domain.deployment import resolve_under_way

    tags = {
        "sagepilot:canary-steps": "20,100",
        "sagepilot:bake-seconds": "-1",
        "sagepilot:endpoint-name": "sp-Other",
        "team": "ml",
    }
    deployment, left_out = resolve_under_way(DEFAULTS, "sp", "churn", tags, "sp-churn")
    assert left_out == ("sagepilot:bake-seconds", "sagepilot:endpoint-name")
    assert deployment.rollout.steps == (20, 100) and deployment.rollout.bake_seconds == 600
    assert deployment.endpoint == "sp-churn"  # where the rollout runs, whatever the tag says now
    with pytest.raises(InvalidGroupSettings):
        resolve_under_way(DEFAULTS, "sp", "FF", {}, "sp-ff")  # even the defaults do not resolve


# Unknown sagepilot: keys ------------------------------------------------------------------------------------
class _Reading(dict[str, str]):
    """Tags that remember every key `resolve` asks for (by get, [] or in)."""

    def __init__(self) -> None:
        super().__init__()
        self.asked: set[str] = set()

    def get(self, key: str, default: object = None) -> object:  # type: ignore[override]
        self.asked.add(key)
        return super().get(key, default)

    def __getitem__(self, key: str) -> str:
        self.asked.add(key)
        return super().__getitem__(key)

    def __contains__(self, key: object) -> bool:
        self.asked.add(str(key))
        return super().__contains__(key)


def test_the_known_keys_are_exactly_those_resolve_reads() -> None:
    from sagepilot.domain.deployment import GROUP_TAG_KEYS, TAG_PREFIX

    tags = _Reading()
    resolve(DEFAULTS, "sp", "churn", tags)
    assert tags.asked == {TAG_PREFIX + k for k in GROUP_TAG_KEYS}
    assert len(set(GROUP_TAG_KEYS)) == len(GROUP_TAG_KEYS)


def test_the_configuration_docs_list_every_known_key() -> None:
    from pathlib import Path

    from sagepilot.domain.deployment import GROUP_TAG_KEYS

    table = (Path(__file__).resolve().parents[2] / "docs" / "configuration.md").read_text()
    rows = [line for line in table.splitlines() if line.startswith("| `sagepilot:")]
    listed = " ".join(rows)
    # A row may list several keys, the later ones as `-max` or `scale-out-cooldown` after the first full name.
    missing = [k for k in GROUP_TAG_KEYS if f"`sagepilot:{k}`" not in listed and f"`{k}`" not in listed
               and f"`-{k.rsplit('-', 1)[-1]}`" not in listed]  # fmt: skip
    assert missing == []


def test_an_unknown_sagepilot_key_is_refused_naming_it_the_closest_key_and_the_known_ones() -> None:
    with pytest.raises(InvalidGroupSettings) as refused:
        settings(**{"bake-secs": "300"})
    message = str(refused.value)
    assert "tag sagepilot:bake-secs (did you mean sagepilot:bake-seconds?) is not a sagepilot setting" in message
    assert "sagepilot:alarm-5xx-threshold, sagepilot:alarm-latency-ms, sagepilot:analysis" in message
    assert "sagepilot:strategy" in message and "config/<group>/training.json" in message


def test_several_unknown_keys_are_named_together_and_one_far_from_any_key_gets_no_suggestion() -> None:
    with pytest.raises(InvalidGroupSettings) as refused:
        settings(**{"Instance-Type": "ml.m5.large", "owner": "ml-team"})
    message = str(refused.value)
    assert message.startswith(
        "tags sagepilot:Instance-Type (did you mean sagepilot:instance-type?), sagepilot:owner are not a sagepilot"
    )


def test_keys_of_other_prefixes_are_not_read() -> None:
    tags = {"team": "ml", "aws:cloudformation:stack-name": "x", "Sagepilot:bake-secs": "1", "sagepilot-bake": "1"}
    assert resolve(DEFAULTS, "sp", "churn", tags).rollout.bake_seconds == 600


def test_a_rollout_under_way_leaves_an_unknown_key_out_and_keeps_the_valid_ones() -> None:
    from sagepilot.domain.deployment import resolve_under_way

    tags = {"sagepilot:bake-secs": "30", "sagepilot:canary-steps": "20,100"}
    deployment, left_out = resolve_under_way(DEFAULTS, "sp", "churn", tags, "sp-churn")
    assert left_out == ("sagepilot:bake-secs",)
    assert deployment.rollout.steps == (20, 100) and deployment.rollout.bake_seconds == 600
