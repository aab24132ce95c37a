"""Decoding audio to float32 arrays at any rate and channel count."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from inference_service.media import MediaError, load_audio, load_audio_mono
from tests.media_fixtures import write_garbage, write_speech_wav


def test_load_audio_mono_resamples_to_the_requested_rate(tmp_path: Path) -> None:
    wav = write_speech_wav(tmp_path / "v.wav", 2.0, 44100, channels=2)
    samples = load_audio_mono(wav, 16000)
    assert samples.dtype == np.float32 and samples.ndim == 1
    assert abs(samples.size - 32000) <= 32  # resampler delay, never a drift
    assert 0.1 < float(np.abs(samples).max()) <= 1.0


def test_load_audio_keeps_two_channels_when_asked(tmp_path: Path) -> None:
    wav = write_speech_wav(tmp_path / "v.wav", 0.5, 16000)
    stereo = load_audio(wav, 48000, channels=2)
    assert stereo.shape[0] == 2 and abs(stereo.shape[1] - 24000) <= 48
    np.testing.assert_allclose(stereo[0], stereo[1], atol=1e-6)


def test_undecodable_audio_raises_media_error(tmp_path: Path) -> None:
    with pytest.raises(MediaError) as caught:
        load_audio_mono(write_garbage(tmp_path / "voice.ogg"))
    assert caught.value.user_message.startswith("audio could not be decoded: ")
