from __future__ import annotations

import uuid
from pathlib import Path

import numpy as np
import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from catalog import consistency, pipeline, services
from catalog.models import Song, SongStatus
from catalog.pipeline import NO_LANDMARKS_NOTE
from catalog.storage import get_storage
from embeddings.index import get_vector_index
from fingerprints.index import get_fingerprint_index
from tests import audio
from tests.factories import SongFactory

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

    # Seven: the half-deleted song also still has its vector and its fingerprints.
    with pytest.raises(CommandError, match="7 problems"):
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


def _fingerprinted() -> list[uuid.UUID]:
    return get_fingerprint_index().song_ids()


def test_it_finds_and_repairs_fingerprints_in_both_directions(
    upload, tmp_path: Path, django_capture_on_commit_callbacks, capsys
) -> None:
    unprinted = upload(audio.write(tmp_path / "unprinted.mp3", audio.chord([220, 277, 330], 3.0)))
    get_fingerprint_index().remove(unprinted.pk)
    ghost = uuid.uuid4()
    get_fingerprint_index().add(ghost, np.arange(50, dtype=np.uint32), np.arange(50, dtype=np.uint32))

    with pytest.raises(CommandError, match="2 problems"):
        call_command("check_consistency")
    out = capsys.readouterr().out
    assert "fingerprints without a song" in out
    assert "ready songs without fingerprints" in out
    with django_capture_on_commit_callbacks(execute=True):
        call_command("check_consistency", "--fix")

    assert ghost not in _fingerprinted()
    assert unprinted.pk in _fingerprinted()
    assert Song.objects.get(pk=unprinted.pk).status == SongStatus.READY
    call_command("check_consistency")
    assert "Consistent" in capsys.readouterr().out


def test_a_ready_song_too_quiet_to_fingerprint_is_not_reported(tmp_path: Path, capsys) -> None:
    song = SongFactory.create(ingest_note=NO_LANDMARKS_NOTE, embedding_model="")
    get_storage().put(
        song.object_key, audio.write(tmp_path / "quiet.mp3", audio.tone(440, 1.0)), content_type="audio/mpeg"
    )

    call_command("check_consistency")

    assert "Consistent" in capsys.readouterr().out


def test_repair_checks_each_finding_again_and_leaves_what_is_live_alone(upload, tmp_path: Path, settings) -> None:
    song = upload(audio.write(tmp_path / "live.mp3", audio.chord([220, 330], 3.0)))
    stale = consistency.Report(
        orphan_vectors=[("features", song.pk)],
        orphan_fingerprints=[song.pk],
        orphan_objects=[song.object_key],
        missing_vectors=[song.pk],
        missing_fingerprints=[song.pk],
        missing_files=[song.pk],
    )

    consistency.repair(stale)

    song.refresh_from_db()
    assert song.status == SongStatus.READY
    assert get_vector_index("features", 222).get(song.pk) is not None
    assert song.pk in _fingerprinted()
    assert (settings.LOCAL_STORAGE_ROOT / song.object_key).exists()


def test_check_consistency_fix_during_an_ingest_repairs_nothing_that_is_live(
    tmp_path: Path, settings, monkeypatch, capsys, alongside
) -> None:
    song = services.import_file(audio.write(tmp_path / "busy.mp3", audio.chord([220, 277, 330], 3.0)))
    assert song is not None
    real_index = pipeline.index
    checked: list[bool] = []

    def index_then_check(*args, **kwargs):
        real_index(*args, **kwargs)
        if not checked:
            checked.append(True)
            alongside(lambda: call_command("check_consistency", "--fix"))

    monkeypatch.setattr(pipeline, "index", index_then_check)

    pipeline.ingest(song.pk)
    alongside.join()

    assert checked
    song.refresh_from_db()
    assert song.status == SongStatus.READY, song.failure_reason
    assert get_vector_index("features", 222).get(song.pk) is not None
    assert song.pk in _fingerprinted()
    assert (settings.LOCAL_STORAGE_ROOT / song.object_key).exists()


def test_a_song_ingested_while_the_check_lists_the_catalog_is_not_taken_for_an_orphan(
    tmp_path: Path, settings, monkeypatch, alongside
) -> None:
    real_songs = consistency._songs
    arrived: list[Song] = []

    def ingest_one() -> None:
        song = services.import_file(audio.write(tmp_path / "new.mp3", audio.chord([196, 247], 3.0)))
        assert song is not None
        pipeline.ingest(song.pk)
        arrived.append(song)

    def ingest_one_then_list():
        if not arrived:  # the song arrives after the indexes and storage were listed, before the songs are
            alongside(ingest_one).join()
        return real_songs()

    monkeypatch.setattr(consistency, "_songs", ingest_one_then_list)
    queued: list[object] = []
    monkeypatch.setattr(services, "_queue_ingest", queued.append)

    consistency.repair(consistency.inspect())

    song = Song.objects.get(pk=arrived[0].pk)
    assert song.status == SongStatus.READY
    assert get_vector_index("features", 222).get(song.pk) is not None
    assert song.pk in _fingerprinted()
    assert (settings.LOCAL_STORAGE_ROOT / song.object_key).exists()
    assert queued == []
