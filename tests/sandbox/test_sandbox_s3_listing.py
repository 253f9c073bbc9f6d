"""The sandbox's ListObjectVersions takes its markers as S3 does (sagepilot_sandbox/s3_listing.py).

moto 5.2.5 alone, with a KeyMarker that is not itself a key, drops the first version after it, and
copies the whole bucket on every call. The intake's listing starts "after" a point that is usually
not a key (domain/object_versions.py), so that would lose a file's version.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

BUCKET = "listing"


@pytest.fixture
def s3(clients: Callable[[str], Any]) -> Any:
    client = clients("s3")
    client.create_bucket(Bucket=BUCKET)
    client.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
    return client


def put(s3: Any, key: str, body: bytes = b"1\n") -> str:
    return str(s3.put_object(Bucket=BUCKET, Key=key, Body=body)["VersionId"])


def keys_and_versions(page: dict[str, Any]) -> list[tuple[str, str]]:
    return [(v["Key"], v["VersionId"]) for v in page.get("Versions", [])]


def test_a_key_marker_is_exclusive_and_one_that_is_not_a_key_loses_nothing(s3):
    a, b, c = put(s3, "in/a.csv"), put(s3, "in/b.csv"), put(s3, "in/c.csv")
    after_a = s3.list_object_versions(Bucket=BUCKET, Prefix="in/", KeyMarker="in/a.csv")
    assert keys_and_versions(after_a) == [("in/b.csv", b), ("in/c.csv", c)]
    before_a = s3.list_object_versions(Bucket=BUCKET, Prefix="in/", KeyMarker="in/a.cs")  # not a key
    assert keys_and_versions(before_a) == [("in/a.csv", a), ("in/b.csv", b), ("in/c.csv", c)]
    assert before_a["IsTruncated"] is False and "NextKeyMarker" not in before_a


def test_versions_come_newest_first_and_only_the_newest_entry_is_latest(s3):
    first, second = put(s3, "in/a.csv"), put(s3, "in/a.csv", b"2\n")
    marker = s3.delete_object(Bucket=BUCKET, Key="in/a.csv")["VersionId"]
    page = s3.list_object_versions(Bucket=BUCKET, Prefix="in/")
    assert [(v["VersionId"], v["IsLatest"]) for v in page["Versions"]] == [(second, False), (first, False)]
    assert [(m["VersionId"], m["IsLatest"]) for m in page["DeleteMarkers"]] == [(marker, True)]


def test_pages_continue_from_the_last_entry_and_list_every_version_once(s3):
    expected = []
    for i in range(7):
        key = f"in/{i}.csv"
        versions = [put(s3, key, bytes([i, n])) for n in range(1 + i % 3)]
        expected += [(key, version) for version in reversed(versions)]
    put(s3, "other/x.csv")
    seen, pages = [], 0
    for page in s3.get_paginator("list_object_versions").paginate(
        Bucket=BUCKET, Prefix="in/", PaginationConfig={"PageSize": 2}
    ):
        pages += 1
        seen += keys_and_versions(page)
        if page["IsTruncated"]:
            assert (page["NextKeyMarker"], page["NextVersionIdMarker"]) == seen[-1]
    assert seen == expected and pages == (len(expected) + 1) // 2


def test_a_delimiter_rolls_sub_folders_up(s3):
    for key in ("in/a.csv", "in/sub/b.csv", "in/sub/c.csv", "in/z.csv"):
        put(s3, key)
    page = s3.list_object_versions(Bucket=BUCKET, Prefix="in/", Delimiter="/")
    assert [v["Key"] for v in page["Versions"]] == ["in/a.csv", "in/z.csv"]
    assert page["CommonPrefixes"] == [{"Prefix": "in/sub/"}]


def raw_listing(s3: Any, **params: Any) -> bytes:
    """The response body as the sandbox sent it, before botocore parses it."""
    bodies: list[bytes] = []

    def keep(response_dict: dict[str, Any], **_: Any) -> None:
        bodies.append(response_dict["body"])

    s3.meta.events.register("before-parse.s3.ListObjectVersions", keep)
    try:
        s3.list_object_versions(Bucket=BUCKET, **params)
    finally:
        s3.meta.events.unregister("before-parse.s3.ListObjectVersions", keep)
    return bodies[0]


@pytest.fixture
def moto_timestamps(monkeypatch: pytest.MonkeyPatch) -> Callable[[], None]:
    """Switch the listing's LastModified back to moto's own: its ISO string, which its serialiser parses."""
    from sagepilot_sandbox.moto_patches import s3_listing

    def switch() -> None:
        monkeypatch.setattr(
            s3_listing._Listed, "last_modified_ISO8601", property(lambda self: self._entry.last_modified_ISO8601)
        )

    return switch


def test_listed_times_are_written_as_moto_writes_them_without_parsing_them_again(s3, moto_timestamps):
    """LastModified goes to moto's serialiser as a datetime: the same bytes as from moto's ISO string, which
    the serialiser parsed back with dateutil for every entry (0.06 ms each, 6 ms of a 100-version page)."""
    from moto.core import serialize

    for i in range(5):
        put(s3, f"in/{i}.csv")
        put(s3, f"in/{i}.csv", b"2\n")
    s3.delete_object(Bucket=BUCKET, Key="in/3.csv")
    put(s3, "in/a b+c.csv")  # URL-encoded when asked
    parsed: list[Any] = []
    original = serialize.parse_to_aware_datetime

    def counting(value: Any) -> Any:
        parsed.append(value)
        return original(value)

    requests = [{"Prefix": "in/"}, {"Prefix": "in/", "MaxKeys": 3, "KeyMarker": "in/1.csv"}, {"EncodingType": "url"}]
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(serialize, "parse_to_aware_datetime", counting)
        bodies = [raw_listing(s3, **request) for request in requests]
    assert not [value for value in parsed if isinstance(value, str)]  # no ISO string parsed back
    assert len(parsed) >= 12  # every entry's time went through the serialiser
    moto_timestamps()
    assert [raw_listing(s3, **request) for request in requests] == bodies
    assert b"<LastModified>" in bodies[0] and b"<DeleteMarker>" in bodies[0]
