"""Coalescing: jobs of one group that wait (for capacity or for a slot of their group) are merged, when the
first of them gets its turn, into one job that holds all their files, within the job limits.

Pure policy (no I/O, no clock), used by services/jobs.py:

- **Which jobs may merge** (`merge_key`): those that would make the same transform job but for their files:
  same bucket, group, model package (and so SageMaker Model), content type, compression and instance type,
  and the same input folder. Only jobs that read the dropped keys (`incoming/<group>/`: what the intake
  plans) merge: a job reading copies reads its own folder or its parent's, and a piece of a split job
  (`split_piece`) must never meet its sibling again (that would rebuild the job that failed).
- **Which of them, in what order** (`merge_set`): the job whose turn it is first, then the compatible ones
  oldest first (when their work arrived, then name), as long as the files fit `max_files`; it stops at the
  first that does not fit, so a younger job never jumps an older one. `coalesce` applies this to a whole
  queue (each round's oldest job the head): no job in two merges, none left out.
- **What the merged job is** (`merged_plan`): every input of its sources (the newest version of a key is
  read, older ones claimed from the sources are recorded as superseded by it), named from its sources
  (`<prefix>-<group>-<digest>`: the same sources, the same job, so repeating a merge is idempotent), sized
  by `scheduler.job_instances` on the merged data.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

from sagepilot.domain.names import transform_job_name
from sagepilot.domain.scheduler import job_instances
from sagepilot.domain.transform_plan import JobPlan, TransformSettings, newest_per_key

MERGE_TAG = "merge"  # the first part of a merged job's identity (its name's digest)


@dataclass(frozen=True)
class Candidate:
    """A waiting job that may be merged: its plan (as finalised) and the age of its work."""

    plan: JobPlan
    created_at: int
    split_piece: bool = False  # a piece of a split job (record `splitFrom`): never merged

    @property
    def name(self) -> str:
        return self.plan.job_name

    @property
    def files(self) -> int:
        return len(self.plan.inputs)


def merge_key(plan: JobPlan) -> tuple[str, ...]:
    """What must be equal for two plans to be one transform job (see transform_job_request)."""
    return (
        plan.bucket,
        plan.group,
        plan.model.package_arn,
        plan.model_name,
        plan.content_type,
        plan.compression,
        plan.instance_type,
        plan.input_folder,
    )


def mergeable(candidate: Candidate) -> bool:
    return candidate.plan.reads_dropped_keys and not candidate.split_piece and candidate.files > 0


def _age(candidate: Candidate) -> tuple[int, str]:
    return (candidate.created_at, candidate.name)


def merge_set(head: Candidate, others: Iterable[Candidate], *, max_files: int) -> tuple[Candidate, ...]:
    """The jobs to merge when `head` gets its turn: `head` first, then the compatible `others` oldest first
    while the files fit `max_files` (stopping at the first that does not). Just `head` when it may not merge
    or nothing joins it."""
    if not mergeable(head):
        return (head,)
    key = merge_key(head.plan)
    chosen = [head]
    files = head.files
    seen = {head.name}
    for other in sorted(others, key=_age):
        if other.name in seen or not mergeable(other) or merge_key(other.plan) != key:
            continue
        if files + other.files > max_files:
            break
        chosen.append(other)
        seen.add(other.name)
        files += other.files
    return tuple(chosen)


def coalesce(waiting: Iterable[Candidate], *, max_files: int) -> list[tuple[Candidate, ...]]:
    """A whole queue in merges: the oldest job not merged yet is the head of the next (`merge_set` of it and
    the rest). Every job in exactly one merge (a job alone is a merge of one); deterministic."""
    left = sorted({c.name: c for c in waiting}.values(), key=_age)
    merges: list[tuple[Candidate, ...]] = []
    while left:
        merge = merge_set(left[0], left[1:], max_files=max_files)
        merges.append(merge)
        taken = {c.name for c in merge}
        left = [c for c in left if c.name not in taken]
    return merges


def merged_name(sources: Sequence[JobPlan], settings: TransformSettings) -> str:
    """`<prefix>-<group>-<digest of its sources' names>`: the same sources, the same merged job."""
    return transform_job_name(settings.name_prefix, sources[0].group, [MERGE_TAG, *sorted(p.job_name for p in sources)])


def merged_plan(sources: Sequence[JobPlan], settings: TransformSettings) -> JobPlan:
    """The one job that runs the inputs of `sources` (compatible, see `merge_key`; at least two), named from
    them (`merged_name`)."""
    if len(sources) < 2:
        raise ValueError("a merge needs at least two jobs")
    return combine(merged_name(sources, settings), sources, settings)


def combine(name: str, sources: Sequence[JobPlan], settings: TransformSettings) -> JobPlan:
    """The job `name` running the inputs of `sources` (compatible, at least one): the newest claimed version
    of each key is read (sorted by key); an older version of a key that another source holds is recorded as
    superseded by it; the versions its sources had superseded (or found deleted) are recorded in it too, so
    that every version the sources held ends in this one job's records."""
    if not sources:
        raise ValueError("a merged job needs at least one source")
    first = sources[0]
    if any(merge_key(p) != merge_key(first) for p in sources):
        raise ValueError("jobs that differ in more than their files cannot be merged")
    names = sorted(p.job_name for p in sources)
    if len(set(names)) != len(names):
        raise ValueError("a job cannot be merged with itself")
    every = {f.file_id: f for p in sources for f in p.inputs}
    kept, older = newest_per_key(list(every.values()))
    # The versions the sources had superseded come along (each version stays in the one job that holds it).
    taken = set(every)
    superseded = list(older)
    for f in (f for p in sources for f in p.superseded):
        if f.file_id not in taken:
            taken.add(f.file_id)
            superseded.append(f)
    deleted = {f.file_id: f for p in sources for f in p.deleted if f.file_id not in taken}
    megabytes = sum(f.size for f in kept) / (1024 * 1024)
    return replace(
        first,
        job_name=name,
        instance_count=job_instances(
            megabytes,
            len(kept),
            target_mb_per_instance=settings.target_mb_per_instance,
            max_instance_count=settings.max_instance_count,
        ),
        inputs=tuple(kept),
        superseded=tuple(sorted(superseded, key=lambda f: (f.key, f.version_id or ""))),
        deleted=tuple(deleted.values()),
        merged_from=tuple(names),
    )
