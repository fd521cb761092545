from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from tests import audio
from tests.fingerprints.music import song


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg encodes the MP3 queries")
def test_evaluate_identify_reports_a_table_misses_and_one_json_line(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    for seed in (11, 12, 13):
        audio.write(corpus / "album" / f"song{seed}.wav", song(seed, seconds=12.0))
    audio.write(corpus / "best-of" / "song11.wav", 0.5 * song(11, seconds=12.0)[16000:])  # the same recording
    audio.write(corpus / "album" / "silence.wav", np.zeros(32000 * 3, dtype=np.float32))
    # Music not in the catalog (on another beat: songs on one grid and scale share many chance alignments).
    audio.write(corpus / "held" / "unknown.wav", song(14, seconds=12.0, beat=0.3))
    out = io.StringIO()

    call_command(
        "evaluate_identify",
        "--corpus", str(corpus), "--queries", "6", "--seconds", "4", "--snr-db", "5", "--workers", "1",
        "--holdout", "held/*", "--holdout-queries", "3",
        stdout=out,
    )  # fmt: skip

    lines = out.getvalue().strip().splitlines()
    assert any("skipped album/silence.wav: the audio is silent" in line for line in lines)
    assert any("held out of the index: 1 files" in line for line in lines)
    assert any("linked as one recording: 2 tracks in 1 recordings" in line for line in lines)
    assert sum(" album/song1" in line or " best-of/song11" in line for line in lines) >= 6  # a row per query
    summary = json.loads(lines[-1])
    assert set(summary) == {
        "tracks", "queries", "seconds", "snr_db", "top1", "no_match", "wrong", "copies_named", "p50_ms", "p95_ms",
        "index_mb", "ingest_s_per_track", "holdout_queries", "holdout_false_match",
    }  # fmt: skip
    assert (summary["tracks"], summary["queries"], summary["seconds"], summary["snr_db"]) == (4, 6, 4.0, 5.0)
    assert summary["top1"] == 1.0 and summary["wrong"] == 0.0
    assert summary["holdout_queries"] == 3 and summary["holdout_false_match"] == 0.0
    assert summary["index_mb"] > 0 and summary["p95_ms"] >= summary["p50_ms"] > 0


def test_evaluate_identify_needs_a_folder_of_audio(tmp_path: Path) -> None:
    with pytest.raises(CommandError, match="no audio files"):
        call_command("evaluate_identify", "--corpus", str(tmp_path), stdout=io.StringIO())
