from __future__ import annotations

import csv
import io
import json
import shutil
from pathlib import Path

import pytest
from django.core.management import call_command

from catalog.models import Song, SongStatus
from tests import audio
from tests.factories import SongFactory, SongTagFactory

pytestmark = pytest.mark.django_db(transaction=True)


def test_import_audio_adds_a_folder_skipping_duplicates_and_reporting_broken_files(tmp_path: Path, capsys) -> None:
    folder = tmp_path / "music"
    audio.write(folder / "a" / "one.mp3", audio.chord([220, 277, 330], 3.0), title="One")
    audio.write(folder / "b" / "two.wav", audio.noise_bursts(3.0))
    shutil.copy(folder / "a" / "one.mp3", folder / "b" / "one-copy.mp3")
    (folder / "broken.mp3").write_bytes(b"\xff\xfb" + b"garbage" * 500)
    (folder / "notes.txt").write_text("not audio")

    call_command("import_audio", str(folder), "--workers", "2")

    out = capsys.readouterr().out
    assert "4 files: 3 added (2 ready, 1 failed, 0 queued), 1 duplicates skipped" in out
    assert "broken.mp3" in out
    songs = {s.original_file_name: s for s in Song.objects.all()}
    assert set(songs) == {"one.mp3", "two.wav", "broken.mp3"}
    assert songs["one.mp3"].status == SongStatus.READY
    assert songs["one.mp3"].title == "One"
    assert songs["broken.mp3"].status == SongStatus.FAILED

    call_command("import_audio", str(folder))

    assert Song.objects.count() == 3
    assert "0 added" in capsys.readouterr().out


def test_export_catalog_writes_songs_and_tags_as_csv_and_json(tmp_path: Path) -> None:
    song = SongFactory.create(title="Tagged, with a comma", artist="A")
    SongTagFactory.create(song=song, label="Piano", score=0.8)

    call_command("export_catalog", "--format", "json", "--output", str(tmp_path / "songs.json"))
    stdout = io.StringIO()
    call_command("export_catalog", stdout=stdout)

    rows = json.loads((tmp_path / "songs.json").read_text())
    assert rows[0]["title"] == "Tagged, with a comma"
    assert rows[0]["tags"] == [{"label": "Piano", "score": 0.8}]
    parsed = list(csv.DictReader(io.StringIO(stdout.getvalue())))
    assert parsed[0]["title"] == "Tagged, with a comma"
    assert parsed[0]["tags"] == "Piano:0.8"


def test_catalog_stats_summarises_status_models_and_tags() -> None:
    SongFactory.create(duration_seconds=1800, embedding_model="features")
    SongFactory.create(duration_seconds=1800, embedding_model="features", status=SongStatus.FAILED)
    SongTagFactory.create(label="Drum")
    out = io.StringIO()

    call_command("catalog_stats", stdout=out)

    text = out.getvalue()
    assert "Songs: 3" in text
    assert "audio: 1.00 h" in text
    assert "failed          1" in text
    assert "Drum" in text


def _flaky_index(monkeypatch, failing_file: str, failures: int | None) -> list[str]:
    """The index refuses `failing_file`'s vector `failures` times (None: always), then stores it."""
    from catalog import pipeline
    from embeddings.index import IndexUnavailable

    real_index = pipeline.index
    refused: list[str] = []

    def flaky(song, *args, **kwargs):
        if song.original_file_name == failing_file and (failures is None or len(refused) < failures):
            refused.append(song.original_file_name)
            raise IndexUnavailable("index connection reset")
        return real_index(song, *args, **kwargs)

    monkeypatch.setattr(pipeline, "index", flaky)
    return refused


def test_a_transient_error_in_the_middle_of_import_audio_is_retried_and_reported(
    tmp_path: Path, settings, monkeypatch, capsys
) -> None:
    settings.INGEST_RETRY_BACKOFF_SECONDS = 0
    for i, name in enumerate(["a.mp3", "b.mp3", "c.mp3"]):
        audio.write(tmp_path / "music" / name, audio.chord([220 + 50 * i, 330 + 50 * i], 2.0))
    refused = _flaky_index(monkeypatch, "b.mp3", failures=2)

    call_command("import_audio", str(tmp_path / "music"), "--workers", "1")

    out = capsys.readouterr().out
    assert refused == ["b.mp3", "b.mp3"]
    assert "3 added (3 ready, 0 failed, 0 queued)" in out
    assert "2 transient errors retried" in out
    assert "retried: b.mp3: index connection reset" in out
    assert set(Song.objects.values_list("status", flat=True)) == {SongStatus.READY}


def test_a_transient_error_that_outlasts_the_retries_leaves_that_song_retryable_and_the_run_goes_on(
    tmp_path: Path, settings, monkeypatch, capsys
) -> None:
    settings.INGEST_RETRY_BACKOFF_SECONDS = 0
    for i, name in enumerate(["a.mp3", "b.mp3", "c.mp3"]):
        audio.write(tmp_path / "music" / name, audio.chord([220 + 50 * i, 330 + 50 * i], 2.0))
    refused = _flaky_index(monkeypatch, "b.mp3", failures=None)

    call_command("import_audio", str(tmp_path / "music"), "--workers", "2", "--retries", "2")

    out = capsys.readouterr().out
    assert len(refused) == 3
    assert "3 added (2 ready, 1 failed, 0 queued)" in out
    assert "failed: b.mp3: Gave up after 3 attempts: index connection reset" in out
    stuck = Song.objects.get(original_file_name="b.mp3")
    assert stuck.status == SongStatus.FAILED  # retryable: its file is still stored
    assert (settings.LOCAL_STORAGE_ROOT / stuck.object_key).exists()
    assert Song.objects.filter(status=SongStatus.READY).count() == 2


def test_storage_down_while_registering_a_file_is_retried(tmp_path: Path, settings, monkeypatch, capsys) -> None:
    from catalog.storage import StorageUnavailable
    from catalog.storage.local import LocalStorage

    settings.INGEST_RETRY_BACKOFF_SECONDS = 0
    audio.write(tmp_path / "music" / "a.mp3", audio.tone(440, 2.0))
    real_put = LocalStorage.put
    refused: list[str] = []

    def put_once_refused(self, key, source, *, content_type):
        if not refused:
            refused.append(key)
            raise StorageUnavailable("storage timed out")
        return real_put(self, key, source, content_type=content_type)

    monkeypatch.setattr(LocalStorage, "put", put_once_refused)

    call_command("import_audio", str(tmp_path / "music"))

    assert "1 added (1 ready" in capsys.readouterr().out
    assert Song.objects.count() == 1
