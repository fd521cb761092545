from __future__ import annotations

import ast
import threading
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from django.conf import settings
from django.db import transaction
from django.db.models import F

from catalog import lifecycle
from catalog.models import Song, SongStatus
from tests.concurrency import PATIENCE_SECONDS, Actor
from tests.factories import SongFactory

pytestmark = pytest.mark.django_db

CATALOG = Path(__file__).resolve().parents[2] / "catalog"


def test_a_transition_happens_only_from_the_states_it_names() -> None:
    song = SongFactory.create(status=SongStatus.UPLOADED)

    assert lifecycle.transition(song, from_=SongStatus.UPLOADED, to=SongStatus.PROCESSING)
    assert not lifecycle.transition(song, from_=SongStatus.UPLOADED, to=SongStatus.PROCESSING)

    song.refresh_from_db()
    assert song.status == SongStatus.PROCESSING


def test_a_transition_sets_its_fields_in_the_same_update_and_reports_on_the_instance() -> None:
    song = SongFactory.create(status=SongStatus.UPLOADED, ingest_attempts=1)
    before = song.updated_at

    assert lifecycle.transition(
        song,
        from_={SongStatus.UPLOADED},
        to=SongStatus.FAILED,
        failure_reason="no",
        ingest_attempts=F("ingest_attempts") + 1,
    )

    assert (song.status, song.failure_reason) == (SongStatus.FAILED, "no")
    stored = Song.objects.get(pk=song.pk)
    assert (stored.status, stored.failure_reason, stored.ingest_attempts) == (SongStatus.FAILED, "no", 2)
    assert stored.updated_at > before


def test_a_refused_transition_changes_nothing() -> None:
    song = SongFactory.create(status=SongStatus.DELETING, failure_reason="")

    assert not lifecycle.transition(song.pk, from_=SongStatus.PROCESSING, to=SongStatus.READY, failure_reason="x")

    assert Song.objects.get(pk=song.pk).failure_reason == ""


def test_a_transition_of_a_song_that_is_gone_is_refused() -> None:
    assert not lifecycle.transition(uuid.uuid4(), from_=lifecycle.ANY, to=SongStatus.DELETING)


@pytest.mark.parametrize(
    ("source", "target"),
    [
        (SongStatus.DELETING, SongStatus.READY),
        (SongStatus.DELETING, SongStatus.FAILED),
        (SongStatus.PENDING_UPLOAD, SongStatus.READY),
        (SongStatus.FAILED, SongStatus.READY),
    ],
)
def test_the_table_forbids_changes_no_actor_may_make(source, target) -> None:
    song = SongFactory.create(status=source)

    with pytest.raises(lifecycle.TransitionNotAllowed):
        lifecycle.transition(song, from_=source, to=target)


def test_every_state_can_be_deleted_and_deleting_is_terminal() -> None:
    assert all(SongStatus.DELETING in targets for targets in lifecycle.ALLOWED.values())
    assert lifecycle.ALLOWED[SongStatus.DELETING] == {SongStatus.DELETING}
    assert set(lifecycle.ALLOWED) == set(SongStatus.values)


def test_is_going_covers_deleting_and_deleted_songs() -> None:
    deleting = SongFactory.create(status=SongStatus.DELETING)
    ready = SongFactory.create(status=SongStatus.READY)

    assert lifecycle.is_going(deleting)
    assert lifecycle.is_going(uuid.uuid4())
    assert not lifecycle.is_going(ready)


def _is_status_of_another(target: ast.expr) -> bool:
    owner = target.value if isinstance(target, ast.Attribute) else None
    return (
        isinstance(target, ast.Attribute)
        and target.attr == "status"
        and not (isinstance(owner, ast.Name) and owner.id == "self")
    )


def _status_writes(tree: ast.AST) -> list[int]:
    """Lines that write a song status outside the lifecycle: .update(status=...) or an assignment to .status."""
    lines = []
    for node in ast.walk(tree):
        updates = isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "update"
        if updates and any(keyword.arg == "status" for keyword in node.keywords):  # type: ignore[attr-defined]
            lines.append(node.lineno)  # type: ignore[attr-defined]
        if isinstance(node, ast.Assign) and any(_is_status_of_another(t) for t in node.targets):
            lines.append(node.lineno)
    return lines


def test_no_catalog_code_changes_a_status_except_through_the_lifecycle() -> None:
    offenders = {
        str(path.relative_to(CATALOG)): lines
        for path in CATALOG.rglob("*.py")
        if path.name != "lifecycle.py" and "migrations" not in path.parts
        if (lines := _status_writes(ast.parse(path.read_text())))
    }

    assert offenders == {}


# --- Races on real connections (tests/concurrency.py): an expiry decides to remove a pending upload, and a
# confirmation of that upload commits before the expiry writes. Exactly one of them may win. ---


def _expire_by_compare_and_set(song_id: uuid.UUID, meanwhile: Callable[[], object]) -> bool:
    """As catalog code does it: the guarded transition, one UPDATE ... WHERE status IN (...)."""
    with transaction.atomic():
        meanwhile()
        return lifecycle.transition(song_id, from_=SongStatus.PENDING_UPLOAD, to=SongStatus.DELETING)


def _expire_by_reading_first(song_id: uuid.UUID, meanwhile: Callable[[], object]) -> bool:
    """The bug the guarded transition rules out: read the status, decide, then write the row back.

    SQLite hides it (a writing transaction locks the whole database, so the confirmation waits for this one);
    PostgreSQL under READ COMMITTED lets the confirmation commit between the read and the write, and both win.
    """
    with transaction.atomic():
        song = Song.objects.get(pk=song_id)
        if song.status != SongStatus.PENDING_UPLOAD:
            return False
        meanwhile()
        song.status = SongStatus.DELETING
        song.save(update_fields=["status", "updated_at"])
        return True


def _expire_by_locking_first(song_id: uuid.UUID, meanwhile: Callable[[], object]) -> bool:
    """The other fix: read under a row lock (a no-op on SQLite), so the confirmation waits for the write."""
    with transaction.atomic():
        song = Song.objects.select_for_update().get(pk=song_id)
        if song.status != SongStatus.PENDING_UPLOAD:
            return False
        meanwhile()
        return lifecycle.transition(song, from_=SongStatus.PENDING_UPLOAD, to=SongStatus.DELETING)


ON_POSTGRES = "postgresql" in settings.DATABASES["default"]["ENGINE"]


@pytest.mark.parametrize(
    "expire",
    [
        _expire_by_compare_and_set,
        _expire_by_locking_first,
        pytest.param(
            _expire_by_reading_first,
            marks=pytest.mark.xfail(
                ON_POSTGRES, strict=True, reason="read-then-write: both actors win under PostgreSQL's row locks"
            ),
        ),
    ],
)
def test_an_expiry_and_a_confirmation_racing_on_two_connections_have_exactly_one_winner(expire, alongside) -> None:
    song = SongFactory.create(status=SongStatus.PENDING_UPLOAD)
    confirmed: list[bool] = []

    def confirm() -> None:
        confirmed.append(lifecycle.transition(song.pk, from_=SongStatus.PENDING_UPLOAD, to=SongStatus.UPLOADED))

    expired = expire(song.pk, lambda: alongside(confirm))
    alongside.join()

    winners = [name for name, won in (("expiry", expired), ("confirmation", confirmed[0])) if won]
    assert len(winners) == 1, winners
    assert lifecycle.status_of(song) == (SongStatus.DELETING if expired else SongStatus.UPLOADED)


def test_many_connections_racing_the_same_transition_let_exactly_one_through(alongside) -> None:
    song = SongFactory.create(status=SongStatus.UPLOADED)
    start = threading.Barrier(4)

    def start_ingest() -> bool:
        start.wait(PATIENCE_SECONDS)
        return lifecycle.transition(
            song.pk, from_=SongStatus.UPLOADED, to=SongStatus.PROCESSING, ingest_attempts=F("ingest_attempts") + 1
        )

    racers = [Actor(start_ingest) for _ in range(4)]
    for racer in racers:
        racer.start()
    results = [racer.join() for racer in racers]

    assert sorted(results) == [False, False, False, True]
    assert Song.objects.get(pk=song.pk).ingest_attempts == 1
