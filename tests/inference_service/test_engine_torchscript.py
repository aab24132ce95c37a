"""The TorchScript adapter, with a tiny Wav2Lip-shaped model the test scripts itself (CPU)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from inference_service.engine import LipsyncEngine, RenderResult
from inference_service.engine.mel import MEL_STEP, N_MELS, log_mel, mel_filterbank, mel_window
from inference_service.engine.selection import EngineConfigError, build_engine
from inference_service.engine.torchscript import TorchScriptAnimator
from inference_service.media import probe_output
from tests.inference_service.test_engine_threads import render_alone_and_together
from tests.media_fixtures import decode_frames, portrait_path, write_speech_wav, write_talking_video


class TinyLipsync(nn.Module):
    """Two convolutions: the reference crop, darkened where the audio is loud (a "mouth")."""

    def __init__(self) -> None:
        super().__init__()
        self.face = nn.Conv2d(6, 3, 3, padding=1)
        self.audio = nn.Conv2d(1, 1, 3, padding=1)
        with torch.no_grad():
            self.face.weight.zero_()
            self.face.bias.zero_()
            for channel in range(3):  # copy the unmasked reference through
                self.face.weight[channel, 3 + channel, 1, 1] = 1.0
            self.audio.weight.fill_(1.0 / 9)
            self.audio.bias.zero_()

    def forward(self, faces: torch.Tensor, mels: torch.Tensor) -> torch.Tensor:
        assert faces.shape[1:] == (6, 96, 96) and mels.shape[1:] == (1, 80, 16)
        loudness = torch.sigmoid(self.audio(mels).mean(dim=(1, 2, 3)))  # (N,)
        out = self.face(faces)
        # Darken the lower half in proportion to the loudness: a visible, audio-driven change.
        rows = torch.arange(96, device=faces.device).view(1, 1, 96, 1) >= 48
        return torch.where(rows, out * (1.0 - 0.6 * loudness.view(-1, 1, 1, 1)), out)


@pytest.fixture(scope="module")
def model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("model") / "tiny.pt"
    torch.jit.script(TinyLipsync().eval()).save(str(path))
    return path


@pytest.fixture(scope="module")
def engine(model_path: Path) -> LipsyncEngine:
    engine = build_engine("torchscript", model_path, batch_size=8)
    engine.setup()
    return engine


def test_mel_features_follow_the_wav2lip_contract(tmp_path: Path) -> None:
    assert mel_filterbank().shape == (80, 401)
    samples = np.random.default_rng(0).normal(0, 0.1, 16000).astype(np.float32)
    mel = log_mel(samples)
    assert mel.shape == (N_MELS, 81) and mel.min() >= -4 and mel.max() <= 4
    assert mel_window(mel, 0, 25).shape == (N_MELS, MEL_STEP)
    assert mel_window(mel, 24, 25).shape == (N_MELS, MEL_STEP)  # clamped at the end
    assert log_mel(np.zeros(16000, np.float32)).max() == -4  # silence is the floor


def test_image_mode_changes_only_the_mouth_region(
    engine: LipsyncEngine, model_path: Path, tmp_path: Path
) -> None:
    assert engine.device == "cpu" and engine.animator.batch_size == 8
    # Lossless encoding, so pixels the adapter leaves alone are identical in every frame.
    lossless = LipsyncEngine(animator=TorchScriptAnimator(model_path, batch_size=8), crf=0)
    audio = write_speech_wav(tmp_path / "v.wav", 1.0, silence_head=0.3)
    out = tmp_path / "o.mp4"
    result = lossless.render_image(
        str(portrait_path()), str(audio), str(out), height=480, seed=1, idle_motion=False
    )
    info = probe_output(out)
    assert (info.video_codec, info.audio_codec, info.frames) == ("h264", "aac", 25)
    assert result.frames == 25
    frames = np.stack(decode_frames(out)).astype(np.int16)
    variation = np.ptp(frames, axis=0).max(axis=2)
    prepared = lossless.prepare_face(portrait_path())
    points = prepared.landmarks.points * (480 / prepared.image.shape[0])
    mouth = points[[61, 291, 0, 17, 152]]
    x0, y0 = (mouth.min(axis=0) - 30).astype(int)
    x1, y1 = (mouth.max(axis=0) + 30).astype(int)
    outside = np.ones_like(variation, bool)
    outside[y0:y1, x0:x1] = False
    assert variation[outside].max() == 0
    assert variation[~outside].max() > 20  # the model's audio-driven darkening


def test_video_mode_renders_a_valid_mp4(engine: LipsyncEngine, tmp_path: Path) -> None:
    video = write_talking_video(tmp_path / "v.mp4", 0.6)
    audio = write_speech_wav(tmp_path / "a.wav", 0.8)
    out = tmp_path / "o.mp4"
    result = engine.render_video(str(video), str(audio), str(out), height=480)
    assert result.frames == 20 and probe_output(out).frames == 20


def test_batches_give_the_same_frames_as_single_frames(
    model_path: Path, tmp_path: Path, encoded: dict[str, list[str]]
) -> None:
    audio = write_speech_wav(tmp_path / "v.wav", 0.5)
    for batch in (1, 7):
        engine = LipsyncEngine(animator=TorchScriptAnimator(model_path, batch_size=batch))
        out = tmp_path / f"b{batch}.mp4"
        engine.render_image(str(portrait_path()), str(audio), str(out), height=480, seed=2)
    # The frames given to the encoder (tests/inference_service/conftest.py `encoded`).
    assert encoded["b1.mp4"] == encoded["b7.mp4"] and encoded["b1.mp4"]


def test_two_jobs_at_once_render_as_they_do_one_after_the_other(
    engine: LipsyncEngine, tmp_path: Path, encoded: dict[str, list[str]]
) -> None:
    # The model is shared; each job's mel features are its own.
    speech = write_speech_wav(tmp_path / "speech.wav", 1.0)
    late = write_speech_wav(tmp_path / "late.wav", 1.0, silence_head=0.5)

    def first(out: Path) -> RenderResult:
        return engine.render_image(portrait_path(), speech, out, height=480, seed=1)

    def second(out: Path) -> RenderResult:
        return engine.render_image(portrait_path(), late, out, height=480, seed=2)

    render_alone_and_together([first, second], tmp_path, encoded)


def test_a_missing_model_is_an_operator_error(tmp_path: Path) -> None:
    with pytest.raises(EngineConfigError, match="LIPSYNC_TORCHSCRIPT_MODEL"):
        build_engine("torchscript", tmp_path / "missing.pt")
    with pytest.raises(EngineConfigError, match="not known"):
        build_engine("onnx")
