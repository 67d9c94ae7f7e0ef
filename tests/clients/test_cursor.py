"""The client's cursor (no I/O): each stored frame once, a resume that repeats nothing, the
head taken when the stream cannot replay, and backoff that grows, is capped and jitters."""

import pytest
from tokenwire_client.cursor import Cursor, backoff_s

from shared.frames import ReadyFrame, StreamTokenFrame, TypingRelayFrame


def token(seq: int) -> StreamTokenFrame:
    return StreamTokenFrame(seq=seq, message_id="m1", index=seq, text="x")


def test_each_stored_frame_is_taken_once_and_the_resume_starts_after_it() -> None:
    cursor = Cursor()
    assert cursor.query() == ""
    assert cursor.accept(ReadyFrame(session_id="s", participant="u", last_seq=10))
    assert [cursor.accept(token(s)) for s in (11, 12, 12, 11, 13)] == [
        True,
        True,
        False,
        False,
        True,
    ]
    assert cursor.query() == "?last_seq=13"
    assert cursor.accept(TypingRelayFrame(participant="u", state=True))  # not stored: always
    # A reconnection's ready frame does not move a cursor the stream could serve.
    assert cursor.accept(ReadyFrame(session_id="s", participant="u", last_seq=20, recovered=True))
    assert cursor.last_seq == 13


def test_a_cursor_the_stream_cannot_serve_moves_to_its_head() -> None:
    cursor = Cursor(last_seq=5)
    cursor.accept(ReadyFrame(session_id="s", participant="u", last_seq=900, recovered=False))
    assert cursor.last_seq == 900
    assert not cursor.accept(token(899))


def test_backoff_doubles_to_ten_seconds_with_jitter() -> None:
    assert [backoff_s(a, lambda: 0.5) for a in range(7)] == [0.5, 1.0, 2.0, 4.0, 8.0, 10.0, 10.0]
    assert backoff_s(0, lambda: 0.0) == pytest.approx(0.4)
    assert backoff_s(0, lambda: 1.0) == pytest.approx(0.6)
