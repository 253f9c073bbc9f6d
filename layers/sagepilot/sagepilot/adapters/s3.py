"""The data bucket: confirm dropped objects, read and write the control plane's JSON documents."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote_plus

from botocore.exceptions import ClientError

from sagepilot.adapters.clients import UNREACHABLE, error_code, error_message, http_status, translates_unreachable
from sagepilot.domain.object_versions import ListedVersion, ListingRange, VersionListing, plan_listings
from sagepilot.errors import ObjectGone, TransientError
from sagepilot.observability import logger

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_s3.type_defs import CopySourceTypeDef

_MISSING = {"404", "NoSuchKey", "NoSuchVersion", "NotFound", "InvalidArgument", "400"}


@dataclass(frozen=True)
class HeadResult:
    key: str
    version_id: str | None
    size: int
    etag: str


def key_candidates(key: str) -> list[str]:
    """The key as sent, then URL-decoded: S3's EventBridge events are not documented either way."""
    decoded = unquote_plus(key)
    return [key] if decoded == key else [key, decoded]


@translates_unreachable
class DataBucket:
    def __init__(self, s3_client: S3Client, bucket: str) -> None:
        self._s3 = s3_client
        self.name = bucket

    def list_versions(self, keys: Iterable[str]) -> VersionListing:
        """ListObjectVersions over the folders holding several of `keys` (in every form they may take).

        A listing that fails part-way keeps the pages it got: the keys it does not cover are confirmed
        with HeadObject, which raises the error again if it persists (logged here, not swallowed).
        """
        listing = VersionListing()
        for candidate_range in plan_listings(key_candidates(key) for key in keys):
            try:
                self._list_range(candidate_range, listing)
            except (ClientError, *UNREACHABLE) as exc:
                logger.warning(
                    "could not list object versions; confirming those files one by one",
                    extra={"prefix": candidate_range.prefix, "error": str(exc)},
                )
        return listing

    def _list_range(self, listing_range: ListingRange, listing: VersionListing) -> None:
        params: dict[str, Any] = {
            "Bucket": self.name,
            "Prefix": listing_range.prefix,
            "KeyMarker": listing_range.start_after,
        }
        for max_keys in listing_range.page_sizes():
            params["MaxKeys"] = max_keys
            page = self._s3.list_object_versions(**params)
            truncated = bool(page.get("IsTruncated"))
            next_key = page.get("NextKeyMarker") if truncated else None
            entries = [
                ListedVersion(
                    key=v["Key"],
                    version_id=str(v.get("VersionId") or "null"),
                    is_latest=bool(v.get("IsLatest")),
                    size=int(v.get("Size", 0)),
                    etag=str(v.get("ETag", "")).strip('"'),
                )
                for v in page.get("Versions", [])
            ] + [
                ListedVersion(
                    key=m["Key"],
                    version_id=str(m.get("VersionId") or "null"),
                    is_latest=bool(m.get("IsLatest")),
                    delete_marker=True,
                )
                for m in page.get("DeleteMarkers", [])
            ]
            if truncated and not next_key:  # a page S3 would not send; cover nothing past what it proved
                return
            listing.add_page(listing_range, entries, next_key)
            if listing.covered_past(listing_range):
                return
            params["KeyMarker"] = next_key
            params.pop("VersionIdMarker", None)
            if page.get("NextVersionIdMarker"):
                params["VersionIdMarker"] = page["NextVersionIdMarker"]

    @staticmethod
    def listing_covers(key: str, listing: VersionListing) -> bool:
        """Whether `listing` settles the key in every form it may take (no HeadObject needed)."""
        return all(listing.covers(c) for c in key_candidates(key))

    def confirm_dropped(self, key: str, version_id: str | None, listing: VersionListing) -> HeadResult:
        """The version an event names, from `listing` when it covers every form of the key, else HeadObject."""
        if not self.listing_covers(key, listing):
            return self.head_dropped(key, version_id)
        for candidate in key_candidates(key):
            found = listing.find(candidate, version_id)
            if found is not None:
                return HeadResult(
                    key=candidate,
                    version_id=version_id or (None if found.version_id == "null" else found.version_id),
                    size=found.size,
                    etag=found.etag,
                )
        raise ObjectGone(f"s3://{self.name}/{key} (version {version_id}) no longer exists")

    def current_versions(self, keys: Iterable[str]) -> dict[str, str | None]:
        """Each key's current version id ("null" if stored unversioned; None if it has none: deleted, or a
        delete marker on top): a few ListObjectVersions pages for the folders holding several of the keys
        (strongly consistent, as a HEAD), a HeadObject each for the others."""
        wanted = list(dict.fromkeys(keys))
        listing = self.list_versions(wanted)
        found: dict[str, str | None] = {}
        for key in wanted:
            if listing.covers(key):
                found[key] = listing.current(key)
                continue
            try:
                head = self._s3.head_object(Bucket=self.name, Key=key)
            except ClientError as exc:
                if error_code(exc) in _MISSING or http_status(exc) == 404:
                    found[key] = None
                    continue
                raise TransientError(f"HeadObject s3://{self.name}/{key} failed: {exc}") from exc
            found[key] = str(head.get("VersionId") or "null")
        return found

    def head_dropped(self, key: str, version_id: str | None) -> HeadResult:
        """HeadObject on the version the event names, trying the key as sent and decoded."""
        for candidate in key_candidates(key):
            params: dict[str, Any] = {"Bucket": self.name, "Key": candidate}
            if version_id:
                params["VersionId"] = version_id
            try:
                head = self._s3.head_object(**params)
            except ClientError as exc:
                if error_code(exc) in _MISSING or http_status(exc) == 404:
                    continue
                raise TransientError(f"HeadObject s3://{self.name}/{candidate} failed: {exc}") from exc
            return HeadResult(
                key=candidate,
                version_id=head.get("VersionId") or version_id,
                size=int(head.get("ContentLength", 0)),
                etag=str(head.get("ETag", "")).strip('"'),
            )
        raise ObjectGone(f"s3://{self.name}/{key} (version {version_id}) no longer exists")

    def put_json(self, key: str, document: Any) -> None:
        try:
            self._s3.put_object(
                Bucket=self.name,
                Key=key,
                Body=json.dumps(document, indent=2, sort_keys=True, default=str).encode(),
                ContentType="application/json",
            )
        except ClientError as exc:
            raise TransientError(f"PutObject s3://{self.name}/{key} failed: {exc}") from exc

    def copy(self, source_key: str, key: str) -> bool:
        """Copy an object of the bucket onto `key` (the same bytes each time: safe to repeat); False if the
        source does not exist. Over CopyObject's 5 GB limit, boto3's managed copy does it in parts."""
        source: CopySourceTypeDef = {"Bucket": self.name, "Key": source_key}
        try:
            self._s3.copy_object(Bucket=self.name, Key=key, CopySource=source)
        except ClientError as exc:
            if error_code(exc) in ("NoSuchKey", "404", "NotFound"):
                return False
            if error_code(exc) == "InvalidRequest" and "copy source is larger" in error_message(exc):
                return self._copy_in_parts(source, key)
            raise TransientError(f"CopyObject s3://{self.name}/{source_key} -> {key} failed: {exc}") from exc
        return True

    def copy_version(self, source_key: str, version_id: str | None, key: str) -> bool:
        """Copy one version of an object onto `key` (CopyObject with its VersionId: the bytes of that version,
        whatever the key holds now); False if that version no longer exists. Safe to repeat."""
        source: CopySourceTypeDef = {"Bucket": self.name, "Key": source_key}
        if version_id:
            source["VersionId"] = version_id
        try:
            self._s3.copy_object(Bucket=self.name, Key=key, CopySource=source)
        except ClientError as exc:
            if error_code(exc) in _MISSING or http_status(exc) == 404:
                return False
            if error_code(exc) == "InvalidRequest" and "copy source is larger" in error_message(exc):
                return self._copy_in_parts(source, key)
            raise TransientError(
                f"CopyObject s3://{self.name}/{source_key} ({version_id}) -> {key} failed: {exc}"
            ) from exc
        return True

    def _copy_in_parts(self, source: CopySourceTypeDef, key: str) -> bool:
        try:
            self._s3.copy(source, self.name, key)
        except ClientError as exc:
            raise TransientError(f"multipart copy s3://{self.name}/{source['Key']} -> {key} failed: {exc}") from exc
        return True

    def get_json(self, key: str) -> Any:
        try:
            body = self._s3.get_object(Bucket=self.name, Key=key)["Body"].read()
        except ClientError as exc:
            raise TransientError(f"GetObject s3://{self.name}/{key} failed: {exc}") from exc
        return json.loads(body)

    def get_bytes_if_present(self, key: str) -> bytes | None:
        """The object's bytes, or None if the key does not exist (a missing optional document)."""
        try:
            body = self._s3.get_object(Bucket=self.name, Key=key)["Body"].read()
        except ClientError as exc:
            if error_code(exc) in ("NoSuchKey", "404", "NotFound"):
                return None
            raise TransientError(f"GetObject s3://{self.name}/{key} failed: {exc}") from exc
        return bytes(body)

    def list_children(self, folder: str, limit: int) -> list[str]:
        """Keys directly in `folder` (not in its sub-folders), at most `limit` + 1 of them (so that "more than
        `limit`" can be told)."""
        keys: list[str] = []
        try:
            pages = self._s3.get_paginator("list_objects_v2").paginate(
                Bucket=self.name, Prefix=folder, Delimiter="/", PaginationConfig={"PageSize": 1000}
            )
            for page in pages:
                keys += [str(o["Key"]) for o in page.get("Contents", [])]
                if len(keys) > limit:
                    return keys[: limit + 1]
        except ClientError as exc:
            raise TransientError(f"ListObjectsV2 s3://{self.name}/{folder} failed: {exc}") from exc
        return keys
