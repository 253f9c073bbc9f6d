"""Who an endpoint belongs to, and how an endpoint its group no longer names is retired.

One endpoint, one owner: the model package group that first recorded a rollout on it (the `grp` of
the endpoint's item in the state table, written with the lease in one conditional write, so that of two
groups racing for one name exactly one wins). Another group naming that endpoint (its
`sagepilot:endpoint-name` tag, or a default name that collides) is refused with `INVALID SETTINGS` and
nothing of the owner's is touched, until the owner releases the endpoint:

- the owner renames its endpoint (its `sagepilot:endpoint-name` tag names another one): once the new
  endpoint serves a version of the group, the old one is retired (its alarms, autoscaling, endpoint,
  configs and models deleted) and its record forgotten; until then it keeps serving what it serves and
  starts no new rollout (a rollout already running on it finishes by its own rules first);
- the owner group is deleted and its endpoint is gone (deleted by a person): the record is forgotten;
- the owner never recorded a rollout there (a trigger that found nothing to deploy leaves nothing).

Pure decisions: the service reads the state, the endpoint and the successor's record and applies them.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from sagepilot.domain.rollout import BUSY_STATUSES, EndpointView, Phase, RolloutState

# A rollout running on a renamed endpoint finishes first (its alarms still guard it); only an endpoint at
# rest (STABLE, or FAILED: nothing to finish) is retired.
AT_REST = frozenset({Phase.STABLE, Phase.FAILED})
# The successor serves a version of the group once it is past its creation.
_SERVING = frozenset({Phase.STABLE, Phase.CANARY, Phase.PROMOTING, Phase.ROLLING_BACK, Phase.NATIVE, Phase.SHADOW})


def refusal(endpoint: str, group: str, owner: str) -> str:
    """What a group is told when it names an endpoint another group owns."""
    return (
        f"endpoint {endpoint} belongs to model package group {owner}; group {group} cannot deploy to it (one "
        f"endpoint, one owner). Give {group} another endpoint with the sagepilot:endpoint-name tag (starting with "
        f"the stack's prefix), or release {endpoint}: change {owner}'s sagepilot:endpoint-name tag to another "
        f"endpoint (the old one is retired once the new one serves), or delete {owner} and the endpoint."
    )


class Step(StrEnum):
    WAIT = "wait"  # the successor does not serve yet (or the endpoint is busy): keep serving as is
    DELETE = "delete"  # take the endpoint down: autoscaling, alarms, then DeleteEndpoint
    FORGET = "forget"  # the endpoint is gone: delete its configs and models, forget the record


@dataclass(frozen=True)
class Retirement:
    step: Step
    state: RolloutState
    note: str
    variants: tuple[str, ...] = ()  # DELETE: the variants whose autoscaling and alarms go first


def retire(
    state: RolloutState, view: EndpointView | None, successor: str, successor_state: RolloutState | None, now: float
) -> Retirement:
    """The next move for `state.endpoint`, whose owner now names `successor` instead (only called at rest)."""
    serving = (
        successor_state is not None
        and successor_state.group == state.group
        and successor_state.phase in _SERVING
        and successor_state.stable is not None
    )
    if not serving:
        what = (
            f"group {state.group} now deploys to {successor}; {state.endpoint} keeps serving what it serves (no new "
            f"rollout) until {successor} serves, then it is deleted"
        )
        return Retirement(Step.WAIT, _noted(state, what, now), what)
    assert successor_state is not None and successor_state.stable is not None
    if view is None:
        what = f"retired: group {state.group} now deploys to {successor}; {state.endpoint} deleted and forgotten"
        return Retirement(Step.FORGET, state.evolve(now, what), what)
    if view.status in BUSY_STATUSES:
        return Retirement(Step.WAIT, state, f"endpoint is {view.status}; retiring it once it is not")
    what = (
        f"retiring: group {state.group} now deploys to {successor}, which serves v{successor_state.stable.version}; "
        f"deleting {state.endpoint}"
    )
    variants = sorted(view.names | {r.variant for r in (state.stable, state.candidate) if r is not None})
    return Retirement(Step.DELETE, _noted(state, what, now), what, tuple(variants))


def _noted(state: RolloutState, what: str, now: float) -> RolloutState:
    """`state` with `what` in its history, once (a repeated wait does not fill the history)."""
    if state.history and state.history[-1].what == what:
        return state
    return state.evolve(now, what)
