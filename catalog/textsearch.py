"""Catalog text search (title, artist, album, file name) on an index each database is good at.

A search matches a song when one of the four fields contains the text, ignoring letter case in any script
(É = é) but not accents (e ≠ é), on both databases:

- PostgreSQL: `UPPER(field) LIKE UPPER('%text%')` (Django's `icontains`), served by pg_trgm GIN indexes on
  `UPPER(field)`, which the migration creates there only.
- SQLite: an FTS5 table with the trigram tokenizer (case folded), kept in step with `catalog_song` by triggers.
  FTS5 rows are keyed by `catalog_song_search`, a table mapping each song's id to a stable integer, because the
  implicit rowid of `catalog_song` is renumbered when SQLite or a migration rebuilds that table. A search shorter
  than a trigram (one or two characters) has no index to use on either database: SQLite then scans with LIKE
  (its case folding covers ASCII, enough for ASCII text) or, for other text, compares the fields folded by Python,
  since SQLite's own lower() knows ASCII only.
"""

from __future__ import annotations

import logging
from typing import Any

from django.db import connections
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import BooleanField, F, Func, Q, QuerySet, Value
from django.db.models.expressions import RawSQL
from django.db.models.functions import StrIndex

logger = logging.getLogger(__name__)

FIELDS = ("title", "artist", "album", "original_file_name")
TRIGRAM = 3
# SQLite walks the sort order when a page of 25 is reached within fewer rows than there are matches to sort:
# matches x (matches / catalog) > 25, i.e. matches² > 25 x catalog (about 1,600 matches in 100k songs).
DENSE_FACTOR = 25
SQLITE_FOLD = "resonance_casefold"
_TRIGGERS = ("catalog_song_search_insert", "catalog_song_search_update", "catalog_song_search_delete")


def matching(songs: QuerySet[Any], text: str, *, to_count: bool = False) -> QuerySet[Any]:
    """`songs` narrowed to those whose title, artist, album or file name contains `text` (see the module doc).

    `to_count`: the queryset will only be counted (up to a limit), so SQLite may plan it for that alone.
    """
    connection = connections[songs.db]
    vendor = connection.vendor
    if vendor == "sqlite" and len(text) >= TRIGRAM:
        phrase = '"' + text.replace('"', '""') + '"'
        if to_count:
            # Driven by the trigram matches through the id map, so a count stopping at a limit reads that many.
            return songs.extra(
                tables=["catalog_song_search"],
                where=[
                    'catalog_song_search.song_id = "catalog_song"."id"',
                    "catalog_song_search.docid IN "
                    "(SELECT rowid FROM catalog_song_search_fts WHERE catalog_song_search_fts MATCH %s)",
                ],
                params=[phrase],
            )
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT count(*) FROM catalog_song_search_fts WHERE catalog_song_search_fts MATCH %s", [phrase]
            )
            matches = cursor.fetchone()[0]
            cursor.execute("SELECT max(docid) FROM catalog_song_search")
            catalog = cursor.fetchone()[0] or 0
        if matches * matches > DENSE_FACTOR * catalog:
            # Many songs match: walk the list's sort index and keep those matching, stopping at the page's end.
            walk = RawSQL(
                'EXISTS (SELECT 1 FROM catalog_song_search AS m WHERE m.song_id = "catalog_song"."id" AND m.docid IN '
                "(SELECT rowid FROM catalog_song_search_fts WHERE catalog_song_search_fts MATCH %s))",
                [phrase],
                output_field=BooleanField(),
            )
            return songs.alias(_matches=walk).filter(_matches=True)
        # Few songs match: read them from the trigram index and sort those alone.
        return songs.filter(
            pk__in=RawSQL(
                "SELECT m.song_id FROM catalog_song_search AS m WHERE m.docid IN "
                "(SELECT rowid FROM catalog_song_search_fts WHERE catalog_song_search_fts MATCH %s)",
                [phrase],
            )
        )
    query = Q()
    if vendor == "sqlite" and not text.isascii():
        folded = {
            f"_folded_{field}": StrIndex(Func(F(field), function=SQLITE_FOLD), Value(text.lower())) for field in FIELDS
        }
        for name in folded:
            query |= Q(**{f"{name}__gt": 0})
        return songs.alias(**folded).filter(query)
    for field in FIELDS:
        query |= Q(**{f"{field}__icontains": text})
    return songs.filter(query)


def match_count(text: str, *, left_out: str, db: str = "default") -> int | None:
    """How many songs match `text`, songs of status `left_out` not counted, when the index can tell without reading
    the songs: on SQLite, the trigram index's matches less those of `left_out` songs (found from the status index: a
    few at most). None where it cannot (PostgreSQL, text shorter than a trigram)."""
    connection = connections[db]
    if connection.vendor != "sqlite" or len(text) < TRIGRAM:
        return None
    phrase = '"' + text.replace('"', '""') + '"'
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM catalog_song_search_fts WHERE catalog_song_search_fts MATCH %s", [phrase])
        matches = int(cursor.fetchone()[0])
        cursor.execute(
            "SELECT count(*) FROM catalog_song AS s WHERE s.status = %s AND EXISTS (SELECT 1 FROM catalog_song_search "
            "AS m WHERE m.song_id = s.id AND m.docid IN "
            "(SELECT rowid FROM catalog_song_search_fts WHERE catalog_song_search_fts MATCH %s))",
            [left_out, phrase],
        )
        return matches - int(cursor.fetchone()[0])


def _casefold(value: str | None) -> str | None:
    return value.lower() if value is not None else None


def register_functions(sender: Any, connection: BaseDatabaseWrapper, **kwargs: Any) -> None:
    """connection_created: give each SQLite connection the Unicode case folding its own lower() lacks."""
    if connection.vendor == "sqlite":
        connection.connection.create_function(SQLITE_FOLD, 1, _casefold, deterministic=True)


SQLITE_SCHEMA = [
    "CREATE TABLE IF NOT EXISTS catalog_song_search (docid INTEGER PRIMARY KEY, song_id char(32) NOT NULL UNIQUE)",
    "CREATE VIRTUAL TABLE IF NOT EXISTS catalog_song_search_fts USING fts5("
    "title, artist, album, original_file_name, tokenize = 'trigram case_sensitive 0')",
]
SQLITE_TRIGGERS = [
    """CREATE TRIGGER IF NOT EXISTS catalog_song_search_insert AFTER INSERT ON catalog_song BEGIN
        INSERT INTO catalog_song_search (song_id) VALUES (new.id);
        INSERT INTO catalog_song_search_fts (rowid, title, artist, album, original_file_name)
        VALUES ((SELECT docid FROM catalog_song_search WHERE song_id = new.id),
                new.title, new.artist, new.album, new.original_file_name);
    END""",
    """CREATE TRIGGER IF NOT EXISTS catalog_song_search_update
    AFTER UPDATE OF id, title, artist, album, original_file_name ON catalog_song
    WHEN old.id IS NOT new.id OR old.title IS NOT new.title OR old.artist IS NOT new.artist
        OR old.album IS NOT new.album OR old.original_file_name IS NOT new.original_file_name
    BEGIN
        UPDATE catalog_song_search SET song_id = new.id WHERE song_id = old.id;
        UPDATE catalog_song_search_fts
        SET title = new.title, artist = new.artist, album = new.album, original_file_name = new.original_file_name
        WHERE rowid = (SELECT docid FROM catalog_song_search WHERE song_id = new.id);
    END""",
    """CREATE TRIGGER IF NOT EXISTS catalog_song_search_delete AFTER DELETE ON catalog_song BEGIN
        DELETE FROM catalog_song_search_fts
        WHERE rowid = (SELECT docid FROM catalog_song_search WHERE song_id = old.id);
        DELETE FROM catalog_song_search WHERE song_id = old.id;
    END""",
]
SQLITE_REBUILD = [
    "DELETE FROM catalog_song_search_fts",
    "DELETE FROM catalog_song_search",
    "INSERT INTO catalog_song_search (song_id) SELECT id FROM catalog_song",
    "INSERT INTO catalog_song_search_fts (rowid, title, artist, album, original_file_name) "
    "SELECT m.docid, s.title, s.artist, s.album, s.original_file_name "
    "FROM catalog_song AS s JOIN catalog_song_search AS m ON m.song_id = s.id",
]
SQLITE_DROP = [
    *(f"DROP TRIGGER IF EXISTS {name}" for name in _TRIGGERS),
    "DROP TABLE IF EXISTS catalog_song_search_fts",
    "DROP TABLE IF EXISTS catalog_song_search",
]

POSTGRES_INDEXES = {f"song_{field}_trgm": field for field in FIELDS}
POSTGRES_SCHEMA = [
    "CREATE EXTENSION IF NOT EXISTS pg_trgm",
    *(
        f"CREATE INDEX IF NOT EXISTS {name} ON catalog_song USING gin ((UPPER({field}::text)) gin_trgm_ops)"
        for name, field in POSTGRES_INDEXES.items()
    ),
]
POSTGRES_DROP = [f"DROP INDEX IF EXISTS {name}" for name in POSTGRES_INDEXES]


def install(connection: BaseDatabaseWrapper) -> None:
    """Create the search index of this database (idempotent); the migration and `ensure_sqlite_index` call it."""
    statements = {"sqlite": [*SQLITE_SCHEMA, *SQLITE_TRIGGERS, *SQLITE_REBUILD], "postgresql": POSTGRES_SCHEMA}
    with connection.cursor() as cursor:
        for statement in statements.get(connection.vendor, []):
            cursor.execute(statement)


def uninstall(connection: BaseDatabaseWrapper) -> None:
    statements = {"sqlite": SQLITE_DROP, "postgresql": POSTGRES_DROP}
    with connection.cursor() as cursor:
        for statement in statements.get(connection.vendor, []):
            cursor.execute(statement)


def ensure_sqlite_index(using: str = "default", **kwargs: Any) -> None:
    """post_migrate: a migration that rebuilds `catalog_song` on SQLite drops its triggers; put them back."""
    connection = connections[using]
    if connection.vendor != "sqlite":
        return
    with connection.cursor() as cursor:
        cursor.execute("SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'catalog_song_search'")
        if cursor.fetchone() is None:
            return  # not migrated this far (or migrated back): nothing to keep in step
        cursor.execute("SELECT name FROM sqlite_master WHERE type = 'trigger' AND tbl_name = 'catalog_song'")
        if set(_TRIGGERS) <= {name for (name,) in cursor.fetchall()}:
            return
    logger.warning("the catalog search index lost its triggers (catalog_song was rebuilt); rebuilding it")
    install(connection)
