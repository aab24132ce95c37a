"""Real sentences with their phoneme timings: libespeak-ng through ctypes (bench only).

espeak-ng synthesizes the sentence and, with phoneme events switched on,
reports every phoneme it speaks (in IPA) with its position in the audio:
the ground truth the articulation report checks the mouth against. It is a
bench tool, never a run-time dependency: ``available()`` says whether the
library is installed (``apt-get install espeak-ng``), and callers skip otherwise.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import threading
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float32]

_AUDIO_OUTPUT_SYNCHRONOUS = 2
_INITIALIZE_PHONEME_EVENTS = 0x0001
_INITIALIZE_PHONEME_IPA = 0x0002
_INITIALIZE_DONT_EXIT = 0x8000
_CHARS_UTF8 = 1
_EVENT_LIST_TERMINATED = 0
_EVENT_PHONEME = 7


class _EventId(ctypes.Union):
    _fields_ = [("number", ctypes.c_int), ("name", ctypes.c_char_p), ("string", ctypes.c_char * 8)]


class _Event(ctypes.Structure):
    _fields_ = [
        ("type", ctypes.c_int),
        ("unique_identifier", ctypes.c_uint),
        ("text_position", ctypes.c_int),
        ("length", ctypes.c_int),
        ("audio_position", ctypes.c_int),
        ("sample", ctypes.c_int),
        ("user_data", ctypes.c_void_p),
        ("id", _EventId),
    ]


_CALLBACK = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.POINTER(_Event)
)


@dataclass(frozen=True)
class SpokenPhoneme:
    ipa: str
    start_s: float
    end_s: float


@dataclass(frozen=True)
class Utterance:
    text: str
    voice: str
    samples: FloatArray  # mono float32 at ``rate``
    rate: int
    phonemes: list[SpokenPhoneme]


@functools.cache
def _library() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("espeak-ng")
    if name is None:
        return None
    try:
        return ctypes.CDLL(name)
    except OSError:
        return None


def available() -> bool:
    return _library() is not None


_lock = threading.Lock()
_rate: list[int] = []


def synthesize(text: str, voice: str = "en-us", *, rate_wpm: int = 150) -> Utterance:
    """``text`` spoken by espeak-ng's ``voice``, with the start and end of every phoneme."""
    lib = _library()
    if lib is None:
        raise RuntimeError("libespeak-ng is not installed (apt-get install espeak-ng)")
    chunks: list[FloatArray] = []
    events: list[tuple[str, int]] = []

    def callback(
        wav: ctypes._Pointer[ctypes.c_short], count: int, event: ctypes._Pointer[_Event]
    ) -> int:
        if count > 0:
            chunks.append(np.ctypeslib.as_array(wav, shape=(count,)).astype(np.float32) / 32768.0)
        index = 0
        while event[index].type != _EVENT_LIST_TERMINATED:
            item = event[index]
            if item.type == _EVENT_PHONEME:
                ipa = item.id.string.decode("utf-8", "replace")
                events.append((ipa, item.audio_position))
            index += 1
        return 0

    keep = _CALLBACK(callback)
    with _lock:  # libespeak-ng is one global synthesizer
        if not _rate:
            options = _INITIALIZE_PHONEME_EVENTS | _INITIALIZE_PHONEME_IPA | _INITIALIZE_DONT_EXIT
            _rate.append(lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, None, options))
        lib.espeak_SetSynthCallback(keep)
        if lib.espeak_SetVoiceByName(voice.encode()) != 0:
            raise ValueError(f"espeak-ng has no voice {voice!r}")
        lib.espeak_SetParameter(1, rate_wpm, 0)  # espeakRATE
        data = text.encode("utf-8") + b"\0"
        lib.espeak_Synth(data, len(data), 0, 0, 0, _CHARS_UTF8, None, None)
        lib.espeak_Synchronize()
    rate = _rate[0]
    samples = np.concatenate(chunks) if chunks else np.zeros(0, np.float32)
    duration = samples.size / rate
    phonemes = []
    for index, (ipa, position_ms) in enumerate(events):
        end_ms = events[index + 1][1] if index + 1 < len(events) else duration * 1000
        if ipa.strip():
            phonemes.append(SpokenPhoneme(ipa.strip(), position_ms / 1000, end_ms / 1000))
    return Utterance(text, voice, samples, rate, phonemes)
