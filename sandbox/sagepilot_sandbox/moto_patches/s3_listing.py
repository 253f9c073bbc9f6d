"""moto's ListObjectVersions made faithful to S3's markers, and cheap (installed by faithful.install()).

What S3 does: with `key-marker` alone, it lists the keys that sort after the marker; with a
`version-id-marker` as well, first that key's versions after the given one, then the keys after it.
Each key's versions come newest first, delete markers among them; a truncated page's
NextKeyMarker/NextVersionIdMarker name its last entry, for the next request to continue from.

What moto 5.2.5 does instead:
- with `key-marker` alone it keeps the keys from the marker on and then drops the first version it
  meets. That is right only when the marker is the previous page's last key and has one version: a
  marker that is not itself a key (a caller starting "after" some point) loses the first key after it;
- it deep-copies every version of every object in the bucket on each call (and each FakeKey copy has a
  finaliser), so one page costs time proportional to the whole bucket: hundreds of milliseconds of the
  embedded AWS's single process once a drop has put 10,000 files in it.

This module replaces the backend's listing: the same answers as S3 and the same response shape moto
serialises, from the keys under the prefix only, with no copies (each entry is a view carrying its
`is_latest`). Found and measured by the bench suite (bench/README.md). Each entry also hands moto's
serialiser its LastModified as a datetime: given moto's ISO string, the serialiser parses it back with
dateutil (0.06 ms an entry: 21 -> 14 ms of CPU for a 100-version page, `python -m bench.sandbox_requests`);
the response is byte for byte the same. Picking the keys under the prefix still reads every key name of the
bucket (about 0.8 ms at 10,000 objects): keeping a sorted index in step with moto's key store was not worth it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any


class _Listed:
    """One object version or delete marker as listed: the stored entry, plus whether it is the latest."""

    __slots__ = ("_entry", "is_latest")

    def __init__(self, entry: Any, is_latest: bool) -> None:
        self._entry = entry
        self.is_latest = is_latest

    def __getattr__(self, name: str) -> Any:
        return getattr(self._entry, name)

    @property
    def last_modified_ISO8601(self) -> datetime | None:
        """The time moto's ISO string stands for (whole seconds, UTC), as the datetime moto's serialiser
        writes out: from the string, it parses it back with dateutil, 0.06 ms per entry listed."""
        when: datetime | None = self._entry.last_modified
        return None if when is None else when.replace(microsecond=0)


def list_object_versions(
    backend: Any,
    bucket_name: str,
    delimiter: str | None = None,
    key_marker: str | None = None,
    max_keys: int | None = 1000,
    prefix: str | None = "",
    version_id_marker: str | None = None,
) -> tuple[list[Any], list[str], list[Any], str | None, str | None]:
    """The backend's `list_object_versions`, with S3's semantics (see the module's docstring)."""
    from moto.s3.models import FakeKey

    store = backend.get_bucket(bucket_name).keys
    prefix = prefix or ""
    limit = min(max(1, 1000 if max_keys is None else max_keys), 1000)  # S3 answers at most 1,000 per page
    names = sorted(
        n for n in list(dict.keys(store)) if n.startswith(prefix) and (key_marker is None or n >= key_marker)
    )
    versions: list[Any] = []
    markers: list[Any] = []
    common_prefixes: list[str] = []
    last: tuple[str, str | None] | None = None  # (key or common prefix, version id) of the last entry returned

    def full() -> bool:
        return len(versions) + len(markers) + len(common_prefixes) >= limit

    for name in names:
        stored = list(store.getlist(name) or [])
        if not stored:
            continue
        newest_first = stored[::-1]
        if name == key_marker:
            if not version_id_marker:
                continue  # the marker is exclusive
            ids = [entry.version_id for entry in newest_first]
            if version_id_marker not in ids:
                continue
            newest_first = newest_first[ids.index(version_id_marker) + 1 :]
        rest = name[len(prefix) :]
        if delimiter and delimiter in rest:
            rolled_up = prefix + rest[: rest.index(delimiter) + len(delimiter)]
            if rolled_up == key_marker or rolled_up in common_prefixes:
                continue
            if full():
                return versions, sorted(common_prefixes), markers, last[0] if last else rolled_up, None
            common_prefixes.append(rolled_up)
            last = (rolled_up, None)
            continue
        for entry in newest_first:
            if full() and last is not None:
                return versions, sorted(common_prefixes), markers, last[0], last[1]
            listed = _Listed(entry, entry is stored[-1])
            (versions if isinstance(entry, FakeKey) else markers).append(listed)
            last = (name, entry.version_id)
    return versions, sorted(common_prefixes), markers, None, None


def install() -> None:
    from moto.s3 import models

    backend_cls: Any = models.S3Backend
    if getattr(backend_cls, "_faithful_versions_listing", False):
        return
    backend_cls.list_object_versions = list_object_versions
    backend_cls._faithful_versions_listing = True
