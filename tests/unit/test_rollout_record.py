"""The rollout record as the state table holds it: what a move records before its calls survives the round
trip, and records written before those fields existed still read."""

from __future__ import annotations

import json

from sagepilot.adapters.rollout_state import from_json, to_json
from sagepilot.domain.rollout import HistoryEntry, Phase, Release, RolloutState

V1 = Release(1, "arn:aws:sagemaker:us-east-1:123456789012:model-package/churn/1")
V2 = Release(2, "arn:aws:sagemaker:us-east-1:123456789012:model-package/churn/2")


def test_a_recorded_intent_survives_the_round_trip() -> None:
    state = RolloutState(
        endpoint="sagepilot-churn",
        group="churn",
        phase=Phase.CANARY,
        stable=V1,
        candidate=V2,
        configs=("sagepilot-churn-c1", "sagepilot-churn-c2"),
        models=("sagepilot-churn-v1-a", "sagepilot-churn-v2-b"),
        steps=(10, 50, 100),
        live_rejected=True,
        announcements=(("ROLLOUT STARTED: sagepilot-churn v2", json.dumps({"candidate": 2})),),
        history=(HistoryEntry(1.0, "v2 approved"),),
    )
    assert from_json(to_json(state)) == state


def test_a_record_from_before_announcements_reads_with_none_pending() -> None:
    state = RolloutState(endpoint="sagepilot-churn", group="churn", phase=Phase.STABLE, stable=V1)
    doc = json.loads(to_json(state))
    del doc["announcements"]
    assert from_json(json.dumps(doc)) == state
    assert from_json(json.dumps(doc)).announcements == ()
