"""`evaluate_similarity`: a throwaway catalog built with the product's ingest, scored by album, artist and copies."""

from __future__ import annotations

import json
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from catalog.models import Song
from tests import audio
from tests.fingerprints import music


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    folder = tmp_path / "corpus"
    first = music.song(11, 20.0)
    audio.write(folder / "a1.mp3", first, title="A1", artist="Band", album="Alpha")
    audio.write(folder / "a2.mp3", music.song(12, 20.0), title="A2", artist="Band", album="Alpha")
    audio.write(folder / "b1.mp3", music.song(13, 20.0), title="B1", artist="Solo", album="Beta")
    # Another encoding of A1, trimmed, without tags: the same recording.
    audio.write(folder / "a1-copy.flac", first[int(1.5 * audio.RATE) :])
    return folder


@pytest.mark.django_db
def test_it_scores_a_throwaway_catalog_and_leaves_the_real_one_alone(corpus: Path) -> None:
    out = StringIO()

    call_command("evaluate_similarity", corpus=str(corpus), k="1,3", json=True, stdout=out, stderr=StringIO())

    report = json.loads(out.getvalue())
    assert report["model"] == "features"
    at1, at3 = report["scores"]
    assert at1["k"] == 1 and at3["k"] == 3 and at3["songs"] == 4
    # Album Alpha holds 2 of the 4 songs, Beta 1; the untagged copy is left out of the album scores.
    assert at3["album_chance"] == pytest.approx((1 / 3 + 1 / 3 + 0) / 3)
    assert 0.0 <= at3["album_precision"] <= 1.0
    assert at3["duplicate_share_collapsed"] == 0.0
    assert at3["duplicate_share_included"] > 0.0  # the copy shows up in A1's list, and A1 in the copy's
    assert not Song.objects.exists()


def test_it_refuses_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(CommandError, match="not a folder"):
        call_command("evaluate_similarity", corpus=str(tmp_path / "missing"))
    with pytest.raises(CommandError, match="--k"):
        call_command("evaluate_similarity", corpus=str(tmp_path), k="five")
    with pytest.raises(CommandError, match="unknown model"):
        call_command("evaluate_similarity", corpus=str(tmp_path), model="nope")
