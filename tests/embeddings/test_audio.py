from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from embeddings.audio import decode
from embeddings.base import SAMPLE_RATE, EmbeddingError
from tests import audio


def test_it_decodes_to_32khz_mono(tmp_path: Path) -> None:
    stereo = np.stack([audio.tone(440, 2.0, rate=44100), audio.tone(660, 2.0, rate=44100)], axis=1)
    path = audio.write(tmp_path / "stereo.wav", stereo, rate=44100)

    decoded = decode(path, max_seconds=900, min_seconds=0.25)

    assert decoded.sample_rate == SAMPLE_RATE
    assert decoded.samples.ndim == 1
    assert decoded.seconds == pytest.approx(2.0, abs=0.01)
    assert not decoded.truncated


def test_it_cuts_long_audio_at_the_limit(tmp_path: Path) -> None:
    path = audio.write(tmp_path / "long.flac", audio.tone(440, 5.0))

    decoded = decode(path, max_seconds=2.0, min_seconds=0.25)

    assert decoded.truncated
    assert decoded.seconds == pytest.approx(2.0)


def test_it_names_the_problem_with_non_audio(tmp_path: Path) -> None:
    path = tmp_path / "page.mp3"
    path.write_text("<html>not audio</html>")

    with pytest.raises(EmbeddingError, match="could not be decoded"):
        decode(path, max_seconds=900, min_seconds=0.25)
