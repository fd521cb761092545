from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from catalog.models import Song, SongStatus, SongTag
from embeddings.index import get_vector_index
from embeddings.models import StoredVector
from embeddings.registry import model_dim
from tests import audio

pytestmark = pytest.mark.django_db


def test_it_ingests_an_mp3_into_a_ready_song_with_tags_and_a_unit_vector(upload, tmp_path: Path) -> None:
    path = audio.write(
        tmp_path / "anthem.mp3", audio.chord([220, 277, 330], 4.0), title="Anthem", artist="The Tones", album="Synth"
    )

    song = upload(path)

    assert song.status == SongStatus.READY, song.failure_reason
    assert (song.title, song.artist, song.album) == ("Anthem", "The Tones", "Synth")
    assert song.duration_seconds == pytest.approx(4.0, abs=0.1)
    assert song.embedding_model == "features"
    assert len(song.sha256) == 64
    vector = get_vector_index("features", model_dim("features")).get(song.id)
    assert vector is not None
    assert np.linalg.norm(vector) == pytest.approx(1.0, abs=1e-5)


def test_it_falls_back_to_the_file_name_when_tags_are_missing(upload, tmp_path: Path) -> None:
    song = upload(audio.write(tmp_path / "untagged-take.wav", audio.tone(330, 2.0)), content_type="audio/wav")

    assert song.status == SongStatus.READY, song.failure_reason
    assert song.title == "untagged-take"


def test_ingesting_the_same_song_twice_leaves_one_vector(upload, tmp_path: Path) -> None:
    song = upload(audio.write(tmp_path / "twice.mp3", audio.tone(440, 2.0)))
    Song.objects.filter(pk=song.pk).update(status=SongStatus.UPLOADED)

    from catalog import pipeline

    pipeline.ingest(song.pk)

    assert StoredVector.objects.filter(song_id=song.pk).count() == 1
    song.refresh_from_db()
    assert song.status == SongStatus.READY
    assert song.ingest_attempts == 2


@pytest.mark.parametrize(
    ("name", "content", "reason"),
    [
        ("notes.mp3", b"this is a text file, not audio\n" * 50, "could not be decoded"),
        ("truncated.mp3", None, "could not be decoded"),
        ("blip.mp3", 0.2, "at least"),
        ("silence.mp3", "silence", "silent"),
    ],
)
def test_it_marks_bad_audio_failed_with_a_reason(upload, tmp_path: Path, name, content, reason) -> None:
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is None:
        good = audio.write(tmp_path / "good.mp3", audio.tone(440, 3.0)).read_bytes()
        path.write_bytes(b"ID3\x03\x00\x00\x00\x00\x00\x00" + bytes(reversed(good[: len(good) // 3])))
    elif content == "silence":
        audio.write(path, np.zeros(3 * audio.RATE, dtype=np.float32))
    else:
        audio.write(path, audio.tone(440, float(content)))

    song = upload(path)

    assert song.status == SongStatus.FAILED
    assert reason in song.failure_reason
    assert not StoredVector.objects.filter(song_id=song.pk).exists()


def test_a_long_file_is_cut_at_the_limit_with_a_note(upload, tmp_path: Path, settings) -> None:
    settings.MAX_AUDIO_SECONDS = 2.0
    song = upload(audio.write(tmp_path / "long.mp3", audio.chord([196, 247], 6.0)))

    assert song.status == SongStatus.READY
    assert song.duration_seconds == pytest.approx(6.0, abs=0.1)
    assert "first 0:02 of 0:06" in song.ingest_note


def test_a_failed_song_can_be_retried_and_become_ready(
    upload, tmp_path: Path, settings, api, django_capture_on_commit_callbacks
) -> None:
    settings.EMBEDDING_MODEL = "panns-cnn14"  # no checkpoint in this test's folder: the ingest fails
    song = upload(audio.write(tmp_path / "retry.mp3", audio.tone(440, 2.0)))
    assert song.status == SongStatus.FAILED
    assert "fetch_model" in song.failure_reason

    settings.EMBEDDING_MODEL = "features"
    with django_capture_on_commit_callbacks(execute=True):
        response = api.post(f"/api/songs/{song.pk}/retry/")

    assert response.status_code == 202
    song.refresh_from_db()
    assert song.status == SongStatus.READY
    assert song.failure_reason == ""


def test_each_ingest_logs_one_structured_line_with_step_durations(upload, tmp_path: Path, caplog) -> None:
    import json
    import logging

    from config.logging import JsonFormatter

    caplog.set_level(logging.INFO, logger="catalog.pipeline")
    song = upload(audio.write(tmp_path / "logged.mp3", audio.tone(440, 2.0)))

    records = [r for r in caplog.records if getattr(r, "event", None) == "ingest"]
    assert len(records) == 1
    line = json.loads(JsonFormatter().format(records[0]))
    assert line["song_id"] == str(song.pk)
    assert line["model"] == "features"
    assert line["device"] == "cpu"
    assert line["outcome"] == "ready"
    assert list(line["steps"]) == ["fetch", "probe", "decode", "embed", "index", "fingerprint", "recording", "tag"]


def test_storage_that_stays_down_fails_the_song_after_its_retries(upload, tmp_path: Path, monkeypatch) -> None:
    from catalog.storage import StorageUnavailable
    from catalog.storage.local import LocalStorage

    attempts = []

    def unreachable(self, key, destination):
        attempts.append(key)
        raise StorageUnavailable("storage timed out")

    monkeypatch.setattr(LocalStorage, "download", unreachable)

    song = upload(audio.write(tmp_path / "poison.mp3", audio.tone(440, 2.0)))

    assert song.status == SongStatus.FAILED
    assert song.failure_reason == "Gave up after 9 attempts: storage timed out"
    assert len(attempts) == 9


def test_an_index_that_is_down_for_a_while_is_retried_and_the_song_ends_ready(
    upload, tmp_path: Path, monkeypatch
) -> None:
    from embeddings.index import IndexUnavailable
    from embeddings.index.local import LocalVectorIndex

    real_upsert = LocalVectorIndex.upsert
    attempts = []

    def down_twice(self, song_id, file, vector):
        attempts.append(song_id)
        if len(attempts) <= 2:
            raise IndexUnavailable("connection refused")
        real_upsert(self, song_id, file, vector)

    monkeypatch.setattr(LocalVectorIndex, "upsert", down_twice)

    song = upload(audio.write(tmp_path / "patient.mp3", audio.chord([220, 330], 3.0)))

    assert song.status == SongStatus.READY, song.failure_reason
    assert song.ingest_attempts == 3
    assert StoredVector.objects.filter(song_id=song.pk).count() == 1


def test_a_song_the_index_never_serves_is_never_marked_ready(upload, tmp_path: Path, monkeypatch) -> None:
    from embeddings.index import IndexUnavailable
    from embeddings.index.local import LocalVectorIndex

    statuses = []

    def never(self, song_id, vector, *, timeout):
        statuses.append(Song.objects.get(pk=song_id).status)
        raise IndexUnavailable("stored but not served yet")

    monkeypatch.setattr(LocalVectorIndex, "wait_searchable", never)

    song = upload(audio.write(tmp_path / "unseen.mp3", audio.chord([220, 330], 3.0)))

    assert song.status == SongStatus.FAILED
    assert song.failure_reason == "Gave up after 9 attempts: stored but not served yet"
    assert set(statuses) == {SongStatus.PROCESSING}


def test_a_panns_ingest_stores_a_512d_vector_and_named_sound_tags(upload, api, tmp_path: Path, settings) -> None:
    from embeddings import panns
    from tests.embeddings.test_panns import save_random_checkpoint, write_labels

    models = tmp_path / "models"
    save_random_checkpoint(panns.CNN10, models / panns.CNN10.checkpoint_file_name)
    names = write_labels(models / "class_labels_indices.csv")
    settings.PANNS_DATA_DIR = models
    settings.PANNS_LABELS = None
    settings.EMBEDDING_MODEL = "panns-cnn10"
    settings.PANNS_TAG_MIN_SCORE = 0.0

    song = upload(audio.write(tmp_path / "tagged.mp3", audio.chord([220, 330], 3.0)))

    assert song.status == SongStatus.READY, song.failure_reason
    assert song.embedding_model == "panns-cnn10"
    vector = get_vector_index("panns-cnn10", 512).get(song.pk)
    assert vector is not None
    assert np.linalg.norm(vector) == pytest.approx(1.0, abs=1e-5)
    tags = api.get(f"/api/songs/{song.pk}/").json()["tags"]
    assert len(tags) == settings.PANNS_TOP_TAGS
    assert all(tag["label"] in names for tag in tags)
    assert [t["score"] for t in tags] == sorted((t["score"] for t in tags), reverse=True)


# --- Races: a competing action runs at an exact point of the ingest (the step is wrapped, nothing sleeps), on its
# own connection (tests/concurrency.py), so that it meets the database's row and write locks ---

STEPS = ["fetch", "decode_audio", "embed", "index", "fingerprint", "tag"]


def _imported_song(tmp_path: Path) -> Song:
    from catalog import services

    song = services.import_file(audio.write(tmp_path / "raced.mp3", audio.chord([220, 277, 330], 3.0)))
    assert song is not None
    return song


def _around(monkeypatch, step: str, when: str, action) -> list[str]:
    """Run `action` once, just before or just after the pipeline's `step`; returns the log of what ran."""
    from catalog import pipeline

    real = getattr(pipeline, step)
    ran: list[str] = []

    def wrapped(*args, **kwargs):
        if when == "before" and not ran:
            ran.append(step)
            action()
        result = real(*args, **kwargs)
        if when == "after" and not ran:
            ran.append(step)
            action()
        return result

    monkeypatch.setattr(pipeline, step, wrapped)
    return ran


def _traces(song: Song, settings) -> dict[str, object]:
    from fingerprints.index import get_fingerprint_index

    return {
        "row": Song.objects.filter(pk=song.pk).exists(),
        "vectors": get_vector_index("features", 222).song_ids().count(song.pk),
        "fingerprints": get_fingerprint_index().song_ids().count(song.pk),
        "object": (settings.LOCAL_STORAGE_ROOT / song.object_key).exists(),
    }


@pytest.mark.parametrize("when", ["before", "after"])
@pytest.mark.parametrize("step", STEPS)
def test_a_delete_arriving_at_any_ingest_step_leaves_nothing_and_the_ingest_ends_quietly(
    tmp_path: Path, settings, monkeypatch, alongside, step, when
) -> None:
    from catalog import pipeline, services

    song = _imported_song(tmp_path)
    ran = _around(
        monkeypatch, step, when, lambda: alongside(lambda: services.delete_song(Song.objects.get(pk=song.pk)))
    )

    pipeline.ingest(song.pk)  # no exception: losing the song to a delete is not an error
    alongside.join()

    assert ran == [step]
    assert _traces(song, settings) == {"row": False, "vectors": 0, "fingerprints": 0, "object": False}


@pytest.mark.parametrize("when", ["before", "after"])
def test_a_delete_arriving_while_the_ingest_marks_the_song_ready_leaves_nothing(
    tmp_path: Path, settings, monkeypatch, alongside, when
) -> None:
    """Inside the transaction that stores the tags and marks the song ready: on PostgreSQL the delete's transition
    waits for that row lock (after) or wins and the ready transition is refused (before)."""
    from catalog import pipeline, services

    song = _imported_song(tmp_path)
    deleting = _around(
        monkeypatch, "_mark_ready", when, lambda: alongside(lambda: services.delete_song(Song.objects.get(pk=song.pk)))
    )

    pipeline.ingest(song.pk)
    alongside.join()

    assert deleting == ["_mark_ready"]
    assert _traces(song, settings) == {"row": False, "vectors": 0, "fingerprints": 0, "object": False}
    assert not SongTag.objects.filter(song_id=song.pk).exists()


@pytest.mark.parametrize(
    ("step", "when"), [("fetch", "after"), ("index", "after"), ("fingerprint", "after"), ("tag", "before")]
)
def test_a_redelivered_ingest_running_alongside_the_first_leaves_one_vector_and_one_fingerprint_set(
    tmp_path: Path, settings, monkeypatch, alongside, step, when
) -> None:
    from catalog import pipeline

    song = _imported_song(tmp_path)
    _around(monkeypatch, step, when, lambda: alongside(lambda: pipeline.ingest(song.pk)))

    pipeline.ingest(song.pk)
    alongside.join()

    assert _traces(song, settings) == {"row": True, "vectors": 1, "fingerprints": 1, "object": True}
    song.refresh_from_db()
    assert song.status == SongStatus.READY
    assert song.ingest_attempts == 2
    assert song.embedding_model == "features"


def test_an_ingest_of_a_song_that_is_not_waiting_for_one_does_nothing(tmp_path: Path, monkeypatch) -> None:
    from catalog import pipeline
    from tests.factories import SongFactory

    fetched = _around(monkeypatch, "fetch", "before", lambda: None)
    for status in (SongStatus.PENDING_UPLOAD, SongStatus.READY, SongStatus.FAILED, SongStatus.DELETING):
        pipeline.ingest(SongFactory.create(status=status).pk)

    assert fetched == []


def test_reembed_leaves_a_song_that_is_not_ready_alone(monkeypatch) -> None:
    from catalog import pipeline
    from tests.factories import SongFactory

    fetched = _around(monkeypatch, "fetch", "before", lambda: None)
    for status in (SongStatus.UPLOADED, SongStatus.PROCESSING, SongStatus.FAILED, SongStatus.DELETING):
        song = SongFactory.create(status=status)
        assert pipeline.reembed(song, "features") is False
        assert Song.objects.get(pk=song.pk).status == status

    assert fetched == []


@pytest.mark.parametrize("step", ["index", "tag"])
def test_a_reembed_whose_song_is_deleted_meanwhile_takes_back_its_new_vector(
    tmp_path: Path, settings, monkeypatch, alongside, step
) -> None:
    from catalog import pipeline, services

    song = _imported_song(tmp_path)
    pipeline.ingest(song.pk)
    song.refresh_from_db()
    _around(monkeypatch, step, "before", lambda: alongside(lambda: services.delete_song(Song.objects.get(pk=song.pk))))

    assert pipeline.reembed(song, "features") is False
    alongside.join()

    assert _traces(song, settings) == {"row": False, "vectors": 0, "fingerprints": 0, "object": False}


@pytest.mark.parametrize("step", ["fetch", "index", "fingerprint", "tag"])
def test_an_edit_saved_during_an_ingest_is_kept_when_the_song_becomes_ready(
    tmp_path: Path, monkeypatch, alongside, step
) -> None:
    from catalog import pipeline, services

    song = _imported_song(tmp_path)

    def edit() -> None:
        services.update_song_details(Song.objects.get(pk=song.pk), title="Edited", artist="Someone", album="")

    ran = _around(monkeypatch, step, "before", lambda: alongside(edit))

    pipeline.ingest(song.pk)
    alongside.join()

    assert ran == [step]
    song.refresh_from_db()
    assert song.status == SongStatus.READY
    assert (song.title, song.artist) == ("Edited", "Someone")


@pytest.mark.parametrize("step", ["index", "tag"])
def test_an_edit_saved_during_a_reembed_is_kept(tmp_path: Path, monkeypatch, alongside, step) -> None:
    from catalog import pipeline, services

    song = _imported_song(tmp_path)
    pipeline.ingest(song.pk)
    song.refresh_from_db()

    def edit() -> None:
        services.update_song_details(Song.objects.get(pk=song.pk), title="Edited", artist="", album="An album")

    _around(monkeypatch, step, "before", lambda: alongside(edit))

    assert pipeline.reembed(song, "features") is True
    alongside.join()

    song.refresh_from_db()
    assert (song.title, song.album) == ("Edited", "An album")
