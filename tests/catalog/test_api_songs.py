from __future__ import annotations

from pathlib import Path

import pytest

from catalog.models import SongStatus
from tests import audio
from tests.factories import SongFactory, SongTagFactory

pytestmark = pytest.mark.django_db


def test_it_lists_songs_newest_first_with_pagination(api) -> None:
    for _ in range(3):
        SongFactory.create()

    body = api.get("/api/songs/").json()

    assert body["count"] == 3
    created = [song["created_at"] for song in body["results"]]
    assert created == sorted(created, reverse=True)


def test_it_searches_by_title_artist_album_and_file_name(api) -> None:
    SongFactory.create(title="Harbour Lights", artist="Ana", original_file_name="a.mp3")
    SongFactory.create(title="Other", artist="Harbourmaster", original_file_name="b.mp3")
    SongFactory.create(title="Third", album="Harbour Album", original_file_name="c.mp3")
    SongFactory.create(title="Fourth", original_file_name="harbour-demo.mp3")
    SongFactory.create(title="Unrelated", original_file_name="d.mp3")

    results = api.get("/api/songs/", {"search": "harbour"}).json()["results"]

    assert {song["title"] for song in results} == {"Harbour Lights", "Other", "Third", "Fourth"}


def test_it_filters_by_status_and_rejects_unknown_status(api) -> None:
    SongFactory.create(status=SongStatus.FAILED)
    SongFactory.create(status=SongStatus.READY)

    assert api.get("/api/songs/", {"status": "failed"}).json()["count"] == 1
    assert api.get("/api/songs/", {"status": "bogus"}).status_code == 400


def test_song_detail_has_status_tags_and_a_playback_url(api) -> None:
    song = SongFactory.create(title="Night Drive", artist="Tape", album="Roads")

    body = api.get(f"/api/songs/{song.pk}/").json()

    assert body["status"] == "ready"
    assert (body["title"], body["artist"], body["album"]) == ("Night Drive", "Tape", "Roads")
    assert body["playback_url"].startswith("/storage/media/")


def test_an_unknown_song_id_is_not_found(api) -> None:
    assert api.get("/api/songs/6f1c1a5e-0000-4000-8000-000000000000/").status_code == 404
    assert api.get("/api/songs/not-a-uuid/").status_code == 404
    assert api.get("/api/songs/6f1c1a5e-0000-4000-8000-000000000000/more-like-this/").status_code == 404


def test_more_like_this_finds_the_same_family_and_never_the_song_itself(upload, api, tmp_path: Path) -> None:
    # Two families: sustained harmonic chords and percussive noise bursts.
    chords = [
        upload(audio.write(tmp_path / f"chord-{i}.mp3", audio.chord(notes, 5.0)))
        for i, notes in enumerate([[220, 277, 330], [196, 247, 294], [262, 330, 392]])
    ]
    drums = [
        upload(audio.write(tmp_path / f"drums-{i}.mp3", audio.noise_bursts(5.0, bpm=bpm, seed=i)))
        for i, bpm in enumerate([100, 120, 140])
    ]
    assert all(song.status == SongStatus.READY for song in chords + drums)

    for family in (chords, drums):
        for song in family:
            body = api.get(f"/api/songs/{song.pk}/more-like-this/", {"limit": 2}).json()
            ids = [result["song"]["id"] for result in body["results"]]
            assert str(song.pk) not in ids
            assert set(ids) == {str(s.pk) for s in family if s.pk != song.pk}, body
            scores = [result["score"] for result in body["results"]]
            assert scores == sorted(scores, reverse=True)

    everything = api.get(f"/api/songs/{chords[0].pk}/more-like-this/", {"limit": 10}).json()
    assert len(everything["results"]) == 5
    assert str(chords[0].pk) not in {result["song"]["id"] for result in everything["results"]}
    # Fewer than the limit, but every other ready song is there: the list is complete.
    assert (everything["complete"], everything["notice"]) == (True, "")


def test_a_short_list_missing_ready_songs_says_the_index_has_not_caught_up(
    upload, api, tmp_path: Path, monkeypatch
) -> None:
    from embeddings.index.local import LocalVectorIndex

    songs = [
        upload(audio.write(tmp_path / f"chord-{i}.mp3", audio.chord(notes, 3.0)))
        for i, notes in enumerate([[220, 277, 330], [196, 247, 294], [262, 330, 392]])
    ]
    real_search = LocalVectorIndex.search

    def lagging(self, vector, limit, exclude_file=None):
        # The newest song is stored and marked ready, but the index does not serve it yet (as Atlas may not).
        return [hit for hit in real_search(self, vector, limit, exclude_file) if hit.song_id != songs[2].pk]

    monkeypatch.setattr(LocalVectorIndex, "search", lagging)

    body = api.get(f"/api/songs/{songs[0].pk}/more-like-this/", {"limit": 10}).json()
    assert [result["song"]["id"] for result in body["results"]] == [str(songs[1].pk)]
    assert body["complete"] is False
    assert body["notice"].startswith("1 ready song is not in these results yet")

    full = api.get(f"/api/songs/{songs[0].pk}/more-like-this/", {"limit": 1}).json()
    assert (full["complete"], full["notice"]) == (True, "")

    page = api.get(f"/songs/{songs[0].pk}/")
    assert "1 ready song is not in these results yet" in page.content.decode()


def test_more_like_this_for_a_song_not_ready_says_so(api) -> None:
    song = SongFactory.create(status=SongStatus.PROCESSING)

    response = api.get(f"/api/songs/{song.pk}/more-like-this/")

    assert response.status_code == 409
    assert "ready" in response.json()["detail"]


def test_more_like_this_refuses_a_song_embedded_with_another_model(api) -> None:
    song = SongFactory.create(embedding_model="panns-cnn14")

    response = api.get(f"/api/songs/{song.pk}/more-like-this/")

    assert response.status_code == 409
    assert "features" in response.json()["detail"]


def test_more_like_this_validates_limit(api) -> None:
    song = SongFactory.create(embedding_model="features")

    assert api.get(f"/api/songs/{song.pk}/more-like-this/", {"limit": 0}).status_code == 400
    assert api.get(f"/api/songs/{song.pk}/more-like-this/", {"limit": "x"}).status_code == 400


def test_system_endpoint_names_the_active_model(api) -> None:
    body = api.get("/api/system/").json()

    assert body["embedding_model"] == "features"
    assert body["embedding_dim"] == 222
    assert "audio/mpeg" in body["accepted_content_types"]


def test_it_filters_by_sound_tag_and_shows_tags_best_first(api) -> None:
    guitar = SongFactory.create(title="Strummed")
    SongTagFactory.create(song=guitar, label="Guitar", score=0.4)
    SongTagFactory.create(song=guitar, label="Music", score=0.9)
    drums = SongFactory.create(title="Beats")
    SongTagFactory.create(song=drums, label="Drum", score=0.7)

    results = api.get("/api/songs/", {"tag": "guitar"}).json()["results"]

    assert [song["title"] for song in results] == ["Strummed"]
    assert results[0]["tags"] == [{"label": "Music", "score": 0.9}, {"label": "Guitar", "score": 0.4}]
    tags = api.get("/api/tags/").json()["results"]
    assert {"label": "Guitar", "songs": 1} in tags


def test_similar_to_a_clip_finds_its_family_without_adding_the_clip(upload, api, tmp_path: Path) -> None:
    chord = upload(audio.write(tmp_path / "chord.mp3", audio.chord([220, 277, 330], 5.0)))
    drums = upload(audio.write(tmp_path / "drums.mp3", audio.noise_bursts(5.0, bpm=120)))
    clip = audio.write(tmp_path / "query.mp3", audio.noise_bursts(3.0, bpm=126, seed=7))

    with open(clip, "rb") as handle:
        response = api.post("/api/search/similar/", {"clip": handle, "limit": 2}, format="multipart")

    assert response.status_code == 200, response.json()
    ids = [result["song"]["id"] for result in response.json()["results"]]
    assert ids == [str(drums.pk), str(chord.pk)]
    assert api.get("/api/songs/").json()["count"] == 2


def test_similar_to_a_clip_rejects_non_audio_with_a_reason(api, eager_celery, tmp_path: Path) -> None:
    bogus = tmp_path / "query.mp3"
    bogus.write_bytes(b"definitely not audio" * 100)

    with open(bogus, "rb") as handle:
        response = api.post("/api/search/similar/", {"clip": handle}, format="multipart")

    assert response.status_code == 400
    assert "could not be decoded" in response.json()["detail"]


def test_more_like_this_answers_503_with_the_reason_while_the_index_is_unreachable(
    upload, api, tmp_path: Path, monkeypatch
) -> None:
    from embeddings.index import IndexUnavailable
    from embeddings.index.local import LocalVectorIndex

    song = upload(audio.write(tmp_path / "one.mp3", audio.chord([220, 277, 330], 3.0)))

    def down(self, vector, limit, exclude_file=None):
        raise IndexUnavailable("MongoDB is unavailable while searching (connection refused)")

    monkeypatch.setattr(LocalVectorIndex, "search", down)

    response = api.get(f"/api/songs/{song.pk}/more-like-this/")
    assert response.status_code == 503
    assert response.json()["code"] == "service_unavailable"
    assert "Search is unavailable right now" in response.json()["detail"]
    assert "connection refused" in response.json()["detail"]


@pytest.mark.parametrize("endpoint", ["/api/search/similar/", "/api/identify/"])
def test_an_oversize_clip_is_refused_with_413_before_its_body_is_read(api, settings, monkeypatch, endpoint) -> None:
    import io

    from rest_framework.parsers import MultiPartParser

    settings.SIMILAR_CLIP_MAX_MB = 1
    parsed: list[bool] = []
    real_parse = MultiPartParser.parse

    def recording_parse(self, *args, **kwargs):
        parsed.append(True)
        return real_parse(self, *args, **kwargs)

    monkeypatch.setattr(MultiPartParser, "parse", recording_parse)
    clip = io.BytesIO(b"\0" * (2 * 1024 * 1024))
    clip.name = "big.wav"

    response = api.post(endpoint, {"clip": clip}, format="multipart")

    assert response.status_code == 413
    assert response.json()["code"] == "too_large"
    assert parsed == []  # nothing of the body was read, so nothing reached a temporary file


@pytest.mark.parametrize("endpoint", ["/api/search/similar/", "/api/identify/"])
def test_a_chunked_clip_of_unknown_size_is_refused_before_its_body_is_read(api, monkeypatch, endpoint) -> None:
    import io

    from rest_framework.parsers import MultiPartParser

    parsed: list[bool] = []
    monkeypatch.setattr(MultiPartParser, "parse", lambda *args, **kwargs: parsed.append(True))
    clip = io.BytesIO(b"\0" * 1024)
    clip.name = "clip.wav"

    response = api.post(endpoint, {"clip": clip}, format="multipart", HTTP_TRANSFER_ENCODING="chunked")

    assert response.status_code == 411
    assert response.json()["code"] == "length_required"
    assert parsed == []
