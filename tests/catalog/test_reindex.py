from __future__ import annotations

from pathlib import Path
from uuid import UUID

import numpy as np
import pytest
from django.core.management import CommandError, call_command

from catalog import pipeline, services
from catalog.models import Song, SongStatus
from embeddings.base import EmbeddingError
from embeddings.index import IndexUnavailable, get_vector_index
from fingerprints.index import FingerprintIndexUnavailable, get_fingerprint_index
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


@pytest.fixture
def no_backoff(monkeypatch) -> None:
    """Retries follow each other at once, so the tests never sleep."""
    monkeypatch.setattr("catalog.transient.backoff_delay", lambda retry, base: 0.0)


def _flaky(monkeypatch, target: object, name: str, failing: Song, error: Exception, times: int | None) -> list[str]:
    """`target.name` raises `error` for `failing` `times` times (None: always), then does its work."""
    real = getattr(target, name)
    refused: list[str] = []

    def flaky(song, *args, **kwargs):
        if song.pk == failing.pk and (times is None or len(refused) < times):
            refused.append(song.display_title)
            raise error
        return real(song, *args, **kwargs)

    monkeypatch.setattr(target, name, flaky)
    return refused


def _on_its_model(song: Song) -> bool:
    """The song is ready and its recorded model's index holds its vector: searchable, and retryable by reindex."""
    dim = 222 if song.embedding_model == "features" else 4
    return song.status == SongStatus.READY and get_vector_index(song.embedding_model, dim).get(song.pk) is not None


def test_a_transient_error_in_the_middle_of_reindex_is_retried_and_reported(
    catalog_on_old_model, monkeypatch, no_backoff, capsys
) -> None:
    middle = catalog_on_old_model[1]
    refused = _flaky(monkeypatch, pipeline, "index", middle, IndexUnavailable("index connection reset"), times=2)

    call_command("reindex", "--model", "features")

    out = capsys.readouterr().out
    assert refused == [middle.display_title] * 2
    assert "Re-embedded 3 of 3 songs with features" in out
    assert "0 skipped (no longer ready), 0 not moved, 2 transient errors retried" in out
    assert f"retried: {middle.display_title}: index connection reset" in out
    assert set(Song.objects.values_list("status", "embedding_model")) == {(SongStatus.READY, "features")}
    assert get_vector_index("features", 222).get(middle.pk) is not None


def test_a_song_that_keeps_failing_is_reported_and_the_others_are_moved(
    catalog_on_old_model, monkeypatch, no_backoff, capsys
) -> None:
    first, second, third = catalog_on_old_model
    _flaky(monkeypatch, pipeline, "reembed", first, pipeline.IngestFailed("The file is corrupt."), times=None)
    refused = _flaky(monkeypatch, pipeline, "index", second, IndexUnavailable("index down"), times=None)

    with pytest.raises(CommandError, match="2 songs were not moved"):
        call_command("reindex", "--model", "features", "--retries", "2")

    out = capsys.readouterr().out
    assert "Re-embedded 1 of 3 songs with features" in out
    assert f"not moved: {first.display_title}: The file is corrupt." in out
    assert f"not moved: {second.display_title}: Gave up after 3 attempts: index down" in out
    assert len(refused) == 3
    songs = {song.pk: song for song in Song.objects.all()}
    assert songs[third.pk].embedding_model == "features"
    # The songs that failed stay ready on their old model, never half-done, so a later run moves them.
    assert {songs[first.pk].embedding_model, songs[second.pk].embedding_model} == {OLD}
    assert all(_on_its_model(song) for song in songs.values())

    monkeypatch.undo()
    call_command("reindex", "--model", "features")

    assert set(Song.objects.values_list("status", "embedding_model")) == {(SongStatus.READY, "features")}


def test_songs_that_stop_being_ready_during_reindex_are_skipped_and_reported(
    catalog_on_old_model, monkeypatch, capsys
) -> None:
    first, gone, missing = catalog_on_old_model
    real_reembed = pipeline.reembed

    def others_change_the_catalog(song, model_name):
        if song.pk == first.pk:  # while the first song is moved, staff delete one song and another loses its file
            services.delete_song(Song.objects.get(pk=gone.pk))
            services.mark_file_missing(missing.pk)
        return real_reembed(song, model_name)

    monkeypatch.setattr(pipeline, "reembed", others_change_the_catalog)

    call_command("reindex", "--model", "features")

    out = capsys.readouterr().out
    assert "Re-embedded 1 of 3 songs with features" in out
    assert "2 skipped (no longer ready), 0 not moved" in out
    assert f"skipped: {gone.display_title}: no longer ready" in out
    assert not Song.objects.filter(pk=gone.pk).exists()
    assert get_vector_index("features", 222).get(gone.pk) is None
    assert Song.objects.get(pk=missing.pk).status == SongStatus.FAILED
    assert not Song.objects.filter(status=SongStatus.PROCESSING).exists()


def test_a_transient_error_while_fingerprinting_again_is_retried_and_the_run_goes_on(
    upload, tmp_path: Path, monkeypatch, no_backoff, capsys
) -> None:
    from catalog.management.commands import reindex

    tracks = [music.song(seed, seconds=12.0) for seed in (5, 6, 7)]
    songs = [
        upload(audio.write(tmp_path / f"track-{i}.wav", t), content_type="audio/wav") for i, t in enumerate(tracks)
    ]
    SongFingerprints.objects.update(algorithm="landmarks-v0")
    first, flaky, broken = songs
    real_add = reindex.add_song_fingerprints
    refused: list[UUID] = []

    def busy_once(song_id, samples):
        if song_id == flaky.pk and not refused:
            refused.append(song_id)
            raise FingerprintIndexUnavailable("busy")
        return real_add(song_id, samples)

    monkeypatch.setattr(reindex, "add_song_fingerprints", busy_once)
    _flaky(monkeypatch, reindex, "refingerprint", broken, EmbeddingError("the file cannot be decoded"), times=None)

    with pytest.raises(CommandError, match="1 songs were not moved"):
        call_command("reindex")

    out = capsys.readouterr().out
    assert f"Fingerprinted 2 of 3 songs with {ALGORITHM}" in out
    assert "0 skipped (no longer ready), 1 not fingerprinted, 1 transient errors retried" in out
    assert f"retried: {flaky.display_title}: busy" in out
    assert f"not fingerprinted: {broken.display_title}: the file cannot be decoded" in out
    assert set(get_fingerprint_index().song_ids()) == {first.pk, flaky.pk}
    assert set(Song.objects.values_list("status", flat=True)) == {SongStatus.READY}
