"""The streaming MP4 writer: codecs, sizes and an output exactly as long as the audio."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import av
import numpy as np
import pytest

from inference_service.media import (
    Mp4Writer,
    encode_mp4,
    even_size,
    load_audio,
    load_audio_mono,
    probe_output,
)
from tests.media_fixtures import write_speech_wav


def _frames(width: int, height: int) -> Iterator[np.ndarray]:
    index = 0
    while True:
        frame = np.zeros((height, width, 3), np.uint8)
        frame[:, : (index * 7) % width] = (40, 160, 220)
        index += 1
        yield frame


@pytest.mark.parametrize(("rate", "channels", "seconds"), [(16000, 1, 2.3), (44100, 2, 1.01)])
def test_output_is_h264_aac_with_the_audio_duration(
    tmp_path: Path, rate: int, channels: int, seconds: float
) -> None:
    audio = load_audio(
        write_speech_wav(tmp_path / "in.wav", seconds, rate, channels=channels), rate, channels
    )
    width, height = even_size(481 * 480 / 360, 480)
    out = tmp_path / "out.mp4"
    stats = encode_mp4(out, _frames(width, height), audio, rate, width=width, height=height)

    info = probe_output(out)
    assert (info.video_codec, info.audio_codec) == ("h264", "aac")
    assert info.height == 480 and info.width % 2 == 0 and info.width == width
    assert stats.frames == info.frames == round(seconds * 25)
    assert abs(info.duration_s - seconds) <= 1 / 25
    with av.open(str(out)) as container:
        assert container.streams.video[0].codec_context.pix_fmt == "yuv420p"
        assert container.streams.audio[0].codec_context.channels == channels


def test_short_frame_iterator_repeats_its_last_frame(tmp_path: Path) -> None:
    audio = np.zeros((1, 48000), np.float32)
    one = [np.full((64, 96, 3), 200, np.uint8)]
    stats = encode_mp4(tmp_path / "o.mp4", one, audio, 48000, width=96, height=64)
    assert stats.frames == 25 == probe_output(tmp_path / "o.mp4").frames


def test_encoded_audio_survives_the_round_trip(tmp_path: Path) -> None:
    wav = write_speech_wav(tmp_path / "in.wav", 1.0, 48000)
    audio = load_audio_mono(wav, 48000)
    encode_mp4(tmp_path / "o.mp4", _frames(64, 64), audio, 48000, width=64, height=64)
    decoded = load_audio_mono(tmp_path / "o.mp4", 48000)[: audio.size]
    # AAC is lossy but the loudness envelope must be the same signal.
    assert np.corrcoef(np.abs(decoded[:47000]), np.abs(audio[:47000]))[0, 1] > 0.8


def test_writer_refuses_odd_sizes(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="even"):
        Mp4Writer(tmp_path / "x.mp4", width=101, height=80)


def test_even_size_rounds_to_even_numbers() -> None:
    assert even_size(640.9, 480) == (640, 480)
    assert even_size(1, 1) == (2, 2)
    assert even_size(853.3, 480) == (854, 480)
