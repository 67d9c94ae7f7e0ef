"""The connection protocol driven with plain calls, no sockets: opening and resuming, client
frames, live frames, backpressure, expiry and refusals."""

import json
from datetime import UTC, datetime
from typing import Any

from gateway.connection import (
    CLOSE_FORBIDDEN,
    CLOSE_TRY_AGAIN_LATER,
    CLOSE_UNAUTHORIZED,
    Cancel,
    Close,
    ConnectionProtocol,
    Reauthenticate,
    Relay,
    RunCommand,
    Submit,
    cursor,
)
from gateway.metrics import GatewayMetrics
from gateway.outbox import Outgoing
from gateway.refusal import NOT_STORED
from gateway.submissions import Stored
from shared import rpc
from shared.events import ReplyToken
from shared.frames import StreamTokenFrame

SESSION = rpc.SessionInfo(
    session_id="s1", owner="alice", title="", members=["alice"], created_at=datetime.now(UTC)
)


def protocol(metrics: GatewayMetrics | None = None) -> ConnectionProtocol:
    """A connection whose user, alice, joined session s1."""
    connection = ConnectionProtocol(
        "s1", "c1", max_frame_bytes=1024, metrics=metrics or GatewayMetrics()
    )
    assert connection.join("alice", SESSION) is None
    return connection


def live(head: int = 10) -> ConnectionProtocol:
    connection = protocol()
    connection.open(head, None, None)
    connection.go_live()
    return connection


def token(seq: int, index: int, text: str) -> Outgoing:
    frame = StreamTokenFrame(seq=seq, message_id="m1", index=index, text=text)
    event = ReplyToken(session_id="s1", message_id="m1", attempt=1, index=index, text=text)
    return Outgoing(frame.model_dump_json(), seq, event)


def decoded(frames: list[str]) -> list[Any]:
    return [json.loads(f) for f in frames]


def counted(metrics: GatewayMetrics, name: str, **labels: str) -> float:
    return metrics.registry.get_sample_value(name, labels) or 0.0


def test_a_new_connection_is_told_the_head_and_replays_nothing() -> None:
    connection = protocol()
    [ready] = decoded(connection.open(42, None, None))
    assert ready == {
        "type": "ready",
        "session_id": "s1",
        "participant": "alice",
        "last_seq": 42,
        "recovered": None,
    }
    assert connection.replay_after is None
    assert connection.state == "replaying"


def test_a_cursor_the_stream_still_holds_is_replayed_from() -> None:
    metrics = GatewayMetrics()
    connection = protocol(metrics)
    [ready] = decoded(connection.open(42, "30", (1, 42)))
    assert ready["recovered"] is True
    assert connection.replay_after == 30
    assert counted(metrics, "tokenwire_gateway_resumes_total", recovered="true") == 1


def test_a_cursor_older_than_the_stream_is_not_recovered() -> None:
    connection = protocol()
    [ready] = decoded(connection.open(42, "3", (20, 42)))
    assert ready["recovered"] is False
    assert connection.replay_after is None


def test_a_cursor_that_is_not_one_gets_an_error_and_no_replay() -> None:
    connection = protocol()
    ready, error = decoded(connection.open(42, "-1", None))
    assert ready["recovered"] is None
    assert error["type"] == "error"
    assert error["code"] == "bad_frame"
    assert connection.replay_after is None
    assert [cursor(v) for v in (None, "", "7", "x", "1" * 20)] == [None, None, 7, None, None]


def test_live_frames_at_or_below_the_head_are_not_sent_twice() -> None:
    connection = live(head=10)
    relay = Outgoing('{"type":"typing"}')
    frames = connection.forward([token(9, 0, "old"), token(11, 1, "new"), relay])
    assert frames == [token(11, 1, "new").text, relay.text]


def test_nothing_is_forwarded_before_the_connection_is_live_or_after_it_closes() -> None:
    connection = protocol()
    connection.open(0, None, None)
    assert connection.forward([token(1, 0, "a")]) == []
    connection.go_live()
    assert connection.forward([token(1, 0, "a")]) != []
    connection.gone()
    assert connection.forward([token(2, 1, "b")]) == []


def test_queued_deltas_are_merged_and_counted() -> None:
    metrics = GatewayMetrics()
    connection = protocol(metrics)
    connection.open(0, None, None)
    connection.go_live()
    [merged] = decoded(connection.forward([token(1, 0, "a"), token(2, 1, "b"), token(3, 2, "c")]))
    assert (merged["text"], merged["seq"], merged["index"]) == ("abc", 3, 0)
    assert counted(metrics, "tokenwire_gateway_merged_deltas_total") == 2
    assert counted(metrics, "tokenwire_gateway_frames_out_total") == 1


def test_an_overflowed_or_interrupted_outbox_closes_with_1013_once() -> None:
    connection = live()
    assert connection.drained(overflowed=False, interrupted=False) is None
    close = connection.drained(overflowed=True, interrupted=False)
    assert close == Close(CLOSE_TRY_AGAIN_LATER, "client too slow; resume with last_seq")
    assert connection.state == "closing"
    assert connection.drained(overflowed=True, interrupted=False) is None
    interrupted = live().drained(overflowed=False, interrupted=True)
    assert interrupted is not None
    assert interrupted.code == CLOSE_TRY_AGAIN_LATER
    assert "broker" in interrupted.reason


def test_client_frames_become_commands() -> None:
    connection = live()
    submit = connection.receive('{"type":"message","message_id":"m1","content":"hi"}')
    assert isinstance(submit, Submit)
    assert (submit.frame.message_id, submit.frame.content) == ("m1", "hi")
    assert connection.receive('{"type":"cancel","message_id":"m1"}') == Cancel("m1")
    relay = connection.receive('{"type":"typing","state":true}')
    assert isinstance(relay, Relay)
    assert (relay.typing.participant, relay.typing.origin) == ("alice", "c1")
    pong = connection.receive('{"type":"ping"}')
    assert isinstance(pong, str)
    assert json.loads(pong) == {"type": "pong"}
    assert connection.receive('{"type":"auth","token":"t"}') == Reauthenticate("t")


def test_a_message_that_starts_with_a_slash_is_a_command() -> None:
    connection = live()
    command = connection.receive('{"type":"message","message_id":"m2","content":"/model large"}')
    assert isinstance(command, RunCommand)
    assert command.frame.content == "/model large"
    escaped = connection.receive('{"type":"message","message_id":"m3","content":"//etc is"}')
    assert isinstance(escaped, Submit)
    assert escaped.frame.content == "/etc is"


def test_a_bad_frame_gets_an_error_frame_and_the_connection_stays_live() -> None:
    metrics = GatewayMetrics()
    connection = protocol(metrics)
    connection.open(0, None, None)
    connection.go_live()
    for raw, code in (
        ("{", "bad_json"),
        ('{"type":"nope"}', "bad_frame"),
        ("x" * 2000, "too_large"),
    ):
        error = connection.receive(raw)
        assert isinstance(error, str)
        assert json.loads(error)["code"] == code
        assert counted(metrics, "tokenwire_gateway_frames_in_total", type=code) == 1
    assert connection.state == "live"


def test_a_refused_submission_is_told_and_a_stored_one_is_not() -> None:
    metrics = GatewayMetrics()
    connection = protocol(metrics)
    assert connection.submitted(Stored(seq=5, new=True)) is None
    refusal = connection.submitted(NOT_STORED)
    assert refusal is not None
    assert json.loads(refusal) == {
        "type": "error",
        "code": "unavailable",
        "detail": "message not stored; send it again",
        "retry_after_s": 1.0,
    }
    assert counted(metrics, "tokenwire_gateway_refusals_total", code="unavailable") == 1


def test_expiry_and_refusals_close_the_connection() -> None:
    connection = live()
    assert connection.expired() == Close(CLOSE_UNAUTHORIZED, "token expired")
    assert connection.state == "closing"
    frame, close = protocol().refuse(NOT_STORED)
    assert json.loads(frame)["code"] == "unavailable"
    assert close.code == CLOSE_TRY_AGAIN_LATER
    assert protocol().unavailable().code == CLOSE_TRY_AGAIN_LATER
    assert live().revoked() == Close(CLOSE_UNAUTHORIZED, "token revoked")


def test_a_connection_is_authenticated_then_joins_as_a_member() -> None:
    fresh = ConnectionProtocol("s1", "c1", max_frame_bytes=1024, metrics=GatewayMetrics())
    assert fresh.state == "authenticating"
    assert fresh.unauthenticated("token expired") == Close(CLOSE_UNAUTHORIZED, "token expired")
    assert fresh.sessions_unavailable().code == CLOSE_TRY_AGAIN_LATER
    for user, session in (("mallory", SESSION), ("alice", None)):
        refused = ConnectionProtocol("s1", "c1", max_frame_bytes=1024, metrics=GatewayMetrics())
        assert refused.join(user, session) == Close(CLOSE_FORBIDDEN, "not a member of this session")
        assert refused.state == "closing"
    joined = protocol()
    assert (joined.state, joined.user) == ("replaying", "alice")
