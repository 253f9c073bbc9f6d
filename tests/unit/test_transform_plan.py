"""Planning transform jobs: grouping, chunking, versions, instance counts, manifests and requests."""

from __future__ import annotations

import dataclasses
import json
import random
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sagepilot.domain.layout import DroppedKey, parse_dropped_key
from sagepilot.domain.names import split_attempt
from sagepilot.domain.transform_plan import (
    InputFile,
    JobPlan,
    ModelVersion,
    TransformSettings,
    exact_plan,
    instance_count,
    newest_per_key,
    plan_from_record,
    plan_jobs,
    replan,
    sequencer_order,
    split_bound,
    split_plan,
    transform_job_request,
)

BUCKET = "sagepilot-sandbox-databucket"
MB = 1024 * 1024
MODEL = ModelVersion(
    group="churn",
    package_arn="arn:aws:sagemaker:us-east-1:123456789012:model-package/churn/3",
    version=3,
    supported_content_types=("text/csv", "application/jsonlines"),
)
SETTINGS = TransformSettings(
    name_prefix="sagepilot",
    instance_type="ml.m5.xlarge",
    max_instance_count=4,
    target_mb_per_instance=100,
    max_payload_mb=6,
    max_concurrent_transforms=1,
    max_files_per_job=1000,
)
SAGEMAKER_NAME = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$")


def make_file(
    rel: str,
    *,
    version: str | None = "v1",
    size: int = MB,
    sequencer: str = "0A",
    group: str = "churn",
    etag: str = "etag",
) -> InputFile:
    dropped = parse_dropped_key(f"incoming/{group}/{rel}")
    assert isinstance(dropped, DroppedKey), dropped
    return InputFile(BUCKET, dropped, version, size, etag, sequencer)


def with_settings(**changes) -> TransformSettings:
    return dataclasses.replace(SETTINGS, **changes)


def manifest_keys(plan: JobPlan) -> list[str]:
    return plan.manifest()[1:]


# ---------------------------------------------------------------- grouping and chunking


def test_files_of_one_format_share_one_job():
    files = [make_file("2026-11/a.csv"), make_file("2026-11/b.csv"), make_file("c.csv")]
    [plan] = plan_jobs(files, MODEL, SETTINGS)
    assert sorted(f.key for f in plan.inputs) == sorted(f.key for f in files)
    assert (plan.content_type, plan.compression) == ("text/csv", "None")
    assert plan.superseded == ()
    assert plan.bucket == BUCKET
    assert plan.group == "churn"
    assert plan.model == MODEL
    assert plan.instance_type == "ml.m5.xlarge"
    assert SAGEMAKER_NAME.match(plan.job_name)
    assert plan.job_name.startswith("sagepilot-churn-")
    assert plan.model_name.startswith("sagepilot-churn-v3-")


def test_each_format_gets_its_own_jobs():
    files = [
        make_file("a.csv"),
        make_file("b.csv"),
        make_file("a.csv.gz"),
        make_file("a.jsonl"),
        make_file("b.jsonl"),
        make_file("a.jsonl.gz"),
    ]
    plans = plan_jobs(files, MODEL, SETTINGS)
    formats = {(p.content_type, p.compression): [f.key for f in p.inputs] for p in plans}
    assert formats == {
        ("text/csv", "None"): ["incoming/churn/a.csv", "incoming/churn/b.csv"],
        ("text/csv", "Gzip"): ["incoming/churn/a.csv.gz"],
        ("application/jsonlines", "None"): ["incoming/churn/a.jsonl", "incoming/churn/b.jsonl"],
        ("application/jsonlines", "Gzip"): ["incoming/churn/a.jsonl.gz"],
    }
    assert len({p.job_name for p in plans}) == 4
    # One model per package version, whatever the format.
    assert len({p.model_name for p in plans}) == 1


def test_jobs_are_chunked_by_max_files_per_job():
    files = [make_file(f"part-{i:02d}.csv") for i in range(7)]
    plans = plan_jobs(files, MODEL, with_settings(max_files_per_job=3))
    assert [len(p.inputs) for p in plans] == [3, 3, 1]
    assert [f.key for p in plans for f in p.inputs] == sorted(f.key for f in files)
    assert len({p.job_name for p in plans}) == 3


def test_no_files_no_plans():
    assert plan_jobs([], MODEL, SETTINGS) == []


def test_identical_file_versions_are_planned_once():
    a = make_file("a.csv", version="v1")
    plans = plan_jobs([a, a, dataclasses.replace(a), make_file("b.csv")], MODEL, SETTINGS)
    [plan] = plans
    assert [f.key for f in plan.inputs] == ["incoming/churn/a.csv", "incoming/churn/b.csv"]
    assert plan.superseded == ()


def test_unversioned_bucket_files_are_deduplicated_too():
    a = make_file("a.csv", version=None)
    [plan] = plan_jobs([a, a], MODEL, SETTINGS)
    assert plan.inputs == (a,)
    assert a.file_id == f"{BUCKET}/incoming/churn/a.csv#null"


# ---------------------------------------------------------------- versions of one key


def test_the_newest_version_of_a_key_wins_by_hex_sequencer():
    # "0A" > "09" as numbers; "00FF" > "0A" although it sorts lower as text and is longer.
    old = make_file("a.csv", version="v-old", sequencer="09")
    mid = make_file("a.csv", version="v-mid", sequencer="0A")
    new = make_file("a.csv", version="v-new", sequencer="00FF")
    [plan] = plan_jobs([new, old, mid], MODEL, SETTINGS)
    assert plan.inputs == (new,)
    assert {f.version_id for f in plan.superseded} == {"v-old", "v-mid"}
    assert manifest_keys(plan) == ["a.csv"]


def test_superseded_versions_go_with_the_job_that_reads_their_key():
    files = [make_file(f"part-{i}.csv", version=f"v{i}", sequencer="10") for i in range(4)]
    older = make_file("part-3.csv", version="v3-old", sequencer="0F")
    plans = plan_jobs([*files, older], MODEL, with_settings(max_files_per_job=2))
    assert [p.superseded for p in plans] == [(), (older,)]
    assert "incoming/churn/part-3.csv" in [f.key for f in plans[1].inputs]


def test_newest_per_key_splits_kept_and_superseded():
    a1 = make_file("a.csv", version="1", sequencer="01")
    a2 = make_file("a.csv", version="2", sequencer="02")
    b1 = make_file("b.csv", version="1", sequencer="01")
    kept, superseded = newest_per_key([a2, b1, a1])
    assert kept == [a2, b1]
    assert superseded == [a1]


@pytest.mark.parametrize(
    ("sequencer", "expected"),
    [("00617F08299329D189", 0x617F08299329D189), ("0A", 10), ("", -1), ("not-hex", -1)],
)
def test_sequencer_order(sequencer, expected):
    assert sequencer_order(sequencer) == expected


# ---------------------------------------------------------------- determinism


def test_the_same_files_in_any_order_give_the_same_plans():
    files = [
        make_file(f"d{i % 3}/f{i}.{ext}", version=f"v{i}", sequencer=f"{i:04X}")
        for i in range(12)
        for ext in ("csv", "jsonl.gz")
    ]
    files.append(make_file("d0/f0.csv", version="v0-old", sequencer=""))
    expected = plan_jobs(files, MODEL, with_settings(max_files_per_job=5))
    for seed in range(5):
        shuffled = files[:]
        random.Random(seed).shuffle(shuffled)
        assert plan_jobs(shuffled, MODEL, with_settings(max_files_per_job=5)) == expected


@pytest.mark.parametrize("sequencer", ["", "0A"])
def test_versions_with_equal_or_missing_sequencers_are_still_planned_deterministically(sequencer):
    # Equal sequencers never happen for two real versions, but a missing one ("") can: the choice must
    # still not depend on the order the events arrived in.
    a = make_file("a.csv", version="v1", sequencer=sequencer, etag="e1")
    b = make_file("a.csv", version="v2", sequencer=sequencer, etag="e2")
    first = plan_jobs([a, b], MODEL, SETTINGS)
    assert plan_jobs([b, a], MODEL, SETTINGS) == first
    [plan] = first
    assert {plan.inputs[0].version_id, plan.superseded[0].version_id} == {"v1", "v2"}


def test_job_names_change_with_the_files_and_the_model():
    base = plan_jobs([make_file("a.csv")], MODEL, SETTINGS)[0].job_name
    assert plan_jobs([make_file("a.csv", version="v2")], MODEL, SETTINGS)[0].job_name != base
    assert plan_jobs([make_file("b.csv")], MODEL, SETTINGS)[0].job_name != base
    other_model = dataclasses.replace(MODEL, package_arn=MODEL.package_arn[:-1] + "4", version=4)
    assert plan_jobs([make_file("a.csv")], other_model, SETTINGS)[0].job_name != base
    # A superseded version joining the job is a different job (it must be reported by it).
    with_older = [make_file("a.csv"), make_file("a.csv", version="v0", sequencer="01")]
    assert plan_jobs(with_older, MODEL, SETTINGS)[0].job_name != base


def test_job_names_leave_room_for_retry_suffixes():
    group = "g" * 63
    model = dataclasses.replace(MODEL, group=group)
    [plan] = plan_jobs([make_file("a.csv", group=group)], model, with_settings(name_prefix="p" * 20))
    assert len(plan.job_name) <= 60
    assert split_attempt(plan.job_name) == (plan.job_name, 0)


# ---------------------------------------------------------------- instance counts


@pytest.mark.parametrize(
    ("total_mb", "files", "max_count", "expected"),
    [
        (0, 1, 4, 1),  # at least one, even for empty files
        (1, 1, 4, 1),
        (100, 5, 4, 1),  # exactly one instance's worth
        (101, 5, 4, 2),
        (1000, 1, 4, 1),  # one file: one instance however large it is
        (1000, 3, 4, 3),  # never more than files
        (1000, 50, 4, 4),  # never more than the maximum
        (250, 50, 4, 3),
    ],
)
def test_instance_count(total_mb, files, max_count, expected):
    settings_ = with_settings(max_instance_count=max_count, target_mb_per_instance=100)
    assert instance_count(total_mb * MB, files, settings_) == expected


def test_plans_use_instance_count_of_their_own_chunk():
    files = [make_file(f"f{i}.csv", size=150 * MB) for i in range(5)]
    plans = plan_jobs(files, MODEL, with_settings(max_files_per_job=3, max_instance_count=10))
    # 3 x 150 MB -> ceil(4.5) = 5, but only 3 files; 2 x 150 MB -> 3, but only 2 files.
    assert [p.instance_count for p in plans] == [3, 2]


@given(
    total=st.integers(min_value=0, max_value=10**13),
    files=st.integers(min_value=1, max_value=10_000),
    max_count=st.integers(min_value=1, max_value=100),
    target=st.integers(min_value=1, max_value=10**6),
)
def test_instance_count_bounds(total, files, max_count, target):
    count = instance_count(total, files, with_settings(max_instance_count=max_count, target_mb_per_instance=target))
    assert 1 <= count <= max(1, min(files, max_count))


# ---------------------------------------------------------------- manifest and CreateTransformJob request


def test_manifest_shape_and_record_locations():
    files = [make_file("2026-11/b.csv"), make_file("2026 11/a+b%c:ü.csv"), make_file("top.csv")]
    [plan] = plan_jobs(files, MODEL, SETTINGS)
    manifest = plan.manifest()
    assert manifest == [
        {"prefix": f"s3://{BUCKET}/incoming/churn/"},  # the dropped keys: nothing copied on the intake's path
        "2026 11/a+b%c:ü.csv",
        "2026-11/b.csv",
        "top.csv",
    ]
    json.dumps(manifest)  # stored as JSON as is
    assert plan.folder == f"jobs/churn/{plan.job_name}/"
    assert plan.manifest_key == f"jobs/churn/{plan.job_name}/manifest.json"
    assert plan.plan_key == f"jobs/churn/{plan.job_name}/plan.json"
    assert plan.report_key == f"jobs/churn/{plan.job_name}/report.json"
    assert plan.reads_dropped_keys and not plan.copies_inputs


def test_the_inputs_that_changed_run_again_from_copies_of_the_claimed_versions():
    [plan] = plan_jobs([make_file("a.csv"), make_file("sub/b.csv"), make_file("c.csv")], MODEL, SETTINGS)
    changed = plan.inputs[1:]
    exact = exact_plan(plan, changed, SETTINGS)
    assert exact.inputs == changed and exact.job_name != plan.job_name
    assert SAGEMAKER_NAME.match(exact.job_name) and split_attempt(exact.job_name) == (exact.job_name, 0)
    assert exact.copies_inputs and not exact.reads_dropped_keys  # its own copies, made when it is planned
    assert exact.manifest() == [{"prefix": f"s3://{BUCKET}/{exact.folder}input/"}, "c.csv", "sub/b.csv"]
    assert exact_plan(plan, changed, SETTINGS) == exact  # the same change, the same job
    assert plan_from_record(json.loads(json.dumps(exact.to_record()))) == exact
    assert plan_from_record(json.loads(json.dumps(plan.to_record()))) == plan


def test_transform_job_request_for_plain_csv():
    [plan] = plan_jobs([make_file("a.csv"), make_file("b.csv")], MODEL, SETTINGS)
    request = transform_job_request(plan, plan.job_name, max_payload_mb=6, max_concurrent_transforms=2)
    assert request["TransformJobName"] == plan.job_name
    assert request["ModelName"] == plan.model_name
    assert request["BatchStrategy"] == "MultiRecord"
    assert request["MaxPayloadInMB"] == 6
    assert request["MaxConcurrentTransforms"] == 2
    assert request["TransformInput"] == {
        "DataSource": {"S3DataSource": {"S3DataType": "ManifestFile", "S3Uri": f"s3://{BUCKET}/{plan.manifest_key}"}},
        "ContentType": "text/csv",
        "CompressionType": "None",
        "SplitType": "Line",
    }
    # The job writes into its own folder; the completion publishes each output to predictions/ (see
    # test_versions_across_jobs.py: an older version's job finishing last must not overwrite a newer one's).
    assert request["TransformOutput"] == {
        "S3OutputPath": f"s3://{BUCKET}/jobs/churn/{plan.job_name}/output/",
        "AssembleWith": "Line",
    }
    assert plan.output_key(plan.inputs[0]) == f"jobs/churn/{plan.job_name}/output/a.csv.out"
    assert request["TransformResources"] == {"InstanceType": "ml.m5.xlarge", "InstanceCount": 1}
    tags = {t["Key"]: t["Value"] for t in request["Tags"]}
    assert tags == {
        "sagepilot:model-package-group": "churn",
        "sagepilot:model-package-version": "3",
        "sagepilot:manifest": f"s3://{BUCKET}/{plan.manifest_key}",
        "sagepilot:input-count": "2",
    }
    assert all(isinstance(t["Value"], str) for t in request["Tags"])


def test_transform_job_request_for_gzip_json_lines():
    [plan] = plan_jobs([make_file("a.jsonl.gz")], MODEL, SETTINGS)
    request = transform_job_request(plan, plan.job_name, max_payload_mb=6, max_concurrent_transforms=1)
    assert request["TransformInput"]["ContentType"] == "application/jsonlines"
    assert request["TransformInput"]["CompressionType"] == "Gzip"
    assert request["TransformInput"]["SplitType"] == "Line"


def test_a_retry_request_uses_its_own_name_and_instance_type_but_the_same_manifest():
    [plan] = plan_jobs([make_file("a.csv")], MODEL, SETTINGS)
    retry = transform_job_request(
        plan, f"{plan.job_name}-r1", "ml.c5.xlarge", max_payload_mb=6, max_concurrent_transforms=1
    )
    assert retry["TransformJobName"] == f"{plan.job_name}-r1"
    assert retry["TransformResources"]["InstanceType"] == "ml.c5.xlarge"
    assert retry["TransformInput"]["DataSource"]["S3DataSource"]["S3Uri"].endswith(f"/{plan.job_name}/manifest.json")


# ---------------------------------------------------------------- stored plans


def test_plan_record_round_trip():
    files = [
        make_file("2026 11/a+b%c:ü.csv", version="v2", sequencer="0B", size=5 * MB, etag="e2"),
        make_file("2026 11/a+b%c:ü.csv", version="v1", sequencer="0A", etag="e1"),
        make_file("b.csv", version=None, sequencer=""),
    ]
    [plan] = plan_jobs(files, MODEL, SETTINGS)
    record = json.loads(json.dumps(plan.to_record()))  # stored in S3 as JSON
    assert plan_from_record(record) == plan
    assert record["jobName"] == plan.job_name
    assert [i["versionId"] for i in record["superseded"]] == ["v1"]


def test_plan_from_record_refuses_keys_outside_the_layout():
    [plan] = plan_jobs([make_file("a.csv")], MODEL, SETTINGS)
    record = plan.to_record()
    record["inputs"][0]["key"] = "elsewhere/a.csv"
    with pytest.raises(ValueError, match="outside the layout"):
        plan_from_record(record)


# ---------------------------------------------------------------- property: every file version planned once

_rel_paths = st.sampled_from(
    ["a.csv", "b.csv", "x/a.csv", "x/a.csv.gz", "a.jsonl", "y z/a+b.jsonl.gz", "ü.csv", "c.csv.gz"]
)
_versions = st.sampled_from(["v1", "v2", "v3", None])
_sequencers = st.sampled_from(["", "01", "0A", "00FF", "10", "0000000000000000AB"])


@st.composite
def _file_lists(draw) -> list[InputFile]:
    """Files as S3 would describe them: one version of one key always has the same size, ETag and
    sequencer, however many times its event is delivered."""
    catalogue = draw(
        st.dictionaries(
            st.tuples(_rel_paths, _versions),
            st.tuples(_sequencers, st.integers(min_value=0, max_value=500 * MB)),
            max_size=15,
        )
    )
    if not catalogue:
        return []
    versions = sorted(catalogue, key=repr)
    picks = draw(st.lists(st.sampled_from(versions), max_size=30))
    return [
        make_file(
            rel,
            version=version,
            sequencer=catalogue[rel, version][0],
            size=catalogue[rel, version][1],
            etag=f"etag-{rel}-{version}",
        )
        for rel, version in picks
    ]


@settings(max_examples=150, deadline=None)
@given(files=_file_lists(), max_files=st.integers(min_value=1, max_value=4))
def test_every_file_version_is_planned_exactly_once(files, max_files):
    # Duplicates: the same version delivered again.
    files = files + files[: len(files) // 3]
    plans = plan_jobs(files, MODEL, with_settings(max_files_per_job=max_files))
    planned = [f.file_id for p in plans for f in p.all_files]
    assert sorted(planned) == sorted({f.file_id for f in files})
    names = [p.job_name for p in plans]
    assert len(names) == len(set(names))
    for plan in plans:
        keys = manifest_keys(plan)
        assert len(keys) == len(set(keys))
        assert 1 <= len(plan.inputs) <= max_files
        assert {f.key for f in plan.superseded} <= {f.key for f in plan.inputs}
        assert len({(f.dropped.input_format) for f in plan.inputs}) == 1
        assert 1 <= plan.instance_count <= len(plan.inputs)
    # Deterministic under reordering.
    assert plan_jobs(list(reversed(files)), MODEL, with_settings(max_files_per_job=max_files)) == plans


# ---------------------------------------------------------------- split, and planned again (issue 16)
def test_a_split_halves_the_inputs_into_jobs_named_from_the_parent_that_read_where_it_read():
    files = [make_file(f"{c}.csv") for c in "abcde"]
    [plan] = plan_jobs(files, MODEL, SETTINGS)
    pieces = split_plan(plan, SETTINGS)
    assert [len(p.inputs) for p in pieces] == [3, 2]
    assert [f for p in pieces for f in p.inputs] == list(plan.inputs)
    assert split_plan(plan, SETTINGS) == pieces  # deterministic
    assert len({p.job_name for p in pieces} | {plan.job_name}) == 3
    for piece in pieces:
        assert SAGEMAKER_NAME.match(piece.job_name) and split_attempt(piece.job_name) == (piece.job_name, 0)
        assert piece.manifest()[0] == plan.manifest()[0]  # where the parent read
        assert not piece.copies_inputs and piece.folder != plan.folder
        assert piece.reads_dropped_keys == plan.reads_dropped_keys
        assert plan_from_record(json.loads(json.dumps(piece.to_record()))) == piece
    assert [len(p.inputs) for p in split_plan(pieces[1], SETTINGS)] == [1, 1]


@pytest.mark.parametrize(("files", "bad", "bound"), [(1, 1, 0), (2, 1, 2), (4, 1, 4), (1000, 1, 20), (1000, 3, 60),
                                                     (8, 8, 14), (6, 2, 10)])
def test_the_split_bound(files, bad, bound):
    assert split_bound(files, bad) == bound


@given(st.integers(min_value=2, max_value=64), st.data())
@settings(max_examples=60, deadline=None)
def test_splitting_until_the_bad_inputs_are_alone_stays_within_the_bound(n, data):
    bad = set(data.draw(st.lists(st.integers(0, n - 1), min_size=1, max_size=n, unique=True)))
    [plan] = plan_jobs([make_file(f"f{i:03}.csv") for i in range(n)], MODEL, SETTINGS)
    index = {f.key: i for i, f in enumerate(plan.inputs)}
    failing, created, isolated = [plan], 0, set()
    while failing:
        job = failing.pop()
        if len(job.inputs) == 1:
            isolated.add(index[job.inputs[0].key])
            continue
        for piece in split_plan(job, SETTINGS):
            created += 1
            if any(index[f.key] in bad for f in piece.inputs):
                failing.append(piece)
    assert isolated == bad
    assert created <= split_bound(n, len(bad))


def test_a_job_planned_again_on_another_version_reads_the_same_copies():
    [plan] = plan_jobs([make_file("a.csv"), make_file("b.csv")], MODEL, SETTINGS)
    newer = dataclasses.replace(MODEL, package_arn=MODEL.package_arn[:-1] + "4", version=4)
    again = replan(plan, newer, SETTINGS)
    assert again.job_name != plan.job_name and again.model == newer and "v4" in again.model_name
    assert again.inputs == plan.inputs and again.manifest()[1:] == plan.manifest()[1:]
    assert again.manifest()[0] == plan.manifest()[0]
    assert replan(plan, newer, SETTINGS) == again


def test_sagemakers_messages_about_the_private_copies_name_the_dropped_keys():
    [plan] = plan_jobs([make_file("a.csv"), make_file("a.csv/b.csv"), make_file("2026/c.csv")], MODEL, SETTINGS)
    copies = {f.key: f"s3://{BUCKET}/{plan.input_copy_key(f)}" for f in plan.inputs}
    said = f"ClientError: {copies['incoming/churn/a.csv/b.csv']} (records 1-2) and {copies['incoming/churn/a.csv']}"
    assert plan.in_dropped_terms(said) == (
        f"ClientError: s3://{BUCKET}/incoming/churn/a.csv/b.csv (records 1-2) and s3://{BUCKET}/incoming/churn/a.csv"
    )
