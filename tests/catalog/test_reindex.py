from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from django.core.management import call_command

from catalog import pipeline
from catalog.models import Song, SongStatus
from embeddings.index import get_vector_index
from fingerprints.index import get_fingerprint_index
from fingerprints.landmarks import ALGORITHM
from fingerprints.models import SongFingerprints
from fingerprints.selectors import identify
from tests import audio
from tests.fingerprints import music

pytestmark = pytest.mark.django_db

OLD = "old-model"


@pytest.fixture
def catalog_on_old_model(upload, tmp_path: Path) -> list[Song]:
    """Three ready songs whose vectors came from a model the catalog no longer uses."""
    songs = [
        upload(audio.write(tmp_path / f"song-{i}.mp3", audio.chord([220 + 40 * i, 330 + 40 * i], 3.0)))
        for i in range(3)
    ]
    old_index = get_vector_index(OLD, 4)
    for song in songs:
        get_vector_index("features", 222).delete(song.pk)
        old_index.upsert(song.pk, song.object_key, np.array([1, 0, 0, 0], dtype=np.float32))
    Song.objects.filter(pk__in=[s.pk for s in songs]).update(embedding_model=OLD)
    return songs


def test_reindex_moves_every_song_to_the_model(catalog_on_old_model, capsys) -> None:
    call_command("reindex", "--model", "features")

    features = get_vector_index("features", 222)
    for song in Song.objects.all():
        assert song.embedding_model == "features"
        assert song.status == SongStatus.READY
        assert features.get(song.pk) is not None
    assert "Re-embedded 3 of 3 songs with features" in capsys.readouterr().out


def test_an_interrupted_reindex_leaves_no_song_half_done_and_resumes(catalog_on_old_model, monkeypatch) -> None:
    real_reembed = pipeline.reembed
    calls = []

    def interrupted_after_first(song, model_name):
        calls.append(song.pk)
        if len(calls) == 2:
            raise KeyboardInterrupt
        real_reembed(song, model_name)

    monkeypatch.setattr(pipeline, "reembed", interrupted_after_first)
    with pytest.raises(KeyboardInterrupt):
        call_command("reindex", "--model", "features")

    features = get_vector_index("features", 222)
    old = get_vector_index(OLD, 4)
    for song in Song.objects.all():
        # Each song is wholly on one model: its recorded model always has its vector.
        index = features if song.embedding_model == "features" else old
        assert index.get(song.pk) is not None
    assert Song.objects.filter(embedding_model="features").count() == 1

    monkeypatch.setattr(pipeline, "reembed", real_reembed)
    call_command("reindex", "--model", "features")

    assert Song.objects.filter(embedding_model="features").count() == 3


def test_reindex_with_nothing_to_do_says_so(upload, tmp_path: Path, capsys) -> None:
    upload(audio.write(tmp_path / "one.mp3", audio.tone(440, 2.0)))

    call_command("reindex")

    out = capsys.readouterr().out
    assert "already embedded with features" in out
    assert f"already has {ALGORITHM} fingerprints" in out


def test_reindex_fingerprints_again_the_songs_fingerprinted_by_another_algorithm(
    upload, tmp_path: Path, capsys
) -> None:
    tracks = [music.song(seed, seconds=20.0) for seed in (5, 6)]
    old, current = (
        upload(audio.write(tmp_path / f"track-{i}.wav", t), content_type="audio/wav") for i, t in enumerate(tracks)
    )
    SongFingerprints.objects.filter(song_id=old.pk).update(algorithm="landmarks-v0")
    assert set(get_fingerprint_index().song_ids()) == {current.pk}

    call_command("reindex")

    assert f"Fingerprinted 1 of 1 songs with {ALGORITHM}" in capsys.readouterr().out
    assert set(get_fingerprint_index().song_ids()) == {old.pk, current.pk}
    match = identify(music.excerpt(tracks[0], 4.0, 6.0))
    assert match is not None and match.song_id == old.pk
