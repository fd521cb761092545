from __future__ import annotations

import ast
import uuid
from pathlib import Path

import pytest
from django.db.models import F

from catalog import lifecycle
from catalog.models import Song, SongStatus
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
