"""Log-mel spectrogram windows as Wav2Lip-style models expect them, in numpy only.

The parameters are Wav2Lip's ``hparams.py``: 16 kHz audio, pre-emphasis 0.97,
an 800-sample Hann STFT (centred, reflect-padded) every 200 samples (80 mel
frames per second), 80 Slaney mel bands from 55 to 7600 Hz, magnitude in dB
minus 20 dB, normalised from [-100, 0] dB to [-4, 4]. Video frame ``i`` gets
the 16 mel frames (0.2 s) starting at ``int(80 * i / fps)``, the last 16
when that runs past the end.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float32]
Float64Array = npt.NDArray[np.float64]

SAMPLE_RATE = 16000
N_FFT = 800
HOP = 200
N_MELS = 80
F_MIN, F_MAX = 55.0, 7600.0
PREEMPHASIS = 0.97
REF_LEVEL_DB = 20.0
MIN_LEVEL_DB = -100.0
MAX_ABS_VALUE = 4.0
MEL_STEP = 16
MEL_FPS = SAMPLE_RATE / HOP


def _hz_to_mel(value: Float64Array | float) -> Float64Array:
    # Slaney's scale: linear below 1 kHz, logarithmic above (librosa's default).
    freq = np.asarray(value, np.float64)
    linear = freq / (200.0 / 3)
    log = 15.0 + np.log(np.maximum(freq, 1e-9) / 1000.0) / (np.log(6.4) / 27.0)
    return np.where(freq >= 1000.0, log, linear)


def _mel_to_hz(value: Float64Array) -> Float64Array:
    mel = np.asarray(value, np.float64)
    linear = mel * (200.0 / 3)
    log = 1000.0 * np.exp((np.log(6.4) / 27.0) * (mel - 15.0))
    return np.where(mel >= 15.0, log, linear)


def mel_filterbank() -> FloatArray:
    """(80, 401) triangular filters, Slaney-normalised (equal area)."""
    fft_freqs = np.fft.rfftfreq(N_FFT, 1.0 / SAMPLE_RATE)
    low, high = float(_hz_to_mel(F_MIN)), float(_hz_to_mel(F_MAX))
    edges = _mel_to_hz(np.linspace(low, high, N_MELS + 2))
    lower = (fft_freqs[np.newaxis, :] - edges[:-2, np.newaxis]) / np.diff(edges)[:-1, None]
    upper = (edges[2:, np.newaxis] - fft_freqs[np.newaxis, :]) / np.diff(edges)[1:, None]
    weights = np.maximum(0.0, np.minimum(lower, upper))
    weights *= (2.0 / (edges[2:] - edges[:-2]))[:, np.newaxis]
    return weights.astype(np.float32)


def log_mel(samples: FloatArray) -> FloatArray:
    """(80, frames) normalised log-mel spectrogram of mono 16 kHz ``samples``."""
    signal = np.asarray(samples, np.float32)
    emphasised = np.append(signal[:1], signal[1:] - PREEMPHASIS * signal[:-1])
    padded = np.pad(emphasised, N_FFT // 2, mode="reflect" if signal.size > N_FFT else "constant")
    count = 1 + (padded.size - N_FFT) // HOP
    index = np.arange(N_FFT)[np.newaxis, :] + HOP * np.arange(count)[:, np.newaxis]
    window = np.hanning(N_FFT + 1)[:-1].astype(np.float32)  # periodic, like scipy/librosa
    magnitude = np.abs(np.fft.rfft(padded[index] * window, axis=1)).T
    mel = mel_filterbank() @ magnitude
    db = 20.0 * np.log10(np.maximum(1e-5, mel)) - REF_LEVEL_DB
    scaled = 2 * MAX_ABS_VALUE * (db - MIN_LEVEL_DB) / -MIN_LEVEL_DB - MAX_ABS_VALUE
    return np.clip(scaled, -MAX_ABS_VALUE, MAX_ABS_VALUE).astype(np.float32)


def mel_window(mel: FloatArray, frame: int, fps: float) -> FloatArray:
    """The (80, 16) window for video frame ``frame``."""
    if mel.shape[1] < MEL_STEP:
        mel = np.pad(mel, ((0, 0), (0, MEL_STEP - mel.shape[1])), constant_values=-MAX_ABS_VALUE)
    start = min(int(MEL_FPS * frame / fps), mel.shape[1] - MEL_STEP)
    return mel[:, start : start + MEL_STEP]
