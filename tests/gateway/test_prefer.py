"""`Prefer` (RFC 7240): only `wait=N` counts, and a bad N is refused, never ignored."""

from __future__ import annotations

import pytest

from gateway.prefer import InvalidPreference, parse_wait, wait_preference
from gateway.problems import Problem


@pytest.mark.parametrize(
    ("lines", "seconds"),
    [
        ([], None),
        ([""], None),
        (["respond-async"], None),
        (["return=minimal, handling=lenient"], None),
        (["wait=1"], 1),
        (["wait=60"], 60),
        (["WAIT=5"], 5),
        (["wait = 7"], 7),
        (['wait="12"'], 12),
        (["wait=005"], 5),
        (["respond-async, wait=10"], 10),
        (["respond-async; foo=bar, wait=10; x=y"], 10),
        # Several header lines are one list.
        (["respond-async", "wait=3"], 3),
        # Only the first instance of a preference counts (RFC 7240 section 2).
        (["wait=3, wait=999"], 3),
        (["wait=3", "wait=0"], 3),
        # A comma inside a quoted parameter does not split the list.
        (['foo="a, wait=0", wait=4'], 4),
        # Not a preference named wait.
        (["waiting=5", "x-wait=5"], None),
    ],
)
def test_wait_is_read(lines: list[str], seconds: int | None) -> None:
    assert parse_wait(lines) == seconds


@pytest.mark.parametrize(
    "value",
    ["wait=0", "wait=61", "wait=-1", "wait=+5", "wait=1.5", "wait=", "wait", "wait=abc",
     "wait=1e1", "wait=５", "wait=99999999999999999999", 'wait="61"', "wait=5 5"],
)  # fmt: skip
def test_a_bad_wait_is_refused(value: str) -> None:
    with pytest.raises(InvalidPreference):
        parse_wait([value])


def test_the_refusal_is_a_422_naming_the_header() -> None:
    with pytest.raises(Problem) as caught:
        wait_preference(["respond-async, wait=0"])
    problem = caught.value
    assert problem.status == 422
    assert problem.code == "invalid_parameter"
    assert [(e.field, e.message) for e in problem.errors] == [
        ("Prefer", "Prefer wait must be an integer from 1 to 60 (seconds)")
    ]
