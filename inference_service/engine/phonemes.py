"""Phonemes from the audio, offline: hama's phoneme recogniser, with times and confidence.

``hama`` (PyPI, Apache-2.0) ships a 4.7 MB CTC phoneme model and a native
engine that needs numpy only: nothing is downloaded, nothing touches the
network (checked under ``unshare -n`` and with ``strace -e socket,connect``:
no socket is ever opened). It hears IPA phones of any language; its classes
follow Korean vowels and consonants (``pʰ``, ``p͈``, ``wa``, ``jo``...) as well as
English ones, which is what a mouth shape needs.

The model emits one token (or a blank) every 20 ms. A phone starts at the
frame where it is emitted and lasts until the next emission (CTC is "peaky":
the emission lands near a phone's acoustic onset, not its exact boundary),
capped at ``MAX_PHONE_S``: a long blank run is a pause or a sound it does not
know. Each phone carries the model's probability at its emission, which says
how sure it is: noise and music emit nothing or improbable phones, so the
caller can fall back to the loudness drive there.

The model reads at most 30 s at once and its cost grows faster than the
length, so a track is read in ``CHUNK_S`` chunks with ``MARGIN_S`` of context
either side; silent chunks are skipped (half of a two-person track is silence).
Models are shared by every job: a small pool, one per core (a chunk's
native call runs on one core, so a track's chunks are read in parallel), each
used by one thread at a time.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float32]

SAMPLE_RATE = 16000
# One model output frame: 320 samples at 16 kHz.
FRAME_S = 0.02
CHUNK_S = 8.0
MARGIN_S = 1.0
# A phone runs until the next emission, but not longer than this.
MAX_PHONE_S = 0.3
# Chunks quieter than this (RMS, dBFS) hold no speech and are not read.
SILENT_CHUNK_DB = -55.0
# hama's own decoding settings (ASRDecodeConfig): a softened, blank-penalised argmax.
_TEMPERATURE = 0.95
_BLANK_BIAS = -0.1


@dataclass(frozen=True)
class Phone:
    symbol: str  # IPA, as the model spells it ("m", "pʰ", "oʊ", "wa")
    start_s: float
    end_s: float
    confidence: float  # the model's probability of this phone where it emitted it


@dataclass(frozen=True)
class Posteriors:
    """The model's probabilities per 20 ms frame: ``probs[t, k]`` of ``symbols[k]``."""

    probs: FloatArray  # (frames, symbols); rows sum to 1; all blank where nothing was read
    symbols: list[str]
    blank: int

    def phones(self) -> list[Phone]:
        """The best path's phones: emitted where the argmax changes to a non-blank symbol."""
        best = np.argmax(self.probs, axis=1)
        emissions: list[tuple[float, str, float]] = []
        previous = -1
        for frame, token in enumerate(best.tolist()):
            if token != previous and token != self.blank and self.symbols[token] != "<wb>":
                emissions.append(
                    (frame * FRAME_S, self.symbols[token], float(self.probs[frame, token]))
                )
            previous = token
        duration = self.probs.shape[0] * FRAME_S
        phones = []
        for index, (at, symbol, probability) in enumerate(emissions):
            following = emissions[index + 1][0] if index + 1 < len(emissions) else duration
            phones.append(Phone(symbol, at, min(following, at + MAX_PHONE_S), probability))
        return phones


class PhonemesUnavailable(RuntimeError):
    """The phoneme model cannot run here; callers drive the mouth by loudness alone."""


class PhonemeRecognizer:
    """hama's phoneme model, shared by all jobs; ``posteriors`` may be called from any thread.

    The native engine runs on one core per call, so a track's chunks are read by up to
    ``workers`` threads at once, each with a model of its own (a session's thread-safety
    is not documented, so none is ever used by two threads at once); models are made on
    first need (0.3 s, ~20 MB each) and kept for the next job.
    """

    def __init__(self, workers: int | None = None) -> None:
        self.workers = max(1, workers or min(os.cpu_count() or 1, 4))
        self._lock = threading.Lock()
        self._idle: list[Any] = []
        self._made = 0
        self._available = threading.Condition(self._lock)

    @contextmanager
    def _model(self) -> Iterator[Any]:
        with self._available:
            while not self._idle and self._made >= self.workers:
                self._available.wait()
            model = self._idle.pop() if self._idle else None
            if model is None:
                self._made += 1
        if model is None:
            try:
                model = _load()
            except BaseException:
                with self._available:
                    self._made -= 1
                    self._available.notify()
                raise
        try:
            yield model
        finally:
            with self._available:
                self._idle.append(model)
                self._available.notify()

    def posteriors(self, samples: FloatArray, rate: int = SAMPLE_RATE) -> Posteriors:
        """Per-frame probabilities for mono ``samples`` at 16 kHz (``FRAME_S`` per frame)."""
        if rate != SAMPLE_RATE:
            raise ValueError(f"posteriors need {SAMPLE_RATE} Hz audio, not {rate}")
        hop = round(FRAME_S * rate)
        chunk = round(CHUNK_S / FRAME_S) * hop
        margin = round(MARGIN_S / FRAME_S) * hop
        frames = -(-samples.size // hop)
        with self._model() as model:
            symbols: list[str] = list(model.decoder_tokens)
            blank: int = model.blank_id
        probs = np.zeros((frames, len(symbols)), np.float32)
        probs[:, blank] = 1.0
        spoken = []
        for first in range(0, samples.size, chunk):
            core = samples[first : first + chunk]
            rms = float(np.sqrt(np.mean(core.astype(np.float64) ** 2))) if core.size else 0.0
            if core.size >= hop and 20.0 * np.log10(rms + 1e-12) >= SILENT_CHUNK_DB:
                spoken.append((first, core.size))

        def read(first: int) -> FloatArray:
            start = max(first - margin, 0)
            with self._model() as model:
                window = _run(model, samples[start : first + chunk + margin], blank)
            return window[(first - start) // hop :]

        with ThreadPoolExecutor(max(1, min(self.workers, len(spoken)))) as pool:
            windows = list(pool.map(read, [first for first, _ in spoken]))
        for (first, size), window in zip(spoken, windows, strict=True):
            kept = window[: -(-size // hop)]
            at = first // hop
            probs[at : at + kept.shape[0]] = kept
        return Posteriors(probs, symbols, blank)


def _load() -> Any:
    try:
        import hama  # on first use: importing the engine stays cheap

        return hama.ASRModel()
    except (ImportError, OSError) as exc:  # no wheel or library for this platform
        raise PhonemesUnavailable(str(exc)) from exc


def _run(model: Any, window: FloatArray, blank: int) -> FloatArray:
    wav = np.ascontiguousarray(window, np.float32).reshape(1, -1)
    log_probs, lengths = model.session.run(
        [model._log_probs_output_name, model._out_lengths_output_name],
        {
            model._waveform_input_name: wav,
            model._waveform_lengths_input_name: np.array([wav.shape[1]], np.int64),
        },
    )
    frames = int(np.asarray(lengths).reshape(-1)[0])
    logits = np.asarray(log_probs, np.float32)[0, :frames] / _TEMPERATURE
    logits[:, blank] += _BLANK_BIAS
    probs = np.exp(logits - logits.max(axis=1, keepdims=True))
    return (probs / probs.sum(axis=1, keepdims=True)).astype(np.float32)
