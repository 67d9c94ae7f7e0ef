"""Whether a resume cursor can be served from the stream."""

import pytest

from gateway.replay import can_resume


@pytest.mark.parametrize(
    ("last_seq", "first", "last", "expected"),
    [
        (0, 1, 100, True),  # everything is still stored
        (50, 1, 100, True),
        (100, 1, 100, True),  # nothing new
        (9, 10, 100, True),  # the very first stored event is the next one
        (8, 10, 100, False),  # seq 9 is gone: out of retention
        (101, 1, 100, False),  # newer than the stream: it was reset
        (0, 0, 0, True),  # an empty stream
    ],
)
def test_can_resume(last_seq: int, first: int, last: int, expected: bool) -> None:
    assert can_resume(last_seq, first, last) is expected
