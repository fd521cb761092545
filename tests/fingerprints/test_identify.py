"""Identification through the product path: services write to the local index, selectors.identify reads it."""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from derived.store import forget_held
from fingerprints.index import get_fingerprint_index
from fingerprints.index.local import LocalFingerprintIndex
from fingerprints.landmarks import landmarks
from fingerprints.management.commands.evaluate_identify import mix, mp3_roundtrip
from fingerprints.models import SongFingerprints
from fingerprints.selectors import examine, identify
from fingerprints.services import add_song_fingerprints, remove_song_fingerprints
from tests.fingerprints.music import excerpt, pink_noise, song, white_noise

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(("seed", "start", "seconds"), [(11, 3.0, 5.0), (12, 11.37, 5.0), (13, 20.5, 3.0)])
def test_it_names_the_song_and_offset_of_a_clean_excerpt(catalog: dict[int, uuid.UUID], seed, start, seconds) -> None:
    match = identify(excerpt(song(seed), start, seconds))

    assert match is not None
    assert match.song_id == catalog[seed]
    assert match.offset_seconds == pytest.approx(start, abs=0.1)
    assert match.confidence > 0.9
    assert match.matches > 10 * match.runner_up_matches


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg encodes the MP3 queries")
@pytest.mark.parametrize("noise", [white_noise, pink_noise])
def test_it_survives_noise_at_5_db_and_reencoding_as_64_kbps_mp3(
    catalog: dict[int, uuid.UUID], noise: Any, tmp_path: Path
) -> None:
    clean = excerpt(song(14), 8.25, 6.0)
    noisy = mix(clean, noise(clean.size, seed=3), snr_db=5.0)
    query = mp3_roundtrip(noisy, "64k", tmp_path)

    match = identify(query)

    assert match is not None
    assert match.song_id == catalog[14]
    assert match.offset_seconds == pytest.approx(8.25, abs=0.1)


@pytest.mark.parametrize(
    "query",
    [
        pytest.param(lambda: excerpt(song(99), 5.0, 8.0), id="a song not in the catalog"),
        pytest.param(lambda: 0.1 * pink_noise(8 * 32000, seed=5), id="pink noise"),
        pytest.param(lambda: np.zeros(8 * 32000, dtype=np.float32), id="silence"),
    ],
)
def test_it_answers_no_match_for_audio_not_in_the_catalog(catalog: dict[int, uuid.UUID], query: Any) -> None:
    assert identify(query()) is None


def test_removing_a_song_removes_its_fingerprints(catalog: dict[int, uuid.UUID]) -> None:
    clip = excerpt(song(12), 4.0, 5.0)
    assert identify(clip) is not None

    remove_song_fingerprints(catalog[12])
    remove_song_fingerprints(catalog[12])  # a second time is not an error

    assert not SongFingerprints.objects.filter(song_id=catalog[12]).exists()
    match = identify(clip)
    assert match is None or match.song_id != catalog[12]
    assert get_fingerprint_index().stats().songs == 3


def test_adding_a_song_again_replaces_its_fingerprints(catalog: dict[int, uuid.UUID]) -> None:
    clip = excerpt(song(11), 12.0, 5.0)
    before = identify(clip)
    stats_before = get_fingerprint_index().stats()

    count = add_song_fingerprints(catalog[11], song(11))

    assert SongFingerprints.objects.filter(song_id=catalog[11]).count() == 1
    stats = get_fingerprint_index().stats()
    assert (stats.songs, stats.hashes) == (stats_before.songs, stats_before.hashes)
    after = identify(clip)
    assert before is not None and after is not None
    assert after.song_id == catalog[11] and after.matches == before.matches
    assert SongFingerprints.objects.get(song_id=catalog[11]).count == count


def test_a_replaced_song_is_matched_by_its_new_audio_only(catalog: dict[int, uuid.UUID]) -> None:
    add_song_fingerprints(catalog[13], song(77))

    old = identify(excerpt(song(13), 6.0, 5.0))
    new = identify(excerpt(song(77), 6.0, 5.0))

    assert old is None or old.song_id != catalog[13]
    assert new is not None and new.song_id == catalog[13]


def test_writes_of_other_processes_reach_a_loaded_table(catalog: dict[int, uuid.UUID]) -> None:
    assert identify(excerpt(song(11), 2.0, 4.0)) is not None  # this process has loaded its table
    late = uuid.uuid4()
    found = landmarks(song(21))
    # Another process (e.g. the ingest worker) writes through its own index object.
    LocalFingerprintIndex().add(late, found.hashes, found.times)

    match = identify(excerpt(song(21), 9.0, 4.0))
    assert match is not None and match.song_id == late

    # ...and deletes.
    LocalFingerprintIndex().remove(late)
    match = identify(excerpt(song(21), 9.0, 4.0))
    assert match is None or match.song_id != late


def test_a_fresh_process_loads_the_table_from_the_database(catalog: dict[int, uuid.UUID]) -> None:
    forget_held()

    match = identify(excerpt(song(14), 25.0, 4.0))

    assert match is not None and match.song_id == catalog[14]
    assert get_fingerprint_index().stats().songs == 4


def test_a_song_without_landmarks_keeps_no_fingerprints(db: None) -> None:
    song_id = uuid.uuid4()

    assert add_song_fingerprints(song_id, np.zeros(5 * 32000, dtype=np.float32)) == 0

    assert not SongFingerprints.objects.filter(song_id=song_id).exists()


def test_identify_reads_at_most_the_configured_seconds(catalog: dict[int, uuid.UUID], settings: Any) -> None:
    settings.FINGERPRINT_MAX_QUERY_SECONDS = 3.0
    # The first 3 s are from song 12; what follows (song 11) is never looked at.
    clip = np.concatenate([excerpt(song(12), 10.0, 3.0), excerpt(song(11), 0.0, 20.0)])

    match = identify(clip)

    assert match is not None and match.song_id == catalog[12]


def test_thresholds_come_from_settings(catalog: dict[int, uuid.UUID], settings: Any) -> None:
    clip = excerpt(song(11), 5.0, 4.0)
    match = identify(clip)
    assert match is not None

    settings.FINGERPRINT_MIN_MATCHES = match.matches + 1
    assert identify(clip) is None
    settings.FINGERPRINT_MIN_MATCHES = 1
    settings.FINGERPRINT_MIN_CONFIDENCE = 1.01
    assert identify(clip) is None


def test_examine_keeps_the_best_match_that_the_thresholds_turn_down(
    catalog: dict[int, uuid.UUID], settings: Any
) -> None:
    clip = excerpt(song(11), 5.0, 4.0)
    settings.FINGERPRINT_MIN_CONFIDENCE = 1.01

    found = examine(clip)

    assert identify(clip) is None and found.match is None
    assert found.best is not None and found.best.song_id == catalog[11]
    assert found.best.query_hashes == len(found.query) > 0
    assert len(found.hits) >= found.best.matches


def test_it_refuses_audio_that_is_not_mono(catalog: dict[int, uuid.UUID]) -> None:
    with pytest.raises(ValueError, match="mono"):
        identify(np.zeros((32000, 2), dtype=np.float32))


def test_songs_the_live_filter_leaves_out_are_passed_over_for_the_next_song(catalog: dict[int, uuid.UUID]) -> None:
    # The same recording stored twice: a song being deleted whose fingerprints are still there, and a ready one.
    gone, kept = uuid.uuid4(), uuid.uuid4()
    for song_id in (gone, kept):
        add_song_fingerprints(song_id, song(31))
    clip = excerpt(song(31), 7.0, 5.0)
    asked: list[list[uuid.UUID]] = []

    def live(song_ids: list[uuid.UUID]) -> set[uuid.UUID]:
        asked.append(song_ids)
        return set(song_ids) - {gone}

    match = identify(clip, live=live)

    assert match is not None and match.song_id == kept
    assert match.offset_seconds == pytest.approx(7.0, abs=0.1)
    assert match.runner_up is None or match.runner_up.song_id != gone
    assert len(asked) == 1 and gone in asked[0]
    # Without the filter the two copies tie, which is no confident answer.
    assert identify(clip) is None


def test_copies_of_the_best_songs_recording_are_no_rival_to_it(catalog: dict[int, uuid.UUID]) -> None:
    first, second, other = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    add_song_fingerprints(first, song(31))
    add_song_fingerprints(second, mix(song(31), pink_noise(song(31).size, seed=2), snr_db=20.0))  # another copy
    clip = excerpt(song(31), 7.0, 5.0)
    asked: list[list[uuid.UUID]] = []

    def recording_of(song_ids: list[uuid.UUID]) -> dict[uuid.UUID, int]:
        asked.append(song_ids)
        return {song_id: 1 for song_id in song_ids if song_id in (first, second)} | {other: 2}

    match = identify(clip, recording_of=recording_of)

    assert match is not None and match.song_id == first
    assert match.offset_seconds == pytest.approx(7.0, abs=0.1)
    assert match.runner_up is None or match.runner_up.song_id not in (first, second)
    assert len(asked) == 1 and {first, second} <= set(asked[0])
    assert identify(clip) is None  # unlinked, the two copies are about as good: no confident answer


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg encodes the MP3 queries")
def test_a_lookup_budget_scores_the_shortlisted_songs_as_a_whole_lookup_would(
    catalog: dict[int, uuid.UUID], settings: Any, tmp_path: Path
) -> None:
    clean = excerpt(song(13), 12.5, 6.0)
    query = mp3_roundtrip(mix(clean, pink_noise(clean.size, seed=8), snr_db=5.0), "64k", tmp_path)
    settings.FINGERPRINT_LOOKUP_BUDGET = 0
    whole = identify(query)
    # A budget far below the clip's hits: the shortlist comes from a sample, its songs are read from the database.
    settings.FINGERPRINT_LOOKUP_BUDGET, settings.FINGERPRINT_SHORTLIST = 40, 2

    sampled = identify(query)

    assert whole is not None and whole.song_id == catalog[13]
    assert sampled is not None and sampled.song_id == catalog[13]
    assert (sampled.matches, sampled.offset_seconds, sampled.background) == (
        whole.matches,
        whole.offset_seconds,
        whole.background,
    )
