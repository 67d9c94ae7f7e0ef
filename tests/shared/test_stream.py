"""The CHAT stream on a real nats-server: republish with sequence, dedup, what is not stored."""

import asyncio
import uuid

import pytest
from nats.aio.msg import Msg

from shared import stream, subjects

pytestmark = pytest.mark.real


async def test_stream_republishes_with_sequence_and_dedups(nats_url: str) -> None:
    nc = await stream.connect(nats_url, name="test")
    try:
        js = nc.jetstream()
        await stream.ensure_stream(js, stream.chat_stream_config())
        sid = uuid.uuid4().hex
        live: list[Msg] = []

        async def collect(msg: Msg) -> None:
            live.append(msg)

        await nc.subscribe(subjects.live(sid), cb=collect)
        first = await js.publish(subjects.chat_in(sid), b"{}", headers={"Nats-Msg-Id": sid})
        again = await js.publish(subjects.chat_in(sid), b"{}", headers={"Nats-Msg-Id": sid})
        token = await js.publish(subjects.out_token(sid), b"{}")
        await nc.publish(subjects.cancel(sid), b"m1")  # core only: never stored
        await asyncio.sleep(0.3)

        assert again.duplicate
        assert again.seq == first.seq
        assert [m.subject for m in live] == [f"live.{sid}.in", f"live.{sid}.out.token"]
        assert [int((m.headers or {})["Nats-Sequence"]) for m in live] == [first.seq, token.seq]
        last = await js.get_last_msg(subjects.STREAM, subjects.session_stored(sid))
        assert last.seq == token.seq
    finally:
        await nc.close()


async def test_ensure_stream_is_idempotent_and_repairs_drift(nats_url: str) -> None:
    nc = await stream.connect(nats_url, name="test")
    try:
        js = nc.jetstream()
        await stream.ensure_stream(js, stream.chat_stream_config(max_age_s=3600))
        info = await stream.ensure_stream(js, stream.chat_stream_config(max_age_s=7200))
        assert info.config.max_age == 7200
        info = await stream.ensure_stream(js, stream.chat_stream_config())
        assert info.config.republish is not None
        assert info.config.republish.dest == "live.>"
    finally:
        await nc.close()


async def test_connect_gives_up_with_a_clear_error() -> None:
    with pytest.raises(ConnectionError, match="not reachable"):
        await stream.connect("nats://127.0.0.1:1", name="test", timeout_s=0.5)
