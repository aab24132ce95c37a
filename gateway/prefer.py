"""The `Prefer` request header (RFC 7240), of which the API honours only `wait=N`.

API.md "Waiting for the result in the same call": `Prefer: wait=N`, N an
integer from 1 to 60, holds the answer until the job ends or N seconds pass.

How the header is read, per RFC 7240 section 2:

* it is a comma-separated list of preferences, possibly over several header
  lines (which are one list joined by commas);
* a preference is `token [= word] *(; parameter)`, `word` a token or a
  quoted-string; names are case-insensitive, parameters are not used here;
* a preference given more than once counts only the first time;
* any other preference is ignored, and so is a list item that is not a
  preference at all (the RFC lets a server ignore what it does not follow).

`wait` itself is checked strictly, since a client asking for it expects it to
happen: a value that is not an integer from 1 to 60 (`wait=0`, `wait=61`,
`wait=1.5`, a bare `wait`) is a 422 naming the `Prefer` header rather than an
answer that silently did not wait.
"""

from __future__ import annotations

from collections.abc import Sequence

from gateway.problems import FieldError, invalid_parameters

HEADER = "Prefer"
APPLIED_HEADER = "Preference-Applied"
WAIT = "wait"
MIN_WAIT_S = 1
MAX_WAIT_S = 60

_RULE = f"{HEADER} wait must be an integer from {MIN_WAIT_S} to {MAX_WAIT_S} (seconds)"


class InvalidPreference(ValueError):
    """The header asks for `wait` with a value the API does not take."""

    def field_error(self) -> FieldError:
        return FieldError(HEADER, str(self))


def _split_outside_quotes(text: str, separator: str) -> list[str]:
    """`text` split at `separator`, except inside quoted-strings (with `\\` escapes)."""
    parts: list[str] = []
    current: list[str] = []
    quoted = escaped = False
    for char in text:
        if escaped:
            escaped = False
        elif quoted and char == "\\":
            escaped = True
        elif char == '"':
            quoted = not quoted
        elif char == separator and not quoted:
            parts.append("".join(current))
            current = []
            continue
        current.append(char)
    parts.append("".join(current))
    return parts


def _unquote(word: str) -> str:
    if len(word) >= 2 and word[0] == word[-1] == '"':
        inner, out, escaped = word[1:-1], [], False
        for char in inner:
            if escaped or char != "\\":
                out.append(char)
                escaped = False
            else:
                escaped = True
        return "".join(out)
    return word


def _wait_seconds(value: str | None) -> int:
    # Digits only: int() would also take "+5", " 5", "5_0" and non-ASCII digits.
    if value is None or not value.isascii() or not value.isdigit() or len(value) > 8:
        raise InvalidPreference(_RULE)
    seconds = int(value)
    if not MIN_WAIT_S <= seconds <= MAX_WAIT_S:
        raise InvalidPreference(_RULE)
    return seconds


def parse_wait(values: Sequence[str]) -> int | None:
    """The seconds of the first `wait` preference in the header lines `values`.

    None when no `wait` is asked for; raises InvalidPreference for a bad one.
    """
    for line in values:
        for item in _split_outside_quotes(line, ","):
            preference = _split_outside_quotes(item, ";")[0]
            name, equals, word = preference.partition("=")
            if name.strip().lower() != WAIT:
                continue
            return _wait_seconds(_unquote(word.strip()) if equals else None)
    return None


def wait_preference(values: Sequence[str]) -> int | None:
    """`parse_wait`, its refusal as the contract's 422 naming the `Prefer` header."""
    try:
        return parse_wait(values)
    except InvalidPreference as error:
        raise invalid_parameters([error.field_error()]) from None


def applied(wait_s: int) -> dict[str, str]:
    """The answer's header saying the wait was honoured."""
    return {APPLIED_HEADER: f"{WAIT}={wait_s}"}
