"""Which waiting transform job gets the instances that free up, and how big a job should be.

Pure policy (no I/O, no clock), used by services/jobs.py when SageMaker refuses jobs for lack of transform
instances (ResourceLimitExceeded) and they wait, READY, in the state table:

- **Oldest first within a group.** A group's jobs start in the order their work arrived (createdAt, then
  name), and a newly planned job does not try SageMaker while an older job of its group waits for capacity
  (it joins the queue behind it: `may_try_now`). A freed instance can never go to a group's newer work first.
- **Fair across groups.** Freed instances go round the groups that wait: the next job started is the head
  of the group served least lately (its jobs among the stack's most recent ones, running or finished: the
  latest one, services/jobs.py SERVED_WINDOW; plus those started earlier in this pass), ties to the group
  whose head has waited longest, then by name (`start_order`): in effect the oldest head of a group other than
  the one served last. A group that drops 100,000 files
  cannot take two turns in a row: with two groups waiting, one that dropped 10 files is at most one turn away;
  with more, work starts oldest first (a group's files wait at most as long as the oldest waiting work).
- **Sized to the capacity it gets.** A job's instance count follows its data (`target_mb_per_instance`),
  within `max_instance_count` and one instance per file (SageMaker spreads whole objects), and within the
  group's fair share of the instances when the quota is known (`job_instances`): a big backlog gets
  multi-instance jobs, a trickle small ones that fit at once.

Groups are told apart by the job name's group part (`<prefix>-<group>-<digest>`, `group_key`): names of very
long groups are truncated (domain/names.py), so two such groups may share a turn; that costs fairness
between them, never a job.
"""

from __future__ import annotations

import math
from collections import defaultdict, deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from sagepilot.domain.names import split_attempt


@dataclass(frozen=True)
class WaitingJob:
    name: str
    created_at: int  # when the job was planned: the age of the work it holds
    waiting_since: int = 0  # when SageMaker first refused it
    instances: int = 1  # what it asks for (1 when not known yet)

    @property
    def group(self) -> str:
        return group_key(self.name)


def group_key(job_name: str) -> str:
    """`<prefix>-<group>-<digest>[-r<n>]` -> `<prefix>-<group>`: the group part of a job's name."""
    return split_attempt(job_name)[0].rsplit("-", 1)[0]


def _age(job: WaitingJob) -> tuple[int, str]:
    return (job.created_at, job.name)


def start_order(waiting: Iterable[WaitingJob], running: Mapping[str, int] | None = None) -> list[WaitingJob]:
    """Every waiting job once, in the order to try them: each group's jobs oldest first, the groups taking
    turns, fewest instances held first (`running`: instances each group holds now, by `group_key`), then the
    longest-waiting head, then the group's name. Deterministic: the same jobs, the same order."""
    queues: dict[str, deque[WaitingJob]] = defaultdict(deque)
    for job in sorted(set(waiting), key=_age):
        queues[job.group].append(job)
    held = {group: (running or {}).get(group, 0) for group in queues}
    order: list[WaitingJob] = []
    while queues:
        group = min(queues, key=lambda g: (held[g], _age(queues[g][0]), g))
        job = queues[group].popleft()
        order.append(job)
        held[group] += max(1, job.instances)
        if not queues[group]:
            del queues[group]
    return order


def may_try_now(job_name: str, created_at: int, waiting: Iterable[WaitingJob]) -> bool:
    """Whether a job about to start may ask SageMaker now: not while an older job of its group waits for
    capacity (it would take instances before them; it waits behind them instead)."""
    group = group_key(job_name)
    return not any(w.group == group and _age(w) < (created_at, job_name) for w in waiting if w.name != job_name)


def job_instances(
    megabytes: float,
    files: int,
    *,
    target_mb_per_instance: int,
    max_instance_count: int,
    quota: int = 0,
    groups_waiting: int = 1,
) -> int:
    """Instances for a job: enough for its data, at most one per file and `max_instance_count`, and, when the
    transform-instance quota is known (`quota` > 0), at most the fair share of the groups that want instances
    (so one group's backlog cannot take every instance while others wait). Never less than 1."""
    wanted = math.ceil(max(0.0, megabytes) / max(1, target_mb_per_instance))
    ceiling = min(max_instance_count, max(1, files))
    if quota > 0:
        ceiling = min(ceiling, max(1, quota // max(1, groups_waiting)))
    return max(1, min(wanted, ceiling))
