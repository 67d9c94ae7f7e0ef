"""The client protocol: what the parser accepts, and the error code for everything else."""

import json

import pytest

from shared.frames import (
    AuthenticatedFrame,
    AuthFrame,
    CancelFrame,
    FrameError,
    MessageFrame,
    PingFrame,
    StreamTokenFrame,
    TypingFrame,
    parse_client_frame,
    parse_server_frame,
)


def test_parses_each_client_frame_type() -> None:
    assert parse_client_frame('{"type":"message","message_id":"m-1","content":"hi"}') == (
        MessageFrame(type="message", message_id="m-1", content="hi", reply=True)
    )
    assert isinstance(parse_client_frame('{"type":"cancel","message_id":"m-1"}'), CancelFrame)
    assert parse_client_frame(b'{"type":"typing","state":true}') == TypingFrame(
        type="typing", state=True
    )
    assert isinstance(parse_client_frame('{"type":"ping"}'), PingFrame)
    assert parse_client_frame('{"type":"auth","token":"a.b.c"}') == AuthFrame(
        type="auth", token="a.b.c"
    )


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        ("not json", "bad_json"),
        ("[1, 2]", "bad_json"),
        ('"message"', "bad_json"),
        ("{}", "bad_frame"),
        ('{"type":"shout"}', "bad_frame"),
        ('{"type":"message","message_id":"m1"}', "bad_frame"),
        ('{"type":"message","message_id":"m1","content":""}', "bad_frame"),
        ('{"type":"message","message_id":"has space","content":"x"}', "bad_frame"),
        ('{"type":"message","message_id":"m1","content":"x","extra":1}', "bad_frame"),
        ('{"type":"typing","state":"maybe"}', "bad_frame"),
        ('{"type":"typing","state":"yes"}', "bad_frame"),
        ('{"type":"message","message_id":"m1","content":"x","reply":1}', "bad_frame"),
        ("[" * 100_000, "bad_json"),
        ('{"type":"auth","token":""}', "bad_frame"),
        ('{"type":"auth","token":"' + "t" * 8193 + '"}', "bad_frame"),
    ],
)
def test_refuses_malformed_frames_with_a_code(raw: str, code: str) -> None:
    with pytest.raises(FrameError) as caught:
        parse_client_frame(raw, max_bytes=1_000_000)
    assert caught.value.code == code
    assert caught.value.detail


def test_content_over_10000_characters_is_refused() -> None:
    frame = json.dumps({"type": "message", "message_id": "m1", "content": "x" * 10_001})
    with pytest.raises(FrameError) as caught:
        parse_client_frame(frame)
    assert caught.value.code == "bad_frame"
    assert "content" in caught.value.detail


def test_frames_over_the_byte_limit_are_too_large() -> None:
    with pytest.raises(FrameError) as caught:
        parse_client_frame('{"type":"ping"}' + " " * 100, max_bytes=64)
    assert caught.value.code == "too_large"


def test_server_frames_round_trip() -> None:
    frame = StreamTokenFrame(seq=7, message_id="m1", index=0, text="Hi")
    assert parse_server_frame(frame.model_dump_json()) == frame


def test_an_authenticated_frame_round_trips() -> None:
    frame = AuthenticatedFrame(participant="u1", expires_at=1_800_000_000.0)
    assert parse_server_frame(frame.model_dump_json()) == frame
