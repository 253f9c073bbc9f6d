"""What a ListObjectVersions range proves about dropped versions (domain/object_versions.py), without AWS."""

from __future__ import annotations

from sagepilot.domain import object_versions
from sagepilot.domain.object_versions import (
    FIRST_PAGE_FLOOR,
    MIN_KEYS_TO_LIST,
    PAGE_SIZE,
    ListedVersion,
    ListingRange,
    VersionListing,
    folder_of,
    plan_listings,
)


def v(key: str, version: str, *, latest: bool = True, size: int = 3, deleted: bool = False) -> ListedVersion:
    return ListedVersion(key, version, latest, 0 if deleted else size, "" if deleted else f"etag-{version}", deleted)


def test_folder_of():
    assert folder_of("incoming/churn/a.csv") == "incoming/churn/"
    assert folder_of("incoming/churn/sub/") == "incoming/churn/sub/"
    assert folder_of("top.csv") == ""


def test_one_range_per_folder_holding_several_wanted_keys_starting_just_before_the_smallest():
    (churn,) = plan_listings([["incoming/churn/b.csv"], ["incoming/churn/a.csv"], ["incoming/churn/c.csv"]])
    assert churn == ListingRange("incoming/churn/", "incoming/churn/a.cs", "incoming/churn/c.csv", 1, 3)
    assert churn.start_after < "incoming/churn/a.csv"


def test_a_lone_key_is_left_to_head_object_and_its_forms_count_once():
    assert MIN_KEYS_TO_LIST == 2
    assert plan_listings([["incoming/churn/a.csv"], ["incoming/fraud/x.csv"]]) == []
    # One key sent URL-encoded has two forms in one folder: still one wanted key, still a HEAD.
    assert plan_listings([["incoming/churn/a%2B1.csv", "incoming/churn/a+1.csv"]]) == []
    (both,) = plan_listings([["incoming/churn/a%2B1.csv", "incoming/churn/a+1.csv"], ["incoming/churn/z.csv"]])
    assert (both.start_after, both.last) == ("incoming/churn/a%2B1.cs", "incoming/churn/z.csv")


def test_the_page_budget_grows_with_the_wanted_keys():
    keys = [[f"incoming/g/{i:05}.csv"] for i in range(1000)]
    (listing,) = plan_listings(keys)
    assert listing.max_pages == 11  # dense: 1 page; up to 10x as many other keys in between: still listed


def test_the_range_counts_each_wanted_key_once_whatever_its_forms():
    (both,) = plan_listings(
        [["incoming/g/a%2B1.csv", "incoming/g/a+1.csv"], ["incoming/g/b.csv"], ["incoming/h/x.csv"]]
    )
    assert both.wanted == 2


def sizes(wanted: int, max_pages: int) -> list[int]:
    return list(ListingRange("incoming/g/", "incoming/g/", "incoming/g/z.csv", max_pages, wanted).page_sizes())


def test_the_first_page_asks_about_what_the_batch_wants_then_full_pages_to_the_same_entry_budget():
    assert FIRST_PAGE_FLOOR == 100 and PAGE_SIZE == 1000
    assert sizes(2, 1) == [100, 900]  # a few wanted keys: the floor; the rest of the one page's budget after it
    assert sizes(50, 1) == [100, 900]
    assert sizes(99, 1) == [198, 802]  # twice the wanted keys
    assert sizes(450, 5) == [900, 1000, 1000, 1000, 1000, 100]
    assert sizes(500, 6) == [1000] * 6  # as many as a full page's worth: full pages, as before
    assert sizes(5000, 51) == [1000] * 51


def test_the_entry_budget_is_never_smaller_than_max_pages_full_pages_and_costs_at_most_one_more_request():
    for wanted in range(MIN_KEYS_TO_LIST, 3000, 7):
        (listing,) = plan_listings([[f"incoming/g/{i:05}.csv"] for i in range(wanted)])
        pages = list(listing.page_sizes())
        assert sum(pages) == listing.max_pages * PAGE_SIZE
        assert all(0 < size <= PAGE_SIZE for size in pages) and pages[1:-1] == [PAGE_SIZE] * len(pages[2:])
        assert len(pages) <= listing.max_pages + 1
        assert pages[0] >= min(PAGE_SIZE, 2 * wanted)  # a dense batch's keys all fit in its first page


def test_page_sizes_follow_a_smaller_page_size(monkeypatch):
    """The functional tests shrink PAGE_SIZE to make crowded folders cheap: the first page never exceeds it."""
    monkeypatch.setattr(object_versions, "PAGE_SIZE", 4)
    assert sizes(12, 1) == [4]
    assert sizes(12, 3) == [4, 4, 4]


def test_a_page_covers_its_range_up_to_the_key_it_stopped_in_then_the_next_page_goes_on():
    wanted = ListingRange("incoming/g/", "incoming/g/a.cs", "incoming/g/d.csv", 3, 2)
    listing = VersionListing()
    listing.add_page(wanted, [v("incoming/g/a.csv", "1"), v("incoming/g/b.csv", "2", latest=True)], "incoming/g/b.csv")
    assert listing.covers("incoming/g/a.csv")
    assert not listing.covers("incoming/g/b.csv")  # its older versions may be on the next page
    assert not listing.covers("incoming/g/c.csv") and not listing.covered_past(wanted)
    assert not listing.covers("incoming/g/0.csv")  # before the range
    assert not listing.covers("incoming/h/a.csv")  # another folder
    listing.add_page(wanted, [v("incoming/g/b.csv", "1", latest=False)], None)
    assert listing.covers("incoming/g/b.csv") and listing.covers("incoming/g/zzz.csv") and listing.covered_past(wanted)
    assert listing.covers("incoming/g/sub/x.csv")  # no delimiter: sub-folders are listed too
    assert listing.find("incoming/g/b.csv", "1") == v("incoming/g/b.csv", "1", latest=False)


def test_a_range_is_covered_past_its_last_key_when_a_truncated_page_stops_beyond_it():
    wanted = ListingRange("incoming/g/", "incoming/g/a.cs", "incoming/g/b.csv", 1, 2)
    listing = VersionListing()
    listing.add_page(wanted, [v("incoming/g/a.csv", "1"), v("incoming/g/b.csv", "1")], "incoming/g/c.csv")
    assert listing.covered_past(wanted) and listing.covers("incoming/g/b.csv")


def test_find_names_the_version_an_event_names_and_nothing_a_delete_removed():
    wanted = ListingRange("incoming/g/", "incoming/g/", "incoming/g/z.csv", 1, 3)
    listing = VersionListing()
    listing.add_page(
        wanted,
        [
            v("incoming/g/a.csv", "new"),
            v("incoming/g/a.csv", "old", latest=False),
            v("incoming/g/gone.csv", "m", deleted=True),
            v("incoming/g/gone.csv", "1", latest=False),
            v("incoming/g/plain.csv", "null"),
        ],
        None,
    )
    assert listing.find("incoming/g/a.csv", "old") == v("incoming/g/a.csv", "old", latest=False)  # overwritten: kept
    assert listing.find("incoming/g/a.csv", "deleted-for-good") is None
    assert listing.find("incoming/g/gone.csv", "1") is not None  # a delete marker hides it; the version exists
    assert listing.find("incoming/g/gone.csv", "m") is None  # a delete marker is no object
    assert listing.find("incoming/g/gone.csv", None) is None  # unversioned event: the current one is deleted
    assert listing.find("incoming/g/plain.csv", None) == v("incoming/g/plain.csv", "null")
    assert listing.find("incoming/g/never.csv", None) is None


def test_current_is_the_keys_newest_version_and_none_under_a_delete_marker_or_for_no_key():
    """What a job's completion checks: was the claimed version still the key's current one (the key held it
    from the claim to the job's end, so SageMaker read exactly it)?"""
    wanted = ListingRange("incoming/g/", "incoming/g/", "incoming/g/z.csv", 1, 3)
    listing = VersionListing()
    listing.add_page(
        wanted,
        [
            v("incoming/g/a.csv", "new"),
            v("incoming/g/a.csv", "old", latest=False),
            v("incoming/g/gone.csv", "m", deleted=True),
            v("incoming/g/gone.csv", "1", latest=False),
            v("incoming/g/plain.csv", "null"),
        ],
        None,
    )
    assert listing.current("incoming/g/a.csv") == "new"  # "old" was overwritten: it changed
    assert listing.current("incoming/g/gone.csv") is None  # a delete marker on top
    assert listing.current("incoming/g/plain.csv") == "null"
    assert listing.current("incoming/g/never.csv") is None  # covered, and no such key (deleted for good)
