"""Reads of the catalog that are shared between requests: the tag counts."""

from __future__ import annotations

import pytest

from catalog import selectors
from catalog.models import SongTag
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
