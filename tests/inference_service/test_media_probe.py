"""Probing real media: durations, sizes and the messages users see for bad inputs."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from inference_service.media import MediaError, probe_audio, probe_image, probe_video
from tests.media_fixtures import (
    portrait_path,
    write_garbage,
    write_mp4,
    write_no_face_image,
    write_png_header_only,
    write_speech_wav,
)


def test_probe_audio_reports_wav_duration_rate_and_channels(tmp_path: Path) -> None:
    mono = probe_audio(write_speech_wav(tmp_path / "mono.wav", 3.2, silence_tail=0.5))
    assert (mono.sample_rate, mono.channels) == (16000, 1)
    assert mono.duration_s == pytest.approx(3.2, abs=1e-3)

    stereo = probe_audio(write_speech_wav(tmp_path / "st.wav", 1.5, 44100, channels=2))
    assert (stereo.sample_rate, stereo.channels) == (44100, 2)
    assert stereo.duration_s == pytest.approx(1.5, abs=1e-3)


def test_probe_audio_reads_the_sound_track_of_a_video(tmp_path: Path) -> None:
    info = probe_audio(write_mp4(tmp_path / "clip.mp4", 1.2))
    assert info.duration_s == pytest.approx(1.2, abs=0.05)


def test_undecodable_audio_is_a_user_error(tmp_path: Path) -> None:
    with pytest.raises(MediaError) as caught:
        probe_audio(write_garbage(tmp_path / "voice.mp3"))
    assert caught.value.user_message.startswith("audio could not be decoded: ")
    assert str(tmp_path) not in caught.value.user_message  # no server paths leak


def test_file_without_audio_stream_is_refused(tmp_path: Path) -> None:
    with pytest.raises(MediaError, match="audio could not be decoded: the file has no audio"):
        probe_audio(write_mp4(tmp_path / "silent.mp4", 0.4, with_audio=False))


def test_audio_over_the_duration_limit_is_refused(tmp_path: Path) -> None:
    path = write_speech_wav(tmp_path / "long.wav", 3.0)
    with pytest.raises(MediaError) as caught:
        probe_audio(path, max_duration_s=2)
    assert caught.value.user_message == "audio is 3.0 s long, over the limit of 2 s"


def test_probe_image_reads_size_and_format(tmp_path: Path) -> None:
    assert probe_image(portrait_path()) == probe_image(portrait_path(), 8000)
    info = probe_image(portrait_path())
    assert (info.width, info.height, info.format) == (512, 512, "jpeg")
    png = probe_image(write_no_face_image(tmp_path / "plain.png", 300, 200))
    assert (png.width, png.height, png.format) == (300, 200, "png")


def test_oversized_image_is_refused_from_its_header(tmp_path: Path) -> None:
    # The file holds no real pixels: only the header can have been read.
    path = write_png_header_only(tmp_path / "bomb.png", 9000, 9000)
    with pytest.raises(MediaError) as caught:
        probe_image(path)
    assert caught.value.user_message == "image is 9000x9000 pixels, over the limit of 8000x8000"
    assert probe_image(write_png_header_only(tmp_path / "ok.png", 8000, 10)).width == 8000


def test_non_image_is_refused(tmp_path: Path) -> None:
    with pytest.raises(MediaError, match="image could not be decoded: not a PNG, JPEG or WebP"):
        probe_image(write_garbage(tmp_path / "face.png"))
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    with pytest.raises(MediaError, match="image could not be decoded: the file is empty"):
        probe_image(empty)


def test_probe_video_reports_duration_fps_and_size(tmp_path: Path) -> None:
    info = probe_video(write_mp4(tmp_path / "clip.mp4", 1.0, width=160, height=120))
    assert (info.width, info.height) == (160, 120)
    assert info.fps == pytest.approx(25.0)
    assert info.duration_s == pytest.approx(1.0, abs=0.05)


def test_audio_only_file_has_no_video_stream(tmp_path: Path) -> None:
    with pytest.raises(MediaError) as caught:
        probe_video(write_speech_wav(tmp_path / "voice.wav", 0.5))
    assert caught.value.user_message == "video has no video stream"


def test_a_video_over_the_size_limit_is_refused_from_its_header(tmp_path: Path) -> None:
    path = write_mp4(tmp_path / "wide.mp4", 0.2, width=160, height=96, with_audio=False)
    with pytest.raises(MediaError) as caught:
        probe_video(path, max_side=128)
    assert caught.value.user_message == "video is 160x96 pixels, over the limit of 128x128"
    assert probe_video(path, max_side=160).width == 160


def test_a_video_over_the_frame_rate_limit_is_refused(tmp_path: Path) -> None:
    path = write_mp4(tmp_path / "fast.mp4", 0.2, width=64, height=48, fps=50, with_audio=False)
    with pytest.raises(MediaError) as caught:
        probe_video(path, max_duration_s=600, max_fps=30)
    assert caught.value.user_message == "video is 50 frames per second, over the limit of 30"


def test_the_frame_count_stated_in_the_header_is_capped(tmp_path: Path) -> None:
    path = write_mp4(tmp_path / "clip.mp4", 1.0, width=64, height=48, with_audio=False)
    with pytest.raises(MediaError) as caught:
        probe_video(path, max_duration_s=0.9, max_fps=25)
    assert caught.value.user_message == "video has 25 frames, over the limit of 22"


def _write_raw_h264(path: Path, frames: int) -> Path:
    """An H.264 elementary stream: no container, so no stated duration or frame count."""
    with av.open(str(path), mode="w", format="h264") as container:
        stream = container.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for i in range(frames):
            frame = av.VideoFrame.from_ndarray(np.full((48, 64, 3), i, np.uint8), format="bgr24")
            frame.pts, frame.time_base = i, Fraction(1, 25)
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return path


def test_counting_the_frames_of_a_stream_without_a_duration_stops_at_the_cap(
    tmp_path: Path,
) -> None:
    path = _write_raw_h264(tmp_path / "raw.h264", 30)
    assert probe_video(path).duration_s == pytest.approx(30 / 25)
    with pytest.raises(MediaError) as caught:
        probe_video(path, max_duration_s=1, max_fps=25)
    assert caught.value.user_message == "video has more than 25 frames, over the limit of 25"
