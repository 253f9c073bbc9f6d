"""Coalescing policy (domain/coalescing.py): which waiting jobs merge, in what order, into what job."""

from __future__ import annotations

import dataclasses
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sagepilot.domain.coalescing import Candidate, coalesce, combine, merge_key, merge_set, merged_plan
from sagepilot.domain.layout import DroppedKey, parse_dropped_key
from sagepilot.domain.reports import job_summary
from sagepilot.domain.transform_plan import (
    InputFile,
    ModelVersion,
    TransformSettings,
    plan_from_record,
    plan_jobs,
    split_plan,
    transform_job_request,
)

BUCKET = "sagepilot-sandbox-databucket"
MB = 1024 * 1024
MODEL = ModelVersion("churn", "arn:aws:sagemaker:us-east-1:123456789012:model-package/churn/3", 3, ("text/csv",))
OTHER_MODEL = dataclasses.replace(MODEL, package_arn=MODEL.package_arn[:-1] + "4", version=4)
SETTINGS = TransformSettings(
    name_prefix="sagepilot",
    instance_type="ml.m5.xlarge",
    max_instance_count=4,
    target_mb_per_instance=100,
    max_payload_mb=6,
    max_concurrent_transforms=1,
    max_files_per_job=10,
)
SAGEMAKER_NAME = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$")


def file(rel: str, *, version: str = "v1", size: int = MB, sequencer: str = "0A") -> InputFile:
    dropped = parse_dropped_key(f"incoming/churn/{rel}")
    assert isinstance(dropped, DroppedKey)
    return InputFile(BUCKET, dropped, version, size, f"etag-{rel}-{version}", sequencer)


def waiting(name: str, created: int, rels: list[str], *, model: ModelVersion = MODEL, **kwargs: object) -> Candidate:
    (plan,) = plan_jobs([file(r) for r in rels], model, SETTINGS)
    return Candidate(dataclasses.replace(plan, job_name=f"sagepilot-churn-{name}"), created, **kwargs)  # type: ignore[arg-type]


def names(merge: tuple[Candidate, ...]) -> list[str]:
    return [c.name.rsplit("-", 1)[1] for c in merge]


def test_the_head_takes_the_compatible_waiting_jobs_oldest_first():
    head = waiting("h", 5, ["a.csv"])
    others = [waiting("c", 9, ["c.csv"]), waiting("b", 7, ["b.csv"]), waiting("d", 1, ["d.csv"])]
    assert names(merge_set(head, others, max_files=10)) == ["h", "d", "b", "c"]


def test_it_stops_at_the_first_job_that_does_not_fit_so_no_younger_job_jumps_an_older_one():
    head = waiting("h", 5, ["a.csv", "b.csv"])
    others = [waiting("old", 6, ["c.csv", "d.csv", "e.csv"]), waiting("young", 7, ["f.csv"])]
    assert names(merge_set(head, others, max_files=4)) == ["h"]
    assert names(merge_set(head, others, max_files=5)) == ["h", "old"]
    assert names(merge_set(head, others, max_files=6)) == ["h", "old", "young"]


def test_jobs_that_would_not_be_the_same_transform_job_never_merge():
    head = waiting("h", 5, ["a.csv"])
    jsonl = waiting("j", 1, ["x.jsonl"])
    other_model = waiting("m", 2, ["b.csv"], model=OTHER_MODEL)
    piece = waiting("p", 3, ["c.csv"], split_piece=True)
    copies = Candidate(dataclasses.replace(waiting("k", 4, ["d.csv"]).plan, input_prefix=""), 4)
    assert names(merge_set(head, [jsonl, other_model, piece, copies], max_files=10)) == ["h"]
    # A head that may not merge stays alone, whatever waits.
    assert names(merge_set(piece, [head], max_files=10)) == ["p"]
    assert names(merge_set(copies, [head], max_files=10)) == ["k"]


def test_the_merged_job_reads_every_input_once_and_is_named_from_its_sources():
    a = waiting("a", 1, ["x.csv", "y.csv"]).plan
    b = waiting("b", 2, ["z.csv"]).plan
    merged = merged_plan([a, b], SETTINGS)
    assert sorted(f.key for f in merged.inputs) == [
        "incoming/churn/x.csv",
        "incoming/churn/y.csv",
        "incoming/churn/z.csv",
    ]
    assert merged.merged_from == tuple(sorted([a.job_name, b.job_name]))
    assert merged_plan([b, a], SETTINGS).job_name == merged.job_name  # the same sources, the same job
    assert merged.job_name not in (a.job_name, b.job_name) and SAGEMAKER_NAME.match(merged.job_name)
    assert merged.job_name.startswith("sagepilot-churn-")
    assert merge_key(merged) == merge_key(a)
    assert merged.reads_dropped_keys
    # One transform job, as for any job: one manifest entry per input, the sources' model and type.
    request = transform_job_request(merged, merged.job_name, max_payload_mb=6, max_concurrent_transforms=1)
    assert request["ModelName"] == a.model_name and request["TransformInput"]["ContentType"] == "text/csv"
    assert merged.manifest()[1:] == ["x.csv", "y.csv", "z.csv"]
    # Its plan and report say where its files came from; its pieces, if it is split, are not merges.
    assert plan_from_record(merged.to_record()) == merged
    report = job_summary(merged, job_name=merged.job_name, status="Completed", attempts=1, timings={})
    assert [m["transformJobName"] for m in report["mergedFrom"]] == list(merged.merged_from)
    assert all(piece.merged_from == () for piece in split_plan(merged, SETTINGS))
    assert "mergedFrom" not in job_summary(a, job_name=a.job_name, status="Completed", attempts=1, timings={})


def test_two_versions_of_a_key_in_two_sources_the_newest_is_read_the_older_superseded_in_the_job():
    old = dataclasses.replace(waiting("a", 1, ["x.csv"]).plan, inputs=(file("x.csv", version="v1", sequencer="0A"),))
    new = dataclasses.replace(waiting("b", 2, ["x.csv"]).plan, inputs=(file("x.csv", version="v2", sequencer="0B"),))
    merged = merged_plan([old, new], SETTINGS)
    assert [f.version_id for f in merged.inputs] == ["v2"]
    assert [(f.version_id, f.superseded_by) for f in merged.superseded] == [("v1", None)]


def test_the_merged_job_is_sized_by_its_data():
    big = [waiting(str(i), i, [f"f{i}.csv"]).plan for i in range(4)]
    big = [dataclasses.replace(p, inputs=(dataclasses.replace(p.inputs[0], size=90 * MB),)) for p in big]
    assert merged_plan(big, SETTINGS).instance_count == 4  # 360 MB at 100 MB per instance
    assert merged_plan(big[:2], SETTINGS).instance_count == 2


def test_plans_that_differ_in_more_than_their_files_are_refused():
    with pytest.raises(ValueError):
        merged_plan([waiting("a", 1, ["a.csv"]).plan, waiting("b", 1, ["b.csv"], model=OTHER_MODEL).plan], SETTINGS)
    with pytest.raises(ValueError):
        merged_plan([waiting("a", 1, ["a.csv"]).plan], SETTINGS)
    with pytest.raises(ValueError):
        combine("sagepilot-churn-x", [], SETTINGS)


# ---------------------------------------------------------------- properties of a whole queue

FORMATS = ["csv", "jsonl"]


@st.composite
def queues(draw: st.DrawFn) -> list[Candidate]:
    jobs = []
    for n in range(draw(st.integers(min_value=0, max_value=25))):
        fmt = draw(st.sampled_from(FORMATS))
        count = draw(st.integers(min_value=1, max_value=6))
        rels = [f"j{n}/f{i}.{fmt}" for i in range(count)]
        model = draw(st.sampled_from([MODEL, OTHER_MODEL]))
        jobs.append(
            waiting(
                f"{n:03d}",
                draw(st.integers(min_value=0, max_value=20)),
                rels,
                model=model,
                split_piece=draw(st.booleans()) and draw(st.booleans()),
            )
        )
    return jobs


@settings(max_examples=200, deadline=None)
@given(queues(), st.integers(min_value=1, max_value=15))
def test_a_queue_coalesces_into_merges_that_lose_nothing_double_nothing_and_keep_the_limits(jobs, max_files):
    merges = coalesce(jobs, max_files=max_files)
    merged_names = [c.name for merge in merges for c in merge]
    assert sorted(merged_names) == sorted(c.name for c in jobs)  # every job in exactly one merge
    for merge in merges:
        if len(merge) > 1:
            # Compatible, within the limits (a job alone may exceed them: it was planned so).
            assert len({merge_key(c.plan) for c in merge}) == 1
            assert not any(c.split_piece for c in merge)
            assert sum(c.files for c in merge) <= max_files
            plan = merged_plan([c.plan for c in merge], SETTINGS)
            assert sorted(f.file_id for f in plan.inputs) == sorted(f.file_id for c in merge for f in c.plan.inputs)
        # Oldest first: the head is the oldest job left, its companions the oldest compatible ones after it.
        rest = sorted(merge[1:], key=lambda c: (c.created_at, c.name))
        assert list(merge[1:]) == rest
    heads = [merge[0] for merge in merges]
    assert heads == sorted(heads, key=lambda c: (c.created_at, c.name))
    assert coalesce(list(reversed(jobs)), max_files=max_files) == merges  # deterministic


@settings(max_examples=200, deadline=None)
@given(queues(), st.integers(min_value=1, max_value=15))
def test_no_compatible_job_older_than_a_companion_is_left_out_of_a_merge(jobs, max_files):
    merges = coalesce(jobs, max_files=max_files)
    for i, merge in enumerate(merges):
        if len(merge) < 2:
            continue
        youngest = max((c.created_at, c.name) for c in merge[1:])
        before = {c.name for m in merges[:i] for c in m} | {c.name for c in merge}
        skipped = [
            c.name
            for c in jobs
            if c.name not in before
            and merge_key(c.plan) == merge_key(merge[0].plan)
            and not c.split_piece
            and (c.created_at, c.name) < youngest
        ]
        assert skipped == []  # a younger job never took the place of an older compatible one


def test_the_versions_a_source_had_superseded_come_along_and_keep_who_superseded_them():
    from sagepilot.domain.transform_plan import Newer, settle

    older = file("x.csv", version="v1", sequencer="0A")
    newer = file("x.csv", version="v2", sequencer="0B")
    stale = dataclasses.replace(file("gone.csv", version="v7"), superseded_by=Newer("v8", "sagepilot-churn-other"))
    a = dataclasses.replace(waiting("a", 1, ["x.csv"]).plan, inputs=(newer,), superseded=(older, stale))
    b = waiting("b", 2, ["y.csv"]).plan
    merged = merged_plan([a, b], SETTINGS)
    assert [(f.key, f.version_id) for f in merged.superseded] == [
        ("incoming/churn/gone.csv", "v7"),
        ("incoming/churn/x.csv", "v1"),
    ]
    owners = dict.fromkeys((f.file_id for f in merged.all_files), merged.job_name)
    settled = settle(merged, owners, {})
    assert {f.version_id: f.superseded_by for f in settled.superseded} == {"v1": None, "v7": stale.superseded_by}
    assert sorted(f.file_id for f in settled.all_files) == sorted(f.file_id for p in (a, b) for f in p.all_files)
