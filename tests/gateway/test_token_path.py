"""A token crosses the gateway decoded once and encoded once, however many connections get it."""

import collections
from datetime import UTC, datetime
from typing import Any

import pydantic
import pytest

from gateway import translate
from gateway.connection import ConnectionProtocol
from gateway.metrics import GatewayMetrics
from gateway.outbox import AttemptFilter, Outbox
from shared import events
from shared.events import ReplyToken
from shared.rpc import SessionInfo

SESSION = SessionInfo(
    session_id="s", owner="u", title="", members=["u"], created_at=datetime.now(UTC)
)


def test_one_decode_and_one_encode_per_token_for_every_connection(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    data = ReplyToken(session_id="s", message_id="m", attempt=1, index=0, text="Hi")
    raw = data.model_dump_json().encode()
    connections = []
    for i in range(3):
        protocol = ConnectionProtocol("s", f"c{i}", max_frame_bytes=1024, metrics=GatewayMetrics())
        protocol.join("u", SESSION)
        protocol.open(0, None, None)
        protocol.go_live()
        connections.append((protocol, Outbox(16)))
    calls: collections.Counter[str] = collections.Counter()
    decode, encode = events._bus_event.validate_json, pydantic.BaseModel.model_dump_json
    validate = pydantic.BaseModel.__init__

    def counted_decode(*args: Any, **kwargs: Any) -> Any:
        calls["decode"] += 1
        return decode(*args, **kwargs)

    def counted_encode(self: pydantic.BaseModel, *args: Any, **kwargs: Any) -> str:
        calls["encode"] += 1
        return encode(self, *args, **kwargs)

    def counted_validate(self: pydantic.BaseModel, *args: Any, **kwargs: Any) -> None:
        calls["validate"] += 1
        validate(self, *args, **kwargs)

    monkeypatch.setattr(events._bus_event, "validate_json", counted_decode)
    monkeypatch.setattr(pydantic.BaseModel, "model_dump_json", counted_encode)
    monkeypatch.setattr(pydantic.BaseModel, "__init__", counted_validate)

    item = translate.outgoing_for_event(raw, 7)
    assert item is not None
    assert AttemptFilter().admit(item)
    frames = []
    for protocol, outbox in connections:
        outbox.offer(item)
        frames += protocol.forward(outbox.drain())

    assert frames == [item.text] * 3
    assert calls == {"decode": 1, "encode": 1}
