"""Errors whose message is safe and useful to show to the API user."""

from __future__ import annotations


class MediaError(Exception):
    """An input (or the output we tried to make from it) is unusable.

    ``user_message`` ends up verbatim in the job's ``error`` field, so it must
    say what is wrong in words a user can act on and never leak paths or stack
    traces.
    """

    def __init__(self, user_message: str) -> None:
        super().__init__(user_message)
        self.user_message = user_message


class NoFaceError(MediaError):
    """The image holds no face the engine could animate."""

    def __init__(self, user_message: str = "no face found in image") -> None:
        super().__init__(user_message)


class FaceTooSmallError(MediaError):
    """A face was found but is too small to animate convincingly."""

    def __init__(self, face_px: int, minimum_px: int, *, source: str = "image") -> None:
        advice = "a larger or closer portrait" if source == "image" else "a closer shot"
        super().__init__(
            f"the face in the {source} is {face_px} px wide, below the minimum of {minimum_px} px;"
            f" use {advice}"
        )
        self.face_px = face_px
        self.minimum_px = minimum_px


def short_reason(exc: BaseException, limit: int = 120) -> str:
    """A one-line, bounded description of a decoder exception for ``user_message``.

    FFmpeg errors carry the file name in their text; we drop everything after
    the first ``:`` that follows a path-looking token so no server paths leak.
    """
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    # PyAV formats errors as "[Errno N] Reason: '/path/to/file'"; keep the reason.
    if "] " in text:
        text = text.split("] ", 1)[1]
    if ": '" in text:
        text = text.split(": '", 1)[0]
    text = text.strip().rstrip(".")
    return text[:limit] if text else type(exc).__name__
