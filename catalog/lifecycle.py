"""The song lifecycle: which status may follow which, and the one guarded way to change it.

Every status change is a compare-and-set: a single UPDATE ... WHERE status IN (...) that reports whether it
happened. A caller whose transition is refused has lost a race (the song was deleted, confirmed, expired or
finished by someone else) and must stop and undo what it added instead of writing over the winner.

    pending_upload ─confirm─▶ uploaded ─start─▶ processing ─▶ ready
                                  ▲                  │          │
                                  └──retry/re-embed── failed ◀──┘ (file missing)
    any state ─delete─▶ deleting (terminal: the row is removed once everything else is)
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any
from uuid import UUID

from django.utils import timezone

from catalog.models import Song, SongStatus

S = SongStatus

ALLOWED: dict[str, frozenset[str]] = {
    S.PENDING_UPLOAD: frozenset({S.UPLOADED, S.DELETING}),
    S.UPLOADED: frozenset({S.PROCESSING, S.FAILED, S.DELETING}),
    # processing → processing: a redelivered ingest starts over on the same song.
    S.PROCESSING: frozenset({S.PROCESSING, S.READY, S.FAILED, S.DELETING}),
    # ready → ready: a re-embed swaps the model of a song that stays searchable.
    S.READY: frozenset({S.READY, S.UPLOADED, S.FAILED, S.DELETING}),
    S.FAILED: frozenset({S.UPLOADED, S.DELETING}),
    # deleting → deleting: a delete that stopped half-way is run again; nothing else leaves this state.
    S.DELETING: frozenset({S.DELETING}),
}

ANY: frozenset[str] = frozenset(ALLOWED)
# States in which the song's file is expected in storage.
HAS_FILE: frozenset[str] = frozenset({S.UPLOADED, S.PROCESSING, S.READY})


class TransitionNotAllowed(ValueError):
    """A caller asked for a change the lifecycle never allows (a bug, not a race)."""


def transition(song: Song | UUID, *, from_: str | Iterable[str], to: str, **fields: Any) -> bool:
    """Move the song to `to` if it is still in one of `from_`, setting `fields` in the same UPDATE.

    Returns False when the song is in another state or gone; the caller lost a race and must not act as if it won.
    """
    sources = frozenset({from_} if isinstance(from_, str) else from_)
    refused = sorted(source for source in sources if to not in ALLOWED[source])
    if refused or not sources:
        raise TransitionNotAllowed(f"a song cannot go from {', '.join(refused) or 'nowhere'} to {to}")
    pk = song.pk if isinstance(song, Song) else song
    now = timezone.now()
    changed = Song.objects.filter(pk=pk, status__in=sources).update(status=to, updated_at=now, **fields) == 1
    if changed and isinstance(song, Song):
        song.status, song.updated_at = to, now
        for name, value in fields.items():
            if not hasattr(value, "resolve_expression"):  # F() and other expressions need a refresh
                setattr(song, name, value)
    return changed


def status_of(song: Song | UUID) -> str | None:
    """The song's status as the database has it now, or None when the row is gone."""
    pk = song.pk if isinstance(song, Song) else song
    return Song.objects.filter(pk=pk).values_list("status", flat=True).first()


def is_going(song: Song | UUID) -> bool:
    """The song is being deleted or already gone: anything still stored for it is an orphan."""
    return status_of(song) in {None, S.DELETING}
