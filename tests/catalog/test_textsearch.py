"""Text search gives the same songs on SQLite (FTS5 trigrams) and PostgreSQL (pg_trgm); the suite runs on both."""

from __future__ import annotations

import pytest
from django.db import connection

from catalog import selectors, textsearch
from catalog.models import Song, SongStatus
from tests.conftest import on_postgres
from tests.factories import SongFactory, SongTagFactory

pytestmark = pytest.mark.django_db

CATALOG = [
    # title, artist, album, file name
    ("Love Song", "The Cure", "Disintegration", "01 love song.mp3"),
    ("Élan Vital", "Ωmega Quartet", "Über Alles", "elan.flac"),
    ("Elan", "Plain Ascii", "Nothing Special", "02.mp3"),
    ("Straße", "Kraftwerk", "Autobahn", "strasse.wav"),
    ("100% Pure", "Under_Score", 'Say "Hi"', "pure.mp3"),
    ("Abbey", "Beatles", "Road", "x.mp3"),
    ("ab", "", "", "tiny.mp3"),
]


@pytest.fixture
def catalog() -> dict[str, Song]:
    return {
        title: SongFactory.create(title=title, artist=artist, album=album, original_file_name=name)
        for title, artist, album, name in CATALOG
    }


def _titles(search: str) -> set[str]:
    return {song.title for song in selectors.song_list(search=search)}


@pytest.mark.parametrize(
    ("search", "expected"),
    [
        ("love", {"Love Song"}),
        ("LOVE SONG", {"Love Song"}),
        ("cure", {"Love Song"}),  # artist
        ("integr", {"Love Song"}),  # album
        ("01 love", {"Love Song"}),  # file name
        ("élan", {"Élan Vital"}),  # accents count: "Elan" is another word
        ("ÉLAN", {"Élan Vital"}),  # case ignored beyond ASCII
        ("elan", {"Elan", "Élan Vital"}),  # "Elan" title, "elan.flac" file name; not "Élan"
        ("über", {"Élan Vital"}),
        ("ÜBER ALLES", {"Élan Vital"}),
        ("ωMEGA", {"Élan Vital"}),
        ("straße", {"Straße"}),
        ("strasse", {"Straße"}),  # its file name only: ß is not folded to ss
        ("100%", {"100% Pure"}),  # % and _ are text, not wildcards
        ("0%", {"100% Pure"}),
        ("r_s", {"100% Pure"}),
        ("%", {"100% Pure"}),
        ("_", {"100% Pure"}),
        ('"hi"', {"100% Pure"}),  # quotes are text too
        ("beatles road", set()),  # a match lies within one field
        ("abbey", {"Abbey"}),
        ("ab", {"ab", "Abbey"}),  # two letters: no trigram, the fields are compared folded
        ("é", {"Élan Vital"}),
        ("É", {"Élan Vital"}),
        ("Ω", {"Élan Vital"}),
        ("zz", set()),
        ("nothing at all", set()),
    ],
)
@pytest.mark.parametrize("plan", ["few matches", "many matches"])
def test_a_search_matches_any_field_ignoring_case_but_not_accents(
    catalog, monkeypatch, plan: str, search: str, expected: set[str]
) -> None:
    # SQLite reads few matches from the trigram index and walks the sort order for many: the same songs either way.
    monkeypatch.setattr(textsearch, "DENSE_FACTOR", 10**9 if plan == "few matches" else 0)

    assert _titles(search) == expected
    assert selectors.song_list(search=search, to_count=True).count() == len(expected)  # as the page counts them


def test_the_api_searches_the_same_way(catalog, api) -> None:
    body = api.get("/api/songs/", {"search": "ÜBER"}).json()

    assert [song["title"] for song in body["results"]] == ["Élan Vital"]
    assert body["count"] == 1


def test_the_index_follows_creates_edits_bulk_updates_and_deletes(catalog) -> None:
    from catalog import services

    song = catalog["Love Song"]
    services.update_song_details(song, title="Lullaby", artist="The Cure", album="")
    assert _titles("lullaby") == {"Lullaby"}
    assert _titles("disintegration") == set()

    Song.objects.filter(pk=song.pk).update(artist="Robert Smith")
    assert _titles("smith") == {"Lullaby"}
    assert _titles("cure") == set()

    Song.objects.bulk_create(
        [Song(object_key="uploads/n/new.mp3", original_file_name="new.mp3", title="Fresh", size=1)]
    )
    assert _titles("fresh") == {"Fresh"}

    song.delete()
    assert _titles("lullaby") == set()
    assert _titles("smith") == set()


def test_songs_being_deleted_are_not_found(catalog) -> None:
    Song.objects.filter(pk=catalog["Abbey"].pk).update(status=SongStatus.DELETING)

    assert _titles("abbey") == set()
    assert _titles("ab") == {"ab"}


@pytest.mark.skipif("not on_postgres()", reason="pg_trgm indexes exist on PostgreSQL only")
def test_postgres_serves_a_search_from_its_trigram_indexes(catalog) -> None:
    with connection.cursor() as cursor:
        cursor.execute("SET enable_seqscan = off")  # seven rows: a scan would win without this
        # The matches as the count reads them (the page itself may walk the sort's index and stop early).
        sql, params = selectors.song_list(search="love").order_by().values("pk").query.sql_with_params()
        cursor.execute(f"EXPLAIN {sql}", params)
        plan = "\n".join(row[0] for row in cursor.fetchall())
        cursor.execute("RESET enable_seqscan")

    assert all(name in plan for name in textsearch.POSTGRES_INDEXES), plan


@pytest.mark.skipif("on_postgres()", reason="the FTS5 table and its triggers exist on SQLite only")
def test_sqlite_puts_the_triggers_back_after_a_migration_rebuilds_the_song_table(catalog) -> None:
    with connection.cursor() as cursor:
        for name in ("catalog_song_search_insert", "catalog_song_search_update", "catalog_song_search_delete"):
            cursor.execute(f"DROP TRIGGER {name}")  # what a table rebuild by the schema editor does
    SongFactory.create(title="Arrived Unindexed")
    assert _titles("unindexed") == set()

    textsearch.ensure_sqlite_index()

    assert _titles("unindexed") == {"Arrived Unindexed"}
    assert _titles("love") == {"Love Song"}
    SongFactory.create(title="Arrived Later")
    assert _titles("later") == {"Arrived Later"}


def test_the_vendor_helper_matches_the_connection() -> None:
    assert on_postgres() == (connection.vendor == "postgresql")


def test_a_broad_search_counts_up_to_a_limit_and_says_so(api, monkeypatch) -> None:
    from catalog.api import pagination

    monkeypatch.setattr(pagination, "SEARCH_COUNT_LIMIT", 3)
    monkeypatch.setattr(pagination.SongPagination, "page_size", 2)
    for n in range(5):
        SongFactory.create(title=f"Blue {n}")
    SongFactory.create(title="Red")

    pages = [api.get("/api/songs/", {"search": "blue", "page": page}).json() for page in (1, 2, 3)]

    assert [(p["count"], p["count_exact"], p["next"] is not None) for p in pages] == [
        (3, False, True),  # more than 3 match: "3+"
        (4, False, True),  # counted as far as this page needs, and one more
        (5, True, False),  # the last page knows them all
    ]
    assert sorted(song["title"] for p in pages for song in p["results"]) == [f"Blue {n}" for n in range(5)]
    narrow = api.get("/api/songs/", {"search": "blue 4"}).json()
    assert (narrow["count"], narrow["count_exact"]) == (1, True)
    listing = api.get("/api/songs/").json()
    assert (listing["count"], listing["count_exact"]) == (6, True)


def test_a_tag_alone_is_counted_exactly_and_with_a_status_up_to_the_limit(api, monkeypatch) -> None:
    from catalog.api import pagination

    monkeypatch.setattr(pagination, "SEARCH_COUNT_LIMIT", 3)
    monkeypatch.setattr(pagination.SongPagination, "page_size", 2)
    for n in range(5):
        SongTagFactory.create(song=SongFactory.create(title=f"Song {n}"), label="Music", score=0.9)
    SongFactory.create(title="Untagged")

    alone = api.get("/api/songs/", {"tag": "music"}).json()
    ready = api.get("/api/songs/", {"tag": "music", "status": "ready"}).json()
    last = api.get("/api/songs/", {"tag": "music", "status": "ready", "page": 3}).json()

    # A tag alone: the shared tag counts know how many songs hold it.
    assert (alone["count"], alone["count_exact"], len(alone["results"])) == (5, True, 2)
    assert (ready["count"], ready["count_exact"]) == (3, False)
    assert (last["count"], last["count_exact"], len(last["results"])) == (5, True, 1)


@pytest.mark.parametrize("param", ["search", "tag"])
def test_a_page_far_past_the_end_of_a_search_or_tag_is_not_found(catalog, api, param: str) -> None:
    SongTagFactory.create(song=SongFactory.create(title="Love song"), label="love", score=0.9)

    response = api.get("/api/songs/", {param: "love", "page": 4240076668904701165568})  # past any SQL LIMIT

    assert response.status_code == 404
    assert api.get("/api/songs/", {param: "love", "page": 1}).json()["count"] >= 1


@pytest.mark.parametrize("param", ["search", "tag"])
def test_a_null_character_in_a_search_or_tag_is_a_bad_request(catalog, api, param: str) -> None:
    response = api.get("/api/songs/", {param: "lo\x00ve"})  # PostgreSQL text cannot hold one

    assert response.status_code == 400
    assert "Null characters" in response.json()[param]


def test_a_searchs_matches_are_counted_from_the_index_as_the_list_shows_them() -> None:
    for n in range(4):
        SongFactory.create(title=f"Blue {n}")
    SongFactory.create(title="Blue Gone", status=SongStatus.DELETING)
    SongFactory.create(artist="Deep Blue", status=SongStatus.FAILED)
    SongFactory.create(title="Red")

    counted = selectors.search_match_count("BLUE")

    assert selectors.song_list(search="BLUE").count() == 5
    assert counted == (None if on_postgres() else 5)  # PostgreSQL counts its matches by reading them
    assert selectors.search_match_count("bl") is None  # shorter than a trigram: no index to count from
