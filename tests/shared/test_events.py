import pytest
from pydantic import ValidationError

from shared.events import ReplyEnd, ReplyToken, Usage, UserMessage, parse_event


def test_parse_event_picks_the_model_by_type() -> None:
    token = ReplyToken(session_id="s", message_id="m", attempt=1, index=3, text="hi")
    assert parse_event(token.model_dump_json()) == token
    end = ReplyEnd(
        session_id="s",
        message_id="m",
        attempt=2,
        model="x",
        text="hi",
        finish_reason="stop",
        usage=Usage(prompt_tokens=1),
        duration_ms=5,
    )
    parsed = parse_event(end.model_dump_json().encode())
    assert isinstance(parsed, ReplyEnd)
    assert parsed.attempt == 2


def test_events_carry_a_schema_version() -> None:
    message = UserMessage(session_id="s", message_id="m", participant="u", content="c")
    assert '"v":1' in message.model_dump_json()


def test_unknown_events_are_refused() -> None:
    with pytest.raises(ValidationError):
        parse_event(b'{"type":"reply_mystery","session_id":"s","message_id":"m"}')
    with pytest.raises(ValidationError):
        parse_event(b"not json")
