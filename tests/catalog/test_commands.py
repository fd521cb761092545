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
