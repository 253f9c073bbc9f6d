"""The bucket layout: what a dropped key means, and where its outputs and reports go."""

from __future__ import annotations

import pytest

from sagepilot.domain.layout import (
    MAX_S3_KEY_LENGTH,
    DroppedKey,
    Rejection,
    input_format_of,
    is_folder_marker,
    job_folder,
    parse_dropped_key,
    rejected_report_key,
)


def accepted(key: str) -> DroppedKey:
    result = parse_dropped_key(key)
    assert isinstance(result, DroppedKey), result
    return result


def rejected(key: str) -> Rejection:
    result = parse_dropped_key(key)
    assert isinstance(result, Rejection), result
    return result


@pytest.mark.parametrize(
    ("key", "content_type", "compression", "extension"),
    [
        ("incoming/churn/2026-11/customers.csv", "text/csv", "None", ".csv"),
        ("incoming/churn/2026-11/customers.jsonl", "application/jsonlines", "None", ".jsonl"),
        ("incoming/churn/2026-11/customers.csv.gz", "text/csv", "Gzip", ".csv.gz"),
        ("incoming/churn/2026-11/customers.jsonl.gz", "application/jsonlines", "Gzip", ".jsonl.gz"),
        ("incoming/churn/2026-11/CUSTOMERS.CSV.GZ", "text/csv", "Gzip", ".csv.gz"),
    ],
)
def test_supported_files_are_accepted_with_their_format(key, content_type, compression, extension):
    dropped = accepted(key)
    assert dropped.key == key
    assert dropped.group == "churn"
    assert dropped.relative_path == key.removeprefix("incoming/churn/")
    assert dropped.input_format.content_type == content_type
    assert dropped.input_format.compression == compression
    assert dropped.input_format.extension == extension


def test_a_file_directly_under_the_group_has_no_sub_path():
    dropped = accepted("incoming/churn/customers.csv")
    assert dropped.group == "churn"
    assert dropped.relative_path == "customers.csv"
    assert dropped.prediction_key == "predictions/churn/customers.csv.out"


def test_deep_sub_paths_and_odd_characters_are_kept_verbatim():
    key = "incoming/churn-v2/2026 11/eu/a+b%c:ü.csv"
    dropped = accepted(key)
    assert dropped.group == "churn-v2"
    assert dropped.relative_path == "2026 11/eu/a+b%c:ü.csv"


def test_outputs_and_reports_mirror_the_input_path():
    dropped = accepted("incoming/churn/2026-11/customers.csv")
    assert dropped.prediction_key == "predictions/churn/2026-11/customers.csv.out"
    assert dropped.report_key == "predictions/churn/2026-11/customers.csv.report.json"


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("incoming/churn/2026-11/customers.csv", "rejected/churn/2026-11/customers.csv.json"),
        ("incoming/churn/notes.txt", "rejected/churn/notes.txt.json"),
        ("elsewhere/customers.csv", "rejected/_outside/elsewhere/customers.csv.json"),
        ("customers.csv", "rejected/_outside/customers.csv.json"),
    ],
)
def test_rejected_report_key(key, expected):
    assert rejected_report_key(key) == expected


def test_job_folder():
    assert job_folder("churn", "sagepilot-churn-0123456789abcdef") == "jobs/churn/sagepilot-churn-0123456789abcdef/"


@pytest.mark.parametrize(
    ("key", "marker"),
    [
        ("incoming/", True),
        ("incoming/churn/", True),
        ("incoming/churn/2026-11/", True),
        ("incoming/churn/2026-11/customers.csv", False),
    ],
)
def test_folder_markers(key, marker):
    assert is_folder_marker(key) is marker


@pytest.mark.parametrize(
    "key",
    [
        "predictions/churn/customers.csv",
        "Incoming/churn/customers.csv",
        "churn/customers.csv",
        "incomingchurn/customers.csv",
        "/incoming/churn/customers.csv",
    ],
)
def test_keys_outside_incoming_are_rejected(key):
    rejection = rejected(key)
    assert rejection.code == "KEY_OUTSIDE_LAYOUT"
    assert "incoming/" in rejection.reason
    assert rejection.action


@pytest.mark.parametrize(
    "key",
    [
        "incoming/customers.csv",  # no group
        "incoming//customers.csv",  # empty group
        "incoming/churn/",  # no file (a folder marker)
        "incoming/churn/2026-11/",  # no file
        "incoming/",
    ],
)
def test_keys_without_group_or_file_are_rejected(key):
    assert rejected(key).code == "KEY_OUTSIDE_LAYOUT"


@pytest.mark.parametrize(
    "group",
    ["churn_model", "churn.v2", "-churn", "churn-", "ch urn", "ü", "a" * 64],
)
def test_invalid_group_names_are_rejected(group):
    rejection = rejected(f"incoming/{group}/customers.csv")
    assert rejection.code == "INVALID_GROUP_NAME"
    assert repr(group) in rejection.reason


@pytest.mark.parametrize("group", ["a", "A1", "churn--v2", "a" * 63])
def test_valid_group_names_are_accepted(group):
    assert accepted(f"incoming/{group}/customers.csv").group == group


@pytest.mark.parametrize(
    "filename",
    ["notes.txt", "records.json", "table.parquet", ".csv", ".csv.gz", "customers.gz", "customers", "a.csv.bak"],
)
def test_unsupported_file_types_are_rejected(filename):
    rejection = rejected(f"incoming/churn/2026-11/{filename}")
    assert rejection.code == "UNSUPPORTED_FILE_TYPE"
    assert repr(filename) in rejection.reason
    for extension in (".csv", ".jsonl", ".csv.gz", ".jsonl.gz"):
        assert extension in rejection.reason


def test_input_format_of_prefers_the_longest_extension():
    fmt = input_format_of("a.jsonl.gz")
    assert fmt is not None
    assert (fmt.extension, fmt.compression) == (".jsonl.gz", "Gzip")
    assert input_format_of(".jsonl") is None


def key_of_length(total: int) -> str:
    head = "incoming/churn/"
    tail = ".csv"
    return head + "x" * (total - len(head) - len(tail)) + tail


# The longest key a dropped file leads to is its transform job's output: "incoming/" (9) becomes "jobs/" (5),
# then "/<job name of at most 60>/output/" (68) and ".out" (4) are added: 68 bytes more than the dropped key.
JOB_OUTPUT_OVERHEAD = -9 + 5 + 60 + 8 + 4


def test_longest_key_whose_derived_keys_fit_is_accepted():
    longest = key_of_length(MAX_S3_KEY_LENGTH - JOB_OUTPUT_OVERHEAD)
    dropped = accepted(longest)
    assert max(len(k.encode()) for k in dropped.derived_keys().values()) == MAX_S3_KEY_LENGTH
    assert len(dropped.report_key.encode()) < MAX_S3_KEY_LENGTH


def test_key_whose_job_output_key_would_not_fit_is_rejected():
    """A key whose reports fit S3's limit (the only check once) but not its transform job's output."""
    key = key_of_length(MAX_S3_KEY_LENGTH - JOB_OUTPUT_OVERHEAD + 1)
    assert len(accepted_report := f"predictions/{key.removeprefix('incoming/')}.report.json") < MAX_S3_KEY_LENGTH
    rejection = rejected(key)
    assert rejection.code == "KEY_TOO_LONG" and "transform job's output" in rejection.reason, accepted_report


def test_the_state_tables_key_limit_is_checked_with_the_bucket_and_version():
    from sagepilot.adapters.state import input_pk
    from sagepilot.domain.layout import MAX_TABLE_KEY_BYTES, table_key_problem
    from sagepilot.domain.transform_plan import file_id_of

    dropped = accepted(key_of_length(900))
    version = "v" * 32
    fits = "b" * (MAX_TABLE_KEY_BYTES - len(input_pk(file_id_of("", dropped.key, version))))
    assert len(input_pk(file_id_of(fits, dropped.key, version)).encode()) == MAX_TABLE_KEY_BYTES
    assert table_key_problem(dropped, fits, version) is None
    problem = table_key_problem(dropped, fits + "b", version)
    assert problem is not None and problem.code == "KEY_TOO_LONG" and "DynamoDB" in problem.reason


def test_a_group_named_training_is_reserved_and_reported_outside_both_layouts():
    rejection = rejected("incoming/training/churn/a.csv")
    assert rejection.code == "RESERVED_GROUP_NAME"
    assert rejected_report_key("incoming/training/churn/a.csv") == "rejected/_reserved/training/churn/a.csv.json"
    assert rejected_report_key("incoming/trainings/a.csv") == "rejected/trainings/a.csv.json"


def test_key_length_counts_bytes_not_characters():
    head = "incoming/churn/"
    # 500 two-byte characters: under 1024 characters, but over 1024 bytes once the report key is built.
    key = head + "ü" * 500 + ".csv"
    assert len(key) < MAX_S3_KEY_LENGTH
    assert rejected(key).code == "KEY_TOO_LONG"
