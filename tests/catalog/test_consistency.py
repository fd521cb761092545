from __future__ import annotations

import uuid
from pathlib import Path

import numpy as np
import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from catalog.models import Song, SongStatus
from embeddings.index import get_vector_index
from tests import audio

pytestmark = pytest.mark.django_db


def test_a_consistent_catalog_is_reported_as_such(upload, tmp_path: Path, capsys) -> None:
    upload(audio.write(tmp_path / "fine.mp3", audio.tone(440, 2.0)))

    call_command("check_consistency")

    assert "Consistent" in capsys.readouterr().out


def test_it_finds_and_repairs_orphans_in_every_direction(
    upload, tmp_path: Path, settings, django_capture_on_commit_callbacks, capsys
) -> None:
    index = get_vector_index("features", 222)
    unindexed = upload(audio.write(tmp_path / "unindexed.mp3", audio.tone(440, 2.0)))
    index.delete(unindexed.pk)  # crash between storing the vector and marking ready, seen from the other side
    lost_file = upload(audio.write(tmp_path / "lost.mp3", audio.tone(550, 2.0)))
    (settings.LOCAL_STORAGE_ROOT / lost_file.object_key).unlink()
    half_deleted = upload(audio.write(tmp_path / "half.mp3", audio.tone(660, 2.0)))
    Song.objects.filter(pk=half_deleted.pk).update(status=SongStatus.DELETING)
    ghost = uuid.uuid4()
    index.upsert(ghost, "uploads/ghost/ghost.mp3", np.eye(222, dtype=np.float32)[0])
    stray = settings.LOCAL_STORAGE_ROOT / "uploads" / str(uuid.uuid4()) / "stray.mp3"
    stray.parent.mkdir(parents=True)
    stray.write_bytes(b"left behind")

    # Six: the half-deleted song also still has its vector.
    with pytest.raises(CommandError, match="6 problems"):
        call_command("check_consistency")
    with django_capture_on_commit_callbacks(execute=True):
        call_command("check_consistency", "--fix")

    assert index.get(ghost) is None
    assert not stray.exists()
    assert not Song.objects.filter(pk=half_deleted.pk).exists()
    lost_file.refresh_from_db()
    assert lost_file.status == SongStatus.FAILED
    assert "missing from storage" in lost_file.failure_reason
    unindexed.refresh_from_db()
    assert unindexed.status == SongStatus.READY
    assert index.get(unindexed.pk) is not None
    call_command("check_consistency")
    assert "Consistent" in capsys.readouterr().out
