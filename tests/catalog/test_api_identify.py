from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from catalog import services
from catalog.models import Song, SongStatus
from tests import audio
from tests.fingerprints.music import excerpt, song, white_noise

pytestmark = pytest.mark.django_db


def _post(api, path: Path):
    with open(path, "rb") as handle:
        return api.post("/api/identify/", {"clip": handle}, format="multipart")


def test_it_identifies_a_noisy_excerpt_of_an_ingested_song_with_its_offset(upload, api, tmp_path: Path) -> None:
    tracks = [song(seed, seconds=30.0) for seed in range(3)]
    songs = [
        upload(audio.write(tmp_path / f"track-{i}.wav", t), content_type="audio/wav") for i, t in enumerate(tracks)
    ]
    clip = excerpt(tracks[1], 12.0, 6.0)
    noisy = clip + 0.3 * np.std(clip) * white_noise(clip.size, seed=5)
    query = audio.write(tmp_path / "query.mp3", noisy.astype(np.float32))

    body = _post(api, query).json()

    assert body["match"]["song"]["id"] == str(songs[1].pk)
    assert body["match"]["offset_seconds"] == pytest.approx(12.0, abs=0.1)
    assert body["match"]["confidence"] >= 0.5


def test_a_clip_from_outside_the_catalog_is_no_match(upload, api, tmp_path: Path) -> None:
    # Two songs, so that chance is also judged by the runner-up: in a one-song catalog only chance_level() is,
    # and these synthetic songs share one pitch and beat grid far more than recordings do.
    for seed in (1, 2):
        upload(audio.write(tmp_path / f"known-{seed}.wav", song(seed, seconds=20.0)), content_type="audio/wav")
    stranger = audio.write(tmp_path / "stranger.mp3", excerpt(song(99, seconds=20.0), 2.0, 8.0))

    body = _post(api, stranger).json()

    assert body["match"] is None
    assert "No catalog song" in body["detail"]


def test_a_deleted_song_is_no_longer_identified(upload, api, tmp_path: Path) -> None:
    track = song(3, seconds=20.0)
    gone = upload(audio.write(tmp_path / "gone.wav", track), content_type="audio/wav")
    services.delete_song(gone)

    body = _post(api, audio.write(tmp_path / "q.wav", excerpt(track, 5.0, 6.0))).json()

    assert body["match"] is None


def test_identify_rejects_non_audio(api, tmp_path: Path) -> None:
    bogus = tmp_path / "x.mp3"
    bogus.write_bytes(b"nope" * 100)

    response = _post(api, bogus)

    assert response.status_code == 400


def test_a_song_that_is_not_ready_is_skipped_for_the_next_ready_one(upload, api, tmp_path: Path) -> None:
    track = song(4, seconds=20.0)
    ready = upload(audio.write(tmp_path / "ready.wav", track), content_type="audio/wav")
    # The same recording again, slightly quieter (another file), then stuck being deleted with its fingerprints.
    stuck = upload(audio.write(tmp_path / "stuck.wav", 0.8 * track), content_type="audio/wav")
    Song.objects.filter(pk=stuck.pk).update(status=SongStatus.DELETING)

    body = _post(api, audio.write(tmp_path / "q.wav", excerpt(track, 5.0, 6.0))).json()

    assert body["match"]["song"]["id"] == str(ready.pk)
    assert body["match"]["offset_seconds"] == pytest.approx(5.0, abs=0.1)
