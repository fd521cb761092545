"""How well more-like-this groups a catalog's songs: precision@k by album and by artist against chance, and the
share of duplicate recordings in the lists. Read-only; `evaluate_similarity` runs it on a throwaway catalog."""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass

from catalog import recordings, selectors
from catalog.errors import CatalogError
from catalog.models import Song, SongStatus


@dataclass(frozen=True)
class Scores:
    k: int
    songs: int  # queries that had a neighbour list
    album_precision: float
    album_chance: float
    artist_precision: float
    artist_chance: float
    duplicate_share_collapsed: float  # of list entries that repeat a recording already in the list (or the query's)
    duplicate_share_included: float  # the same with duplicates=include

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def _key(text: str) -> str:
    return text.strip().casefold()


def _duplicate_share(query: Song, neighbours: list[selectors.Neighbour], recording: dict) -> tuple[int, int]:
    seen = {recording[query.pk]} if query.pk in recording else set()
    repeats = 0
    for neighbour in neighbours:
        r = recording.get(neighbour.song.pk)
        if r is None:
            continue
        if r in seen:
            repeats += 1
        seen.add(r)
    return repeats, len(neighbours)


def evaluate(ks: list[int]) -> list[Scores]:
    """Scores at each k, over every ready song of the active model that has an album (or artist)."""
    songs = list(Song.objects.filter(status=SongStatus.READY).order_by("created_at", "id"))
    albums = Counter(_key(s.album) for s in songs if s.album.strip())
    artists = Counter(_key(s.artist) for s in songs if s.artist.strip())
    recording = recordings.recording_of(s.pk for s in songs)
    top = max(ks)
    lists: list[tuple[Song, list[selectors.Neighbour], list[selectors.Neighbour]]] = []
    for song in songs:
        try:
            collapsed = selectors.more_like_this(song, limit=top)
            included = selectors.more_like_this(song, limit=top, duplicates=True)
        except CatalogError:
            continue  # not searchable (another model, not indexed): left out of the scores
        lists.append((song, collapsed, included))
    others = max(1, len(songs) - 1)
    results = []
    for k in ks:
        hits = {"album": [0, 0], "artist": [0, 0]}
        chance = {"album": [0.0, 0], "artist": [0.0, 0]}
        repeats = {"collapsed": [0, 0], "included": [0, 0]}
        for song, collapsed, included in lists:
            for name, counts, value in (("album", albums, song.album), ("artist", artists, song.artist)):
                if not value.strip() or not collapsed[:k]:
                    continue
                same = sum(_key(getattr(n.song, name)) == _key(value) for n in collapsed[:k])
                hits[name][0] += same
                hits[name][1] += len(collapsed[:k])
                chance[name][0] += (counts[_key(value)] - 1) / others
                chance[name][1] += 1
            for mode, found in (("collapsed", collapsed[:k]), ("included", included[:k])):
                r, n = _duplicate_share(song, found, recording)
                repeats[mode][0] += r
                repeats[mode][1] += n
        results.append(
            Scores(
                k=k,
                songs=len(lists),
                album_precision=hits["album"][0] / max(1, hits["album"][1]),
                album_chance=chance["album"][0] / max(1, chance["album"][1]),
                artist_precision=hits["artist"][0] / max(1, hits["artist"][1]),
                artist_chance=chance["artist"][0] / max(1, chance["artist"][1]),
                duplicate_share_collapsed=repeats["collapsed"][0] / max(1, repeats["collapsed"][1]),
                duplicate_share_included=repeats["included"][0] / max(1, repeats["included"][1]),
            )
        )
    return results
