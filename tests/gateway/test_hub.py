"""The hub on a real nats-server: one subscription set per session, fan-out to every outbox."""

import asyncio
import json
import re
import uuid

import pytest

from gateway.hub import SessionHub
from gateway.outbox import Outbox
from shared import stream, subjects
from shared.events import PresenceChange, ReplyToken, TypingRelay

pytestmark = pytest.mark.real


async def drained(outbox: Outbox) -> list[dict[str, object]]:
    """What `outbox` holds, once it holds something (2 s at most)."""
    for _ in range(200):
        if items := outbox.drain():
            return [json.loads(item.text) for item in items]
        await asyncio.sleep(0.01)
    return []


async def test_stored_events_and_relays_reach_every_outbox(nats_url: str) -> None:
    nc = await stream.connect(nats_url, name="test")
    try:
        js = nc.jetstream()
        await stream.ensure_stream(js, stream.chat_stream_config())
        hub = SessionHub(nc)
        sid = uuid.uuid4().hex
        tab1, tab2 = Outbox(100, owner="c1"), Outbox(100, owner="c2")
        await hub.join(sid, tab1)
        await hub.join(sid, tab2)
        assert (hub.sessions, hub.connections) == (1, 2)

        token = ReplyToken(session_id=sid, message_id="m", attempt=1, index=0, text="hi")
        ack = await js.publish(subjects.out_token(sid), token.model_dump_json().encode())
        await asyncio.sleep(0.2)
        expected = {
            "type": "stream_token",
            "seq": ack.seq,
            "message_id": "m",
            "index": 0,
            "text": "hi",
        }
        for tab in (tab1, tab2):
            frames = await drained(tab)
            stored_at = frames[0].pop("ts")  # when the stream stored it, as every frame says
            assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", str(stored_at))
            assert frames == [expected]

        typing = TypingRelay(participant="alice", state=True, origin="c1")
        await nc.publish(subjects.typing(sid), typing.model_dump_json().encode())
        joined = PresenceChange(participant="bob", state="joined", origin="c3")
        await nc.publish(subjects.presence(sid), joined.model_dump_json().encode())
        await asyncio.sleep(0.2)
        assert await drained(tab1) == [
            {"type": "presence", "participant": "bob", "state": "joined"}
        ]
        assert await drained(tab2) == [
            {"type": "typing", "participant": "alice", "state": True},
            {"type": "presence", "participant": "bob", "state": "joined"},
        ]

        await hub.leave(sid, tab1)
        await hub.leave(sid, tab2)
        assert (hub.sessions, hub.connections) == (0, 0)
    finally:
        await nc.close()
