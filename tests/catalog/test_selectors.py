"""Reads of the catalog that are shared between requests: the tag counts, the list's count."""

from __future__ import annotations

import pytest

from catalog import lifecycle, selectors
from catalog.models import SongStatus, SongTag
from tests.factories import SongFactory, SongTagFactory

pytestmark = pytest.mark.django_db


def _tagged(*labels: str) -> None:
    song = SongFactory.create()
    for label in labels:
        SongTagFactory.create(song=song, label=label)


def test_tag_counts_list_the_most_common_tags_first() -> None:
    _tagged("Music", "Guitar")
    _tagged("Music", "Drum")
    _tagged("Music", "Guitar")

    assert selectors.tag_counts() == [("Music", 3), ("Guitar", 2), ("Drum", 1)]
    assert selectors.tag_counts(limit=1) == [("Music", 3)]


def test_tag_counts_follow_every_change_to_the_catalog() -> None:
    _tagged("Music", "Guitar")
    assert selectors.tag_counts() == [("Guitar", 1), ("Music", 1)]

    _tagged("Guitar")
    assert selectors.tag_counts() == [("Guitar", 2), ("Music", 1)]

    first = SongTag.objects.filter(label="Music").get().song
    first.delete()
    assert selectors.tag_counts() == [("Guitar", 1)]

    # A song analysed again gets new tags in place of the old ones.
    second = SongTag.objects.get().song
    SongTag.objects.filter(song=second).delete()
    SongTagFactory.create(song=second, label="Piano")
    assert selectors.tag_counts() == [("Piano", 1)]


def test_tag_counts_are_counted_once_until_the_catalog_changes(django_assert_num_queries) -> None:
    _tagged("Music", "Guitar")
    selectors.tag_counts()

    # The catalog's stamp only: the song count, the latest song change and the latest tag.
    with django_assert_num_queries(3):
        assert selectors.tag_counts() == [("Guitar", 1), ("Music", 1)]


@pytest.mark.parametrize("sort", ["newest", "title", "oldest"])
def test_a_tag_lists_the_same_songs_whether_it_is_common_or_rare(monkeypatch: pytest.MonkeyPatch, sort: str) -> None:
    for n in range(12):
        _tagged("Music", *(["Jazz"] if n % 3 == 0 else []))
    SongFactory.create()

    def listed(tag: str, walk_above: int) -> list[str]:
        monkeypatch.setattr(selectors, "_WALK_ABOVE", walk_above)
        monkeypatch.setattr(selectors, "_COUNT_WALK_ABOVE", walk_above)
        songs = selectors.song_list(tag=tag, sort=sort)
        counted = selectors.song_list(tag=tag, to_count=True).count()
        assert counted == len(songs)
        return [str(song.pk) for song in songs]

    for tag in ("music", "JAZZ", "Piano"):
        # Walking the sort's index (a common tag) and reading the label index (a rare one) give one list.
        assert listed(tag, walk_above=0) == listed(tag, walk_above=10**9)
    assert len(listed("jazz", walk_above=0)) == 4


def test_songs_being_deleted_are_left_out_of_the_tag_counts() -> None:
    _tagged("Music", "Guitar")
    _tagged("Music")
    going = SongTag.objects.get(label="Guitar").song
    assert lifecycle.transition(going, from_=SongStatus.READY, to=SongStatus.DELETING)

    assert selectors.tag_counts() == [("Music", 1)]
    assert selectors.songs_tagged("music") == 1 == len(selectors.song_list(tag="music"))


@pytest.mark.parametrize("status", ["", *SongStatus.values])
def test_the_list_count_is_the_number_of_songs_the_list_shows(status: str) -> None:
    for value, many in zip(SongStatus.values, (2, 1, 3, 5, 1, 2), strict=True):
        SongFactory.create_batch(many, status=value)

    shown = selectors.song_list(status=status).count()

    assert selectors.listed_count(status) == shown
    assert shown == {"": 12, SongStatus.DELETING: 0}.get(status, shown)
