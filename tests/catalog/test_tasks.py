"""The ingest through a real Celery worker process and a real Redis broker."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from catalog.models import Song, SongStatus
from tests import audio
from tests.services import REAL_STACK, wait_until

pytestmark = REAL_STACK


@pytest.fixture
def worker(workers: Callable[..., subprocess.Popen[bytes]]) -> subprocess.Popen[bytes]:
    return workers()


def test_a_real_worker_ingests_uploads_queued_through_redis(worker, api, tmp_path: Path) -> None:
    from django.test import Client

    paths = [
        audio.write(tmp_path / "one.mp3", audio.chord([220, 277, 330], 3.0), title="One"),
        audio.write(tmp_path / "two.mp3", audio.noise_bursts(3.0), title="Two"),
        tmp_path / "broken.mp3",
    ]
    paths[2].write_bytes(os.urandom(4096))
    song_ids = []
    for path in paths:
        body = path.read_bytes()
        ticket = api.post(
            "/api/uploads/", {"file_name": path.name, "content_type": "audio/mpeg", "size": len(body)}, format="json"
        ).json()
        assert Client().generic("PUT", ticket["upload"]["url"], body, content_type="audio/mpeg").status_code == 200
        assert api.post(f"/api/songs/{ticket['song_id']}/uploaded/").status_code == 202
        song_ids.append(ticket["song_id"])

    finished = wait_until(
        lambda: Song.objects.filter(pk__in=song_ids, status__in=[SongStatus.READY, SongStatus.FAILED]).count() == 3,
        90,
    )

    log = (tmp_path / "worker.log").read_text(errors="replace")
    assert finished, log
    songs = {song.original_file_name: song for song in Song.objects.filter(pk__in=song_ids)}
    assert songs["one.mp3"].status == SongStatus.READY
    assert songs["one.mp3"].title == "One"
    assert songs["two.mp3"].status == SongStatus.READY
    assert songs["broken.mp3"].status == SongStatus.FAILED
    assert "could not be decoded" in songs["broken.mp3"].failure_reason
    neighbours = api.get(f"/api/songs/{songs['one.mp3'].pk}/more-like-this/").json()["results"]
    assert [n["song"]["id"] for n in neighbours] == [str(songs["two.mp3"].pk)]


def _children(pid: int) -> list[int]:
    result = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True)
    return [int(line) for line in result.stdout.split()]


def test_an_ingest_killed_mid_task_is_redelivered_and_ends_ready_exactly_once(worker, api, tmp_path: Path) -> None:
    import signal

    import numpy as np
    import soundfile as sf
    from django.test import Client

    from embeddings.models import StoredVector

    # Ten minutes of audio keeps the worker busy long enough to be killed in the middle.
    long_song = tmp_path / "long.wav"
    sf.write(long_song, np.tile(audio.chord([220, 277, 330], 10.0), 60), audio.RATE, subtype="PCM_16")
    body = long_song.read_bytes()
    ticket = api.post(
        "/api/uploads/", {"file_name": "long.wav", "content_type": "audio/wav", "size": len(body)}, format="json"
    ).json()
    assert Client().generic("PUT", ticket["upload"]["url"], body, content_type="audio/wav").status_code == 200
    assert wait_until(lambda: bool(_children(worker.pid)), 30), "the worker did not start its pool"
    assert api.post(f"/api/songs/{ticket['song_id']}/uploaded/").status_code == 202
    song = Song.objects.get(pk=ticket["song_id"])

    assert wait_until(lambda: Song.objects.get(pk=song.pk).status == SongStatus.PROCESSING, 60)
    for child in _children(worker.pid):
        os.kill(child, signal.SIGKILL)

    finished = wait_until(lambda: Song.objects.get(pk=song.pk).status == SongStatus.READY, 120)
    log = (tmp_path / "worker.log").read_text(errors="replace")
    assert finished, log
    song.refresh_from_db()
    assert song.ingest_attempts == 2
    assert StoredVector.objects.filter(song_id=song.pk).count() == 1
    assert "WorkerLostError" in log
