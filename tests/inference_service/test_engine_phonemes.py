"""The phoneme front end (hama), offline, on real speech in English and Korean.

``tests/data/speech-en.wav`` ("My mother bought a big blue boat.") and
``speech-ko.wav`` ("바보 엄마가 밥을 먹어요.") were spoken by espeak-ng
(``tests.quality.speech.synthesize``, 0.3 s of silence each side, 16 kHz); espeak-ng
is needed only to make them again, not to run these tests.
"""

from __future__ import annotations

import difflib
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np

from inference_service.engine.phonemes import FRAME_S, PhonemeRecognizer
from inference_service.engine.visemes import Viseme, viseme_of
from inference_service.media import load_audio_mono

DATA = Path(__file__).resolve().parents[1] / "data"


def _phones(name: str) -> list[tuple[str, float]]:
    samples = load_audio_mono(DATA / name, 16000)
    return [(p.symbol, p.start_s) for p in PhonemeRecognizer().posteriors(samples).phones()]


def test_english_speech_is_heard_with_its_bilabials_and_rounded_vowels() -> None:
    phones = _phones("speech-en.wav")
    shapes = [viseme_of(symbol) for symbol, _ in phones]
    # "My mother bought a big blue boat": m, m, b, b, b, b spoken; most are heard as such.
    assert shapes.count(Viseme.CLOSED) >= 4, phones
    assert Viseme.ROUNDED in shapes and Viseme.OPEN in shapes, phones
    starts = [start for _, start in phones]
    assert starts == sorted(starts)
    # The first sound is the "m" at 0.3 s (espeak-ng's timing): heard by its release, within
    # 0.15 s (the closure of a bilabial is placed before its emission, see visemes.py).
    assert 0.25 <= starts[0] <= 0.45, phones


def test_korean_speech_is_heard_with_its_bilabials() -> None:
    phones = _phones("speech-ko.wav")
    shapes = [viseme_of(symbol) for symbol, _ in phones]
    assert shapes.count(Viseme.CLOSED) >= 3, phones
    assert Viseme.OPEN in shapes, phones


def test_the_model_runs_without_any_network() -> None:
    """In a fresh interpreter where opening any socket raises: the model is in the wheel."""
    script = textwrap.dedent(
        f"""
        import socket
        def refuse(*args, **kwargs):
            raise OSError("network access attempted")
        socket.socket = refuse
        socket.create_connection = refuse
        socket.getaddrinfo = refuse
        from inference_service.engine.phonemes import PhonemeRecognizer
        from inference_service.media import load_audio_mono
        samples = load_audio_mono({str(DATA / "speech-en.wav")!r}, 16000)
        print(len(PhonemeRecognizer().posteriors(samples).phones()))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    assert int(done.stdout.strip()) >= 10


def test_silence_is_not_read_and_has_no_phones() -> None:
    recognizer = PhonemeRecognizer()
    posteriors = recognizer.posteriors(np.zeros(16000 * 20, np.float32))
    assert posteriors.probs.shape == (round(20 / FRAME_S), len(posteriors.symbols))
    assert np.all(posteriors.probs[:, posteriors.blank] == 1.0)
    assert posteriors.phones() == []


def test_a_sentence_across_a_chunk_edge_is_heard_as_it_is_alone() -> None:
    """Long tracks are read in 8 s chunks with context either side: a sentence straddling
    an edge (at 6.8 s, the edge falls in "big") is heard nearly as it is alone (context
    always changes a CTC model's output a little: one phone in ten at most, one frame)."""
    samples = load_audio_mono(DATA / "speech-en.wav", 16000)
    alone = PhonemeRecognizer().posteriors(samples).phones()
    offset = round(6.8 * 16000)
    track = np.zeros(offset + samples.size, np.float32)
    track[offset:] = samples
    placed = [p for p in PhonemeRecognizer().posteriors(track).phones() if p.start_s >= 6.5]
    matcher = difflib.SequenceMatcher(
        a=[p.symbol for p in alone], b=[p.symbol for p in placed], autojunk=False
    )
    assert matcher.ratio() >= 0.9, (alone, placed)
    for block in matcher.get_matching_blocks():
        for k in range(block.size):
            shift = placed[block.b + k].start_s - 6.8 - alone[block.a + k].start_s
            assert abs(shift) <= FRAME_S + 1e-6


def test_noise_is_heard_with_little_confidence() -> None:
    rng = np.random.default_rng(3)
    noise = (0.1 * rng.standard_normal(16000 * 4)).astype(np.float32)
    phones = PhonemeRecognizer().posteriors(noise).phones()
    assert all(p.confidence < 0.5 for p in phones), phones
