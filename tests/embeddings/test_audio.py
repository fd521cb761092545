from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest

from embeddings.audio import decode, decode_in_background
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


def test_nan_and_infinite_samples_are_refused(tmp_path: Path) -> None:
    samples = audio.tone(440, 2.0)
    samples[1000] = np.nan
    samples[2000] = np.inf
    path = audio.write(tmp_path / "nan.wav", samples, fmt="WAV")
    import soundfile as sf

    sf.write(path, samples, audio.RATE, subtype="FLOAT")

    with pytest.raises(EmbeddingError, match="NaN or infinite"):
        decode(path, max_seconds=900, min_seconds=0.25)


@pytest.mark.parametrize("rate", [8, 384000])
def test_extreme_sample_rates_decode_or_fail_cleanly(tmp_path: Path, rate: int) -> None:
    path = audio.write(tmp_path / f"rate-{rate}.wav", audio.tone(min(rate / 4, 1000), 2.0, rate=rate), rate=rate)

    try:
        decoded = decode(path, max_seconds=900, min_seconds=0.25)
    except EmbeddingError:
        return
    assert decoded.sample_rate == SAMPLE_RATE
    assert decoded.seconds == pytest.approx(2.0, abs=0.05)


def test_a_zip_bomb_renamed_mp3_is_refused(tmp_path: Path) -> None:
    import zipfile

    path = tmp_path / "bomb.mp3"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("zeros.bin", b"\0" * 50_000_000)

    with pytest.raises(EmbeddingError, match="could not be decoded"):
        decode(path, max_seconds=900, min_seconds=0.25)


def test_a_long_silent_file_is_read_only_up_to_the_limit_and_refused(tmp_path: Path) -> None:
    path = audio.write(tmp_path / "quiet.flac", np.zeros(20 * 60 * 8000, dtype=np.float32), rate=8000)

    with pytest.raises(EmbeddingError, match="silent"):
        decode(path, max_seconds=60, min_seconds=0.25)


def test_the_background_decoder_gives_what_decode_gives(tmp_path: Path) -> None:
    stereo = np.stack([audio.chord([220, 277], 25.0, rate=44100), audio.tone(330, 25.0, rate=44100)], axis=1)
    path = audio.write(tmp_path / "song.flac", stereo, rate=44100)

    with decode_in_background(path, max_seconds=900, min_seconds=0.25) as decoding:
        blocks = list(decoding.blocks())
        streamed = decoding.result()
    whole = decode(path, max_seconds=900, min_seconds=0.25)

    assert len(blocks) >= 3
    assert np.array_equal(np.concatenate(blocks), whole.samples)
    assert np.array_equal(streamed.samples, whole.samples)
    assert not streamed.truncated


def test_the_background_decoder_stays_only_a_few_blocks_ahead_of_the_model(tmp_path: Path) -> None:
    path = audio.write(tmp_path / "long.flac", audio.tone(440, 150.0))

    with decode_in_background(path, max_seconds=900, min_seconds=0.25) as decoding:
        first = next(decoding.blocks())
        time.sleep(1.0)  # far longer than decoding 150 s of FLAC takes, had the decoder not waited
        # The decoder waits for the model instead of holding the whole song in its hand-off.
        assert first.size > 0
        assert not decoding.finished


def test_the_background_decoder_never_hands_out_more_than_the_cap(tmp_path: Path) -> None:
    path = audio.write(tmp_path / "long.flac", audio.tone(440, 25.0))

    with decode_in_background(path, max_seconds=12.0, min_seconds=0.25) as decoding:
        handed_out = sum(block.size for block in decoding.blocks())
        result = decoding.result()

    assert handed_out == 12 * SAMPLE_RATE
    assert result.truncated and result.seconds == pytest.approx(12.0)


def test_the_background_decoder_names_the_problem_with_non_audio(tmp_path: Path) -> None:
    path = tmp_path / "page.mp3"
    path.write_text("<html>not audio</html>")

    with decode_in_background(path, max_seconds=900, min_seconds=0.25) as decoding:
        with pytest.raises(EmbeddingError, match="could not be decoded"):
            list(decoding.blocks())
        with pytest.raises(EmbeddingError, match="could not be decoded"):
            decoding.result()


def test_the_background_decoder_checks_the_song_like_decode(tmp_path: Path) -> None:
    path = audio.write(tmp_path / "silence.wav", np.zeros(3 * SAMPLE_RATE, dtype=np.float32))

    with decode_in_background(path, max_seconds=900, min_seconds=0.25) as decoding:
        assert sum(block.size for block in decoding.blocks()) == 3 * SAMPLE_RATE
        with pytest.raises(EmbeddingError, match="silent"):
            decoding.result()


def test_leaving_early_stops_the_decoder_thread(tmp_path: Path) -> None:
    path = audio.write(tmp_path / "long.flac", audio.tone(440, 150.0))

    with decode_in_background(path, max_seconds=900, min_seconds=0.25) as decoding:
        next(decoding.blocks())

    assert not any(thread.name == "decode" and thread.is_alive() for thread in threading.enumerate())
