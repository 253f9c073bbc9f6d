"""Confirm a batch's dropped object versions with a few ListObjectVersions pages, not a HeadObject each.

The intake must know that each version an event names still exists (an event can be stale: the version
deleted for good since; or forged), which form of a `+`/`%xx` key names it, and its size and ETag.
S3 has no batched HEAD, but one ListObjectVersions page returns up to 1,000 versions of consecutive
keys, and S3 lists are strongly consistent after writes and deletes: for every key in the range a page
covers, the versions it shows are all the versions there are. So a version missing from a covered range
is gone as surely as a HEAD's 404. Keys a listing does not cover (a lone file in its folder, or a folder
crowded with other keys past the page budget) are confirmed with HeadObject as before.

A listing of `prefix` after `start_after` covers every key `k` with that prefix and `k > start_after`,
up to the key the last page stopped in (exclusive: its remaining versions may be on the next page), or
to the end when the last page was not truncated.

A range's first page asks for about as many entries as the batch wants there, not a full 1,000: a batch
reading a burst while later files of it are still arriving wants a few dozen keys of a folder already
holding thousands after them, and a page of 1,000 versions is far slower and larger than one of 100 (in
AWS, and in the sandbox's embedded AWS, which serialises every entry in its one process). Further pages,
needed only when other keys or older versions crowd the range, ask full pages; the range's budget is
counted in entries (`max_pages` full pages' worth, as when every page was full), so a listing reaches
exactly as far as it did and no key it settled falls back to HeadObject.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

PAGE_SIZE = 1000  # ListObjectVersions' MaxKeys ceiling
MIN_KEYS_TO_LIST = 2  # one key: a HEAD is as cheap as a page, and proves as much
WANTED_PER_EXTRA_PAGE = 100  # page budget: 1 + wanted // 100 (a folder 10x denser with other keys is still cheap)
# A range's first page: FIRST_PAGE_PER_WANTED entries per wanted key, at least FIRST_PAGE_FLOOR, at most PAGE_SIZE.
# Twice the wanted count: keys a batch reads from a burst are mostly consecutive and written once (one entry
# each); the second entry per key leaves room for as many entries again (older versions, delete markers, a few
# other keys in between) before a second page is needed. The floor of 100: a page that small costs about a round
# trip whatever its size in AWS, and little in the sandbox (its moto's CPU per page, in a folder of 10,000 keys:
# 26 ms for 100 entries, 38 ms for 200, 177 ms for 1,000), so a small batch gets that slack almost for nothing.
# When the guess falls short, one more request (full pages from there) finishes the range, in the same budget.
FIRST_PAGE_FLOOR = 100
FIRST_PAGE_PER_WANTED = 2


@dataclass(frozen=True)
class ListedVersion:
    """One entry of a ListObjectVersions page: an object version or a delete marker."""

    key: str
    version_id: str  # "null" for an object stored while versioning was off
    is_latest: bool
    size: int = 0
    etag: str = ""
    delete_marker: bool = False


@dataclass(frozen=True)
class ListingRange:
    """A listing to make: the keys under `prefix` after `start_after`, paged until past `last`."""

    prefix: str
    start_after: str
    last: str
    max_pages: int  # the budget: max_pages * PAGE_SIZE entries listed at most
    wanted: int  # how many wanted keys (one per event, whatever its forms) the range is for

    def page_sizes(self) -> Iterator[int]:
        """Each page's MaxKeys in turn, until the budget is spent: a first page sized to the wanted keys
        (module docstring), then full pages, the last cut to what the budget has left.

        The sizes add up to max_pages full pages, so the listing stops at the very entry it stopped at when
        every page was full (pages continue exactly where the last one stopped, mid-key included): the
        same keys covered, at most one request more, and usually one small request instead of one large.
        """
        budget = self.max_pages * PAGE_SIZE
        size = min(PAGE_SIZE, max(FIRST_PAGE_FLOOR, FIRST_PAGE_PER_WANTED * self.wanted))
        while budget > 0:
            size = min(size, budget)
            yield size
            budget -= size
            size = PAGE_SIZE


def folder_of(key: str) -> str:
    """`incoming/churn/a.csv` -> `incoming/churn/` (the empty string for a key at the bucket's top)."""
    return key[: key.rfind("/") + 1]


def plan_listings(wanted: Iterable[Iterable[str]]) -> list[ListingRange]:
    """One range per folder where at least MIN_KEYS_TO_LIST wanted keys may be, from just before the smallest.

    `wanted` holds, for each key an event names, every form the key may take (as sent, URL-decoded).
    The range starts after the smallest form minus its last character: a proper prefix sorts before the
    key, and every key after it is listed, whether S3 took the marker as inclusive or not.
    """
    forms: dict[str, set[str]] = defaultdict(set)
    counted: dict[str, int] = defaultdict(int)
    for candidates in wanted:
        folders = set()
        for key in candidates:
            if key:
                forms[folder_of(key)].add(key)
                folders.add(folder_of(key))
        for folder in folders:
            counted[folder] += 1
    ranges = []
    for folder, members in sorted(forms.items()):
        if counted[folder] < MIN_KEYS_TO_LIST:
            continue
        ranges.append(
            ListingRange(
                prefix=folder,
                start_after=min(members)[:-1],
                last=max(members),
                max_pages=1 + counted[folder] // WANTED_PER_EXTRA_PAGE,
                wanted=counted[folder],
            )
        )
    return ranges


@dataclass
class _Covered:
    prefix: str
    start_after: str
    below: str | None  # None: to the end of the prefix

    def holds(self, key: str) -> bool:
        return key.startswith(self.prefix) and key > self.start_after and (self.below is None or key < self.below)


@dataclass
class VersionListing:
    """What the pages listed so far prove: the versions of each key, and which keys are fully covered."""

    _versions: dict[str, list[ListedVersion]] = field(default_factory=lambda: defaultdict(list))
    _covered: list[_Covered] = field(default_factory=list)

    def add_page(self, listing: ListingRange, entries: Iterable[ListedVersion], next_key: str | None) -> None:
        """Record one page of `listing`; `next_key` is the page's NextKeyMarker (None: not truncated).

        Pages of one range must be added in order: each extends the range's coverage.
        """
        for entry in entries:
            self._versions[entry.key].append(entry)
        for covered in self._covered:
            if covered.prefix == listing.prefix and covered.start_after == listing.start_after:
                covered.below = next_key
                return
        self._covered.append(_Covered(listing.prefix, listing.start_after, next_key))

    def covers(self, key: str) -> bool:
        return any(c.holds(key) for c in self._covered)

    def covered_past(self, listing: ListingRange) -> bool:
        """Whether the range's pages so far reach past its last wanted key."""
        return any(
            c.prefix == listing.prefix
            and c.start_after == listing.start_after
            and (c.below is None or c.below > listing.last)
            for c in self._covered
        )

    def find(self, key: str, version_id: str | None) -> ListedVersion | None:
        """The object version an event names, if it exists (the key must be covered).

        Without a version id (an unversioned bucket's events), the key's current version, unless that is
        a delete marker.
        """
        versions = self._versions.get(key, [])
        if version_id is None:
            current = next((v for v in versions if v.is_latest), None)
            return current if current is not None and not current.delete_marker else None
        return next((v for v in versions if v.version_id == version_id and not v.delete_marker), None)

    def current(self, key: str) -> str | None:
        """The key's current version id ("null" when stored unversioned); None when its newest entry is a
        delete marker or it has none (the key must be covered)."""
        latest = next((v for v in self._versions.get(key, []) if v.is_latest), None)
        return None if latest is None or latest.delete_marker else latest.version_id
