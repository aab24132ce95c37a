"""Phonemes to mouth shapes: the viseme table, coarticulation, the closure rule, the fallback.

The recogniser's output is built by hand here (``Posteriors`` with a few
symbols), so each rule is tested on exactly the sequence it is about; the rig
tests render the real portrait and measure it with the bench's face mesh.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from inference_service.engine.animator import mouth_shapes
from inference_service.engine.mouth_rig import MouthRig
from inference_service.engine.phonemes import FRAME_S, PhonemesUnavailable, Posteriors
from inference_service.engine.visemes import (
    JAW,
    Viseme,
    class_matrix,
    mouth_targets,
    viseme_of,
)
from inference_service.media import load_audio_mono, load_image_bgr
from tests.media_fixtures import portrait_path
from tests.quality.faces import mouth_opening
from tests.quality.scenarios import rest_landmarks, scaled_reference

FPS = 25
SYMBOLS = ["<blank>", "<wb>", "m", "a", "u", "i", "f", "t", "pʰ"]
DATA = Path(__file__).resolve().parents[1] / "data"


@pytest.mark.parametrize(
    ("symbol", "shape"),
    [
        ("m", Viseme.CLOSED),
        ("b", Viseme.CLOSED),
        ("p", Viseme.CLOSED),
        ("pʰ", Viseme.CLOSED),  # Korean ㅍ
        ("p͈", Viseme.CLOSED),  # Korean ㅃ
        ("f", Viseme.LABIODENTAL),
        ("v", Viseme.LABIODENTAL),
        ("u", Viseme.ROUNDED),
        ("oʊ", Viseme.ROUNDED),
        ("ɔ", Viseme.ROUNDED),
        ("w", Viseme.ROUNDED),
        ("wa", Viseme.ROUNDED),  # Korean 와: the lips round first
        ("jo", Viseme.ROUNDED),  # Korean 요
        ("i", Viseme.SPREAD),
        ("e", Viseme.SPREAD),
        ("ɯ", Viseme.SPREAD),  # Korean 으
        ("a", Viseme.OPEN),
        ("ɑ", Viseme.OPEN),
        ("ja", Viseme.OPEN),  # Korean 야
        ("ʌ", Viseme.OPEN),  # Korean 어
        ("aɪ", Viseme.OPEN),
        ("t", Viseme.NEUTRAL),
        ("t͡ɕʰ", Viseme.NEUTRAL),  # Korean ㅊ
        ("s", Viseme.NEUTRAL),
        ("ə", Viseme.NEUTRAL),
        ("ː", None),
        ("%", None),
    ],
)
def test_each_phone_has_the_mouth_shape_of_its_sound(symbol: str, shape: Viseme | None) -> None:
    assert viseme_of(symbol) == shape


def test_every_symbol_of_the_model_that_is_a_sound_has_a_shape() -> None:
    from hama.vocab import Vocabulary

    letters = [s for s in Vocabulary.load(None).decoder if s.isalpha() and s.isascii()]
    assert len(letters) > 15
    assert [s for s in letters if viseme_of(s) is None] == []
    matrix = class_matrix(["<blank>", "m", "a", "ː"])
    assert matrix.sum(axis=1).tolist() == [0.0, 1.0, 1.0, 0.0]


def _posteriors(seconds: float, phones: list[tuple[str, float, float]]) -> Posteriors:
    """Blank everywhere except each (symbol, at_s, probability): one emission frame each."""
    frames = round(seconds / FRAME_S)
    probs = np.zeros((frames, len(SYMBOLS)), np.float32)
    probs[:, 0] = 1.0
    for symbol, at, probability in phones:
        row = round(at / FRAME_S)
        probs[row] = (1.0 - probability) / (len(SYMBOLS) - 1)
        probs[row, SYMBOLS.index(symbol)] = probability
        probs[row, 0] = max(probs[row, 0], 0.0)
    return Posteriors(probs, SYMBOLS, 0)


def test_a_bilabial_closes_the_lips_on_a_frame_just_before_it_is_emitted() -> None:
    post = _posteriors(2.0, [("a", 0.4, 0.95), ("m", 0.8, 0.95), ("a", 0.84, 0.95)])
    targets = mouth_targets(post, FPS, 50)
    shut = np.flatnonzero(targets.closure == 1.0)
    # The stop is emitted at its release (0.8 s): the lips shut over the 70 ms before it
    # (0.72-0.79 s), fully on the frames at least half inside it (18: 0.72-0.76 s, 19).
    assert shut.tolist() == [18, 19]
    assert targets.closure[:15].max() == 0 and targets.closure[22:].max() == 0


def test_a_strong_bilabial_closes_the_lips_where_the_model_is_unsure() -> None:
    # Phones heard at 0.4 (confidence under CLOSE_CONFIDENCE), and an "m" the best path
    # misses (a blank wins its frame, as Korean "밥을" is heard a-blank-p): a clear "m" peak
    # still shuts the lips; a faint one, like the stray peaks of sound that is no language,
    # does not.
    def closes(m_probability: float) -> bool:
        post = _posteriors(2.0, [("a", 0.4, 0.4), ("a", 0.7, 0.4), ("t", 0.8, 0.4)])
        row = round(0.6 / FRAME_S)
        post.probs[row] = 0.0
        post.probs[row, 0] = 1.0 - m_probability
        post.probs[row, SYMBOLS.index("m")] = m_probability
        assert post.symbols[int(post.probs[row].argmax())] == "<blank>"
        targets = mouth_targets(post, FPS, 50)
        assert 0.0 < targets.confidence[15] < 0.5
        return bool(targets.closure.max() == 1.0)

    assert closes(0.4)
    assert not closes(0.15)


def test_lips_round_ahead_of_a_rounded_vowel_and_spread_just_ahead_of_a_spread_one() -> None:
    post = _posteriors(2.0, [("t", 0.5, 0.95), ("u", 0.6, 0.95), ("i", 1.2, 0.95)])
    targets = mouth_targets(post, FPS, 50)
    at = round(0.6 * FPS)
    assert targets.round[at] > 0.8  # rounded on the vowel
    assert targets.round[at - 2] > 0.3  # ...and already 80 ms before it (over the "t")
    assert targets.round[round(1.3 * FPS)] < -0.8  # spread on the "i"
    # ...already 40 ms before its emission (heard some way into the vowel), not 160 ms.
    assert targets.round[round(1.16 * FPS)] < -0.8
    assert targets.round[round(1.04 * FPS)] == 0.0
    assert targets.round[: round(0.4 * FPS)].max() == 0.0


def _mixed(seconds: float, symbols: list[str], rows: dict[float, dict[str, float]]) -> Posteriors:
    """Blank everywhere except the given frames, each with its own mix of symbols."""
    probs = np.zeros((round(seconds / FRAME_S), len(symbols)), np.float32)
    probs[:, 0] = 1.0
    for at, mix in rows.items():
        row = round(at / FRAME_S)
        probs[row] = 0.0
        for symbol, probability in mix.items():
            probs[row, symbols.index(symbol)] = probability
        probs[row, 0] = 1.0 - probs[row].sum()
    return Posteriors(probs, symbols, 0)


def test_a_vowel_heard_surely_rounds_the_lips_among_unsure_phones() -> None:
    # Korean is heard phone by phone less surely than English: consonants at 0.2 around a
    # clear "u". The neighbourhood's confidence is low, the vowel's own is not.
    post = _posteriors(2.0, [("t", 0.45, 0.2), ("u", 0.6, 0.95), ("t", 0.8, 0.2)])
    targets = mouth_targets(post, FPS, 50)
    at = round(0.62 * FPS)
    assert targets.confidence[at] < 0.7
    assert targets.round[at] > 0.9


def test_a_rounded_vowel_heard_split_rounds_fully_and_an_open_one_keeps_its_lean() -> None:
    symbols = ["<blank>", "u", "i", "a"]
    post = _mixed(
        2.0,
        symbols,
        {
            # A Korean 우 as the model hears it: mostly u, some of its mass on a and i.
            0.5: {"u": 0.7, "a": 0.15, "i": 0.05},
            # An "a" with a little rounding in it.
            1.2: {"a": 0.7, "u": 0.2},
        },
    )
    targets = mouth_targets(post, FPS, 50)
    lean_u = (0.7 - 0.05) / 0.9
    assert lean_u < 0.75 < targets.round[round(0.6 * FPS)]
    assert targets.round[round(1.3 * FPS)] == pytest.approx(0.2 / 0.9, abs=0.02)


def test_an_open_mid_vowel_opens_the_jaw_nearly_as_far_as_an_open_one() -> None:
    symbols = ["<blank>", "o", "ɔ", "a", "ɛ", "e"]
    at = {"o": 0.3, "ɔ": 0.7, "a": 1.1, "e": 1.5, "ɛ": 1.9}
    post = _mixed(2.4, symbols, {t: {symbol: 0.95} for symbol, t in at.items()})
    jaw = mouth_targets(post, FPS, 60).jaw
    opened = {symbol: float(jaw[round((t + 0.06) * FPS)]) for symbol, t in at.items()}
    assert opened["o"] < opened["ɔ"] < opened["a"]
    assert opened["e"] < opened["ɛ"] < opened["a"]
    assert opened["ɔ"] == pytest.approx(0.85, abs=0.05)


def test_the_jaw_opens_by_vowel_and_follows_loudness_where_the_model_is_unsure() -> None:
    sure = mouth_targets(_posteriors(2.0, [("a", 0.5, 0.95), ("i", 1.2, 0.95)]), FPS, 50)
    assert sure.jaw[round(0.6 * FPS)] == pytest.approx(JAW[Viseme.OPEN], abs=0.05)
    assert sure.jaw[round(1.3 * FPS)] == pytest.approx(JAW[Viseme.SPREAD], abs=0.05)
    # The same phones heard with little confidence (noise, music): loudness alone (jaw 1),
    # no rounding, no closure, without a step between the two.
    unsure = _posteriors(2.0, [("a", 0.5, 0.1), ("i", 1.2, 0.1), ("m", 1.6, 0.1)])
    targets = mouth_targets(unsure, FPS, 50)
    assert targets.jaw.min() > 0.85 and targets.confidence.max() <= 0.2
    assert not targets.closure.any()
    assert np.abs(targets.round).max() < 0.2


def _loud_vowel(seconds: float) -> np.ndarray:
    t = np.arange(round(seconds * 16000)) / 16000
    voice = 0.5 * np.sin(2 * np.pi * 140 * t) + 0.3 * np.sin(2 * np.pi * 700 * t)
    return voice.astype(np.float32)


class _Heard:
    """A recogniser that hears the given phones (the real one is tested in test_engine_phonemes)."""

    def __init__(self, posteriors: Posteriors | None) -> None:
        self._posteriors = posteriors

    def posteriors(self, samples: np.ndarray, rate: int = 16000) -> Posteriors:
        if self._posteriors is None:
            raise PhonemesUnavailable("no model here")
        return self._posteriors


def test_a_bilabial_shuts_the_mouth_however_loud_the_sound_around_it() -> None:
    sound = _loud_vowel(2.0)
    heard = _posteriors(2.0, [("a", 0.3, 0.95), ("pʰ", 1.0, 0.95), ("a", 1.04, 0.95)])
    shape = mouth_shapes([sound], FPS, 50, _Heard(heard))[0]  # type: ignore[arg-type]
    loud_only = mouth_shapes([sound], FPS, 50, None)[0]
    frame = round((1.0 - 0.04) * FPS)  # the closure's middle frame
    assert loud_only.openness[frame] > 0.8
    assert shape.openness[frame] == 0.0 and shape.closure[frame] == 1.0
    assert shape.openness[frame + 3] > 0.5  # and it opens again for the vowel


def test_without_a_phoneme_model_the_mouth_follows_loudness_as_before() -> None:
    sound = _loud_vowel(1.0)
    fallback = mouth_shapes([sound], FPS, 25, _Heard(None))[0]  # type: ignore[arg-type]
    loud_only = mouth_shapes([sound], FPS, 25, None)[0]
    assert np.array_equal(fallback.openness, loud_only.openness)
    assert not fallback.closure.any() and not fallback.teeth.any()


def test_a_silent_track_stays_closed_and_is_not_read() -> None:
    silent = np.zeros(16000, np.float32)
    shape = mouth_shapes([silent], FPS, 25, _Heard(None))[0]  # type: ignore[arg-type]
    assert not shape.openness.any() and not shape.roundness.any() and not shape.closure.any()


def test_real_speech_closes_the_lips_for_each_bilabial() -> None:
    """End to end on espeak-ng's "My mother bought a big blue boat" (m at 0.30 and 0.47 s,
    b at 0.81, 1.20, 1.55 and 1.77 s): a closed frame within each m/b's first 100 ms."""
    from inference_service.engine.phonemes import PhonemeRecognizer

    samples = load_audio_mono(DATA / "speech-en.wav", 16000)
    frames = round(samples.size / 16000 * FPS)
    shape = mouth_shapes([samples], FPS, frames, PhonemeRecognizer())[0]
    shut = []
    for start in (0.30, 0.471, 0.807, 1.204, 1.552, 1.767):
        window = shape.openness[int(start * FPS) : int((start + 0.1) * FPS) + 1]
        shut.append(bool(window.min() == 0.0))
    # The model hears the b of "a big" as an f (the lower lip still meets the upper teeth).
    assert sum(shut) >= 5, shut
    # Open between them: the vowels are not swallowed by the closures.
    assert shape.openness.max() > 0.7


@pytest.fixture(scope="module")
def smiling() -> tuple[np.ndarray, np.ndarray]:
    """The astronaut at 480p: her rest mouth is open (a smile showing teeth)."""
    image = scaled_reference(load_image_bgr(portrait_path()), 480)
    points = rest_landmarks(image, 1)[0]
    assert points is not None
    return image, points.astype(np.float32)


def test_a_closure_seals_an_open_rest_mouth(smiling: tuple[np.ndarray, np.ndarray]) -> None:
    image, points = smiling
    rig = MouthRig(image, points)
    assert rig.seal > 0.1 * rig.mouth_width  # her lips are apart at rest
    sealed = image.copy()
    rig.render_into(sealed, 0.0, 0.0, closure=1.0)
    rest = mouth_opening(points)
    closed = mouth_opening(rest_landmarks(sealed, 1)[0])
    # The mesh reads her rest gap at ~0.13 eye distances; sealed lips read under a third.
    assert closed < 0.35 * rest, (closed, rest)
    untouched = image.copy()
    rig.render_into(untouched, 0.0, 0.0, closure=0.0)
    assert np.array_equal(untouched, image)


def test_rounded_lips_are_narrower_than_spread_ones(
    smiling: tuple[np.ndarray, np.ndarray],
) -> None:
    image, points = smiling
    rig = MouthRig(image, points)

    def width(roundness: float) -> float:
        canvas = image.copy()
        rig.render_into(canvas, 0.4, roundness)
        found = rest_landmarks(canvas, 1)[0]
        assert found is not None
        return float(np.linalg.norm(found[61] - found[291]))

    assert width(1.0) < 0.88 * width(-1.0)


def test_an_f_shows_the_upper_teeth_down_to_the_lower_lip(
    smiling: tuple[np.ndarray, np.ndarray],
) -> None:
    image, points = smiling
    # A video frame's rig: its own mouth is closed first, then teeth are drawn in the gap.
    rig = MouthRig(image, points, close_source=True)
    plain, teeth = image.copy(), image.copy()
    rig.render_into(plain, 0.3, 0.0, teeth=0.0)
    rig.render_into(teeth, 0.3, 0.0, teeth=1.0)
    changed = np.any(plain != teeth, axis=2)
    assert changed.any()
    # Where they differ, the f's mouth is lighter: teeth, not the cavity's shadow.
    assert teeth[changed].mean() > plain[changed].mean() + 20


def test_rounding_and_spreading_never_fold_the_cheeks(
    smiling: tuple[np.ndarray, np.ndarray],
) -> None:
    """Along the mouth, the source column each output pixel shows only moves one way: a map
    that turns back shows the cheek beside the mouth twice, mirrored (grey smudges)."""
    image, points = smiling
    rig = MouthRig(image, points)
    assert abs(rig.frame.ex[1]) < 0.05  # her face is upright: along the mouth is along x
    for pull in (rig._pucker_x, rig._spread_x):
        source_x = rig._grid_x + pull
        assert np.abs(pull).max() > 0.1 * rig.mouth_width  # it does move the lips
        assert np.diff(source_x, axis=1).min() > 0.0
