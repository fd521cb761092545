"""Same recording: found at ingest, shown by the API, the song page and the admin, collapsed in neighbour lists."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from django.contrib.auth.models import User
from django.test import Client

from catalog import recordings, selectors, services
from catalog.models import Recording, RecordingLink, Song, SongStatus
from tests import audio
from tests.fingerprints import music

pytestmark = pytest.mark.django_db

SECONDS = 30.0


def _song(seed: int) -> Any:
    return music.song(seed, SECONDS)


@pytest.fixture
def catalog(upload, tmp_path: Path) -> dict[str, Song]:
    """One recording twice (FLAC, and MP3 trimmed by 2.3 s at the start), and two other songs."""
    original = _song(1)
    trimmed = original[int(2.3 * audio.RATE) :]
    return {
        "original": upload(audio.write(tmp_path / "original.flac", original), content_type="audio/flac"),
        "copy": upload(audio.write(tmp_path / "best-of.mp3", trimmed, title="Track (Best Of)")),
        "other": upload(audio.write(tmp_path / "other.mp3", _song(2), title="Other")),
        "third": upload(audio.write(tmp_path / "third.mp3", _song(3), title="Third")),
    }


def test_two_encodings_of_one_recording_are_linked_and_different_songs_are_not(catalog: dict[str, Song]) -> None:
    assert all(song.status == SongStatus.READY for song in catalog.values())
    original = RecordingLink.objects.get(song=catalog["original"])
    copy = RecordingLink.objects.get(song=catalog["copy"])

    assert original.recording_id == copy.recording_id
    assert not copy.excerpt
    assert copy.offset_seconds == pytest.approx(2.3, abs=0.1)
    assert not RecordingLink.objects.filter(song__in=[catalog["other"], catalog["third"]]).exists()


def test_an_excerpt_is_linked_as_part_of_the_recording(catalog: dict[str, Song], upload, tmp_path: Path) -> None:
    excerpt = _song(1)[int(10 * audio.RATE) : int(25 * audio.RATE)]
    song = upload(audio.write(tmp_path / "radio-edit.mp3", excerpt))

    link = RecordingLink.objects.get(song=song)
    assert link.excerpt
    assert link.recording_id == RecordingLink.objects.get(song=catalog["original"]).recording_id
    assert link.offset_seconds == pytest.approx(10.0, abs=0.2)


def test_a_full_copy_arriving_after_its_excerpt_marks_the_excerpt(upload, tmp_path: Path) -> None:
    full = _song(4)
    excerpt = upload(audio.write(tmp_path / "excerpt.mp3", full[int(5 * audio.RATE) : int(27 * audio.RATE)]))
    whole = upload(audio.write(tmp_path / "whole.flac", full), content_type="audio/flac")

    links = {link.song_id: link for link in RecordingLink.objects.all()}
    assert links[excerpt.pk].recording_id == links[whole.pk].recording_id
    assert links[excerpt.pk].excerpt
    assert not links[whole.pk].excerpt


def test_more_like_this_shows_one_song_per_recording_unless_asked(catalog: dict[str, Song], api) -> None:
    one_recording = {catalog["original"].pk, catalog["copy"].pk}

    collapsed = selectors.more_like_this(catalog["third"], limit=10)
    everything = selectors.more_like_this(catalog["third"], limit=10, duplicates=True)

    assert len({n.song.pk for n in collapsed} & one_recording) == 1
    assert {n.song.pk for n in everything} >= one_recording
    body = api.get(f"/api/songs/{catalog['third'].pk}/more-like-this/").json()
    assert len([r for r in body["results"] if r["song"]["id"] in {str(pk) for pk in one_recording}]) == 1
    assert body["complete"], body["notice"]  # a collapsed copy is not a song the index missed
    included = api.get(f"/api/songs/{catalog['third'].pk}/more-like-this/?duplicates=include").json()
    assert {str(pk) for pk in one_recording} <= {r["song"]["id"] for r in included["results"]}


def test_more_like_this_of_a_song_leaves_out_its_own_copies(catalog: dict[str, Song]) -> None:
    neighbours = selectors.more_like_this(catalog["original"], limit=10)

    assert catalog["copy"].pk not in {n.song.pk for n in neighbours}
    assert catalog["copy"].pk in {n.song.pk for n in selectors.more_like_this(catalog["original"], duplicates=True)}


def test_similar_by_clip_collapses_copies(catalog: dict[str, Song], api, tmp_path: Path) -> None:
    clip = audio.write(tmp_path / "clip.mp3", _song(1)[: int(12 * audio.RATE)])
    ids = {str(catalog["original"].pk), str(catalog["copy"].pk)}

    with clip.open("rb") as handle:
        collapsed = api.post("/api/search/similar/", {"clip": handle}, format="multipart").json()
    with clip.open("rb") as handle:
        included = api.post("/api/search/similar/", {"clip": handle, "duplicates": "include"}, format="multipart")

    assert len([r for r in collapsed["results"] if r["song"]["id"] in ids]) == 1
    assert ids <= {r["song"]["id"] for r in included.json()["results"]}


def test_identify_names_a_recording_held_twice_and_its_runner_up_is_no_copy(
    catalog: dict[str, Song], api, tmp_path: Path
) -> None:
    clip = audio.write(tmp_path / "clip.mp3", _song(1)[int(10 * audio.RATE) : int(20 * audio.RATE)])
    copies = {str(catalog["original"].pk), str(catalog["copy"].pk)}

    with clip.open("rb") as handle:
        body = api.post("/api/identify/", {"clip": handle}, format="multipart").json()

    # Both copies hold the clip; once linked, neither counts as the other's rival.
    assert body["match"] is not None and body["match"]["song"]["id"] in copies
    assert body["runner_up"] is None or body["runner_up"]["song"]["id"] not in copies
    RecordingLink.objects.all().delete()
    with clip.open("rb") as handle:
        unlinked = api.post("/api/identify/", {"clip": handle}, format="multipart").json()
    assert unlinked["match"] is None  # two songs about as good: no confident answer


def test_the_duplicates_api_lists_the_other_copies(catalog: dict[str, Song], api) -> None:
    body = api.get(f"/api/songs/{catalog['original'].pk}/duplicates/").json()

    assert [r["song"]["id"] for r in body["results"]] == [str(catalog["copy"].pk)]
    assert body["results"][0]["excerpt"] is False
    assert api.get(f"/api/songs/{catalog['other'].pk}/duplicates/").json()["results"] == []
    assert api.get("/api/songs/00000000-0000-0000-0000-000000000001/duplicates/").status_code == 404


def test_both_song_pages_name_the_other_copy(catalog: dict[str, Song]) -> None:
    for song, other in (("original", "copy"), ("copy", "original")):
        html = Client().get(f"/songs/{catalog[song].pk}/").content.decode()
        assert "Same recording" in html
        assert f"/songs/{catalog[other].pk}/" in html
    assert "Same recording" not in Client().get(f"/songs/{catalog['other'].pk}/").content.decode()


def test_the_admin_filters_songs_with_duplicates(catalog: dict[str, Song]) -> None:
    client = Client()
    client.force_login(User.objects.create_superuser("admin", "admin@example.com", "pw-admin-12345"))

    with_copies = client.get("/admin/catalog/song/?duplicates=yes").content.decode()
    without = client.get("/admin/catalog/song/?duplicates=no").content.decode()

    assert "Track (Best Of)" in with_copies and "Other" not in with_copies
    assert "Other" in without and "Track (Best Of)" not in without
    assert "has duplicates" in client.get("/admin/catalog/song/").content.decode()


def test_deleting_either_song_leaves_no_link_behind(catalog: dict[str, Song]) -> None:
    services.delete_song(catalog["copy"])

    assert not RecordingLink.objects.filter(song_id=catalog["copy"].pk).exists()
    assert recordings.duplicates_of(catalog["original"]) == []
    assert {n.song.pk for n in selectors.more_like_this(catalog["third"])} >= {catalog["original"].pk}


def test_a_song_deleted_while_a_copy_is_being_linked_is_not_linked(
    catalog: dict[str, Song], upload, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The delete lands between finding the match and writing the link."""
    found = recordings.find_same_recording

    def find_then_delete(*args: Any, **kwargs: Any) -> recordings.RecordingMatch | None:
        match = found(*args, **kwargs)
        assert match is not None
        services.delete_song(Song.objects.get(pk=match.song_id))
        return match

    monkeypatch.setattr(recordings, "find_same_recording", find_then_delete)
    song = upload(audio.write(tmp_path / "third-copy.mp3", _song(3)[int(1.1 * audio.RATE) :]))

    assert song.status == SongStatus.READY
    assert not RecordingLink.objects.filter(song=song).exists()
    assert not Song.objects.filter(pk=catalog["third"].pk).exists()
    assert not RecordingLink.objects.filter(song_id=catalog["third"].pk).exists()


def test_a_song_deleted_after_its_link_takes_its_link_with_it(catalog: dict[str, Song]) -> None:
    recording = RecordingLink.objects.get(song=catalog["original"]).recording_id

    services.delete_song(catalog["original"])

    assert list(RecordingLink.objects.filter(recording_id=recording).values_list("song_id", flat=True)) == [
        catalog["copy"].pk
    ]
    assert Recording.objects.filter(pk=recording).exists()
    assert recordings.duplicates_of(catalog["copy"]) == []


def test_collapsing_a_list_reads_the_links_in_one_query(
    catalog: dict[str, Song], django_assert_num_queries: Any
) -> None:
    songs = list(Song.objects.all())
    with django_assert_num_queries(1):
        kept = recordings.collapse(songs, lambda song: song.pk)
    assert len(kept) == 3


def test_music_that_loops_is_linked_to_the_longer_copy_it_was_cut_from() -> None:
    from fingerprints.index.local import MemoryFingerprintIndex
    from fingerprints.landmarks import landmarks
    from fingerprints.management.commands.evaluate_identify import mix

    loop = music.song(6, 10.0)
    # 80 s of one 10 s loop, each repeat with its own noise: every chunk matches at each repeat about as well.
    long_version = np.concatenate([mix(loop, music.pink_noise(loop.size, seed=k), snr_db=10.0) for k in range(8)])
    short_version = long_version[int(3.3 * audio.RATE) : int(63.3 * audio.RATE)]  # 60 s from 3.3 s in
    index = MemoryFingerprintIndex()
    ids = {"long": uuid.uuid4(), "short": uuid.uuid4()}
    found = {"long": landmarks(long_version), "short": landmarks(short_version)}
    for name, song_id in ids.items():
        index.add(song_id, found[name].hashes, found[name].times)
    lengths = {ids["long"]: 80.0, ids["short"]: 60.0}

    match = recordings.find_same_recording(
        ids["short"], found["short"], durations=lambda songs: {s: lengths[s] for s in songs}, index=index
    )

    # Each chunk votes for every repeat it matches, so all of them agree on the true alignment (or one a loop away).
    assert match is not None and match.song_id == ids["long"] and match.new_is_excerpt
    assert match.share == 1.0
    assert match.offset_seconds % 10.0 == pytest.approx(3.3, abs=0.1)
