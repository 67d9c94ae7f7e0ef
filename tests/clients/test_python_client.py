"""The Python client library against the real stack: a reply streamed as typed frames, a
connection dropped mid-reply made again and resumed without gap or duplicate, cancel, a cursor
the stream cannot serve surfaced, history paged, and a session the server ends."""

import asyncio
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from tokenwire_client import Client, SessionClosed

from fake_llm.script import reply_pieces
from shared.frames import (
    ChatMessageFrame,
    ReadyFrame,
    ServerFrame,
    StreamEndFrame,
    StreamStartFrame,
    StreamTokenFrame,
    WaitingFrame,
)
from support.system import System, system_with_own_nats

pytestmark = [pytest.mark.real, pytest.mark.e2e]
CHAT_SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "chat.py"


@pytest.fixture(scope="module")
def system(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> Iterator[System]:
    with system_with_own_nats(
        tmp_path_factory.mktemp("python-client"), redis_url=redis_url, workers=1
    ) as running:
        yield running


def text_of(frames: list[ServerFrame]) -> str:
    return "".join(f.text for f in frames if isinstance(f, StreamTokenFrame))


async def test_a_reply_streams_as_typed_frames(system: System) -> None:
    async with await Client.dev(system.gateway_url) as client:
        sid = await client.create_session()
        async with client.session(sid) as session:
            asked = [f async for f in session.ask("Hello! [fake tokens=5]")]
    # A message sent before the module's worker was heard from is told it waits: not here.
    frames: list[ServerFrame] = [f for f in asked if not isinstance(f, WaitingFrame)]
    # The message as stored (the echo says it is), then its reply.
    assert [type(f) for f in frames[:2]] == [ChatMessageFrame, StreamStartFrame]
    end = frames[-1]
    assert isinstance(end, StreamEndFrame)
    assert text_of(frames) == end.text == "".join(reply_pieces(5))


async def test_a_drop_mid_reply_is_resumed_without_gap_or_duplicate(system: System) -> None:
    async with await Client.dev(system.gateway_url) as client:
        sid = await client.create_session()
        async with client.session(sid) as session:
            frames: list[ServerFrame] = []
            async for frame in session.ask("[fake tokens=150 delay_ms=15]"):
                frames.append(frame)
                if len(frames) == 10:
                    await session.reconnect()  # as a network that went away
            assert session.reconnects == 1
    seqs = [f.seq for f in frames if hasattr(f, "seq")]
    assert seqs == sorted(set(seqs))  # none twice, in order
    end = frames[-1]
    assert isinstance(end, StreamEndFrame)
    assert text_of(frames) == end.text == "".join(reply_pieces(150))


async def test_cancel_stops_the_reply(system: System) -> None:
    async with await Client.dev(system.gateway_url) as client:
        sid = await client.create_session()
        async with client.session(sid) as session:
            mid = await session.send("[fake tokens=300 delay_ms=20]")
            async for frame in session.frames():
                if isinstance(frame, StreamTokenFrame) and frame.index == 2:
                    await session.cancel(mid)
                if isinstance(frame, StreamEndFrame):
                    end = frame
                    break
    assert end.finish_reason == "cancelled"
    assert len(end.text.split()) < 300


async def test_a_cursor_the_stream_cannot_serve_is_surfaced(system: System) -> None:
    async with await Client.dev(system.gateway_url) as client:
        sid = await client.create_session()
        async with client.session(sid, last_seq=999_999_999) as session:
            ready = await anext(session.frames())
    assert isinstance(ready, ReadyFrame)
    assert ready.recovered is False
    assert session.cursor.last_seq == ready.last_seq  # the head, from here on


async def test_history_pages_back_through_every_message(system: System) -> None:
    async with await Client.dev(system.gateway_url) as client:
        sid = await client.create_session()
        async with client.session(sid) as session:
            for i in range(5):
                await session.send(f"note {i}", message_id=f"n{i}", reply=False)
            stored = 0
            async for frame in session.frames():
                stored += frame.type == "message"
                if stored == 5:
                    break
        for _ in range(50):  # persistence records them a moment after they stream
            contents = [m.content async for m in client.all_history(sid, page_size=2)]
            if len(contents) == 5:
                break
            await asyncio.sleep(0.1)
    assert contents == [f"note {i}" for i in reversed(range(5))]


async def test_a_session_the_server_ends_raises(system: System) -> None:
    async with await Client.dev(system.gateway_url) as alice:
        sid = await alice.create_session()
        async with await Client.dev(system.gateway_url) as bob, bob.session(sid) as session:
            with pytest.raises(SessionClosed) as closed:
                await anext(session.frames())
    assert closed.value.code == 4403


async def test_the_chat_script_prints_a_streamed_reply(system: System) -> None:
    done = await asyncio.create_subprocess_exec(
        sys.executable,
        str(CHAT_SCRIPT),
        "--url",
        system.gateway_url,
        "Hi [fake tokens=6]",
        stdout=asyncio.subprocess.PIPE,
    )
    out, _ = await asyncio.wait_for(done.communicate(), 30)
    assert done.returncode == 0
    lines = out.decode().splitlines()
    assert lines[0].startswith("[session ")
    assert lines[1] == "".join(reply_pieces(6))
    assert lines[2].startswith("[stop, ")
