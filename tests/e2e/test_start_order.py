"""Start order does not matter: a message accepted before any worker runs is answered later."""

import asyncio
import json
from collections.abc import Iterator

import httpx
import pytest

from support.client import connect, dev_user, frames_until_end, new_session, next_frame
from support.system import System, system_with_own_nats

pytestmark = [pytest.mark.real, pytest.mark.e2e]


@pytest.fixture
def system(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> Iterator[System]:
    """A system of its own for each test, started with no worker at all."""
    workdir = tmp_path_factory.mktemp("no-workers")
    with system_with_own_nats(workdir, redis_url=redis_url, workers=0) as running:
        yield running


async def test_a_message_waits_in_the_stream_for_the_first_worker(system: System) -> None:
    async with httpx.AsyncClient(base_url=system.gateway_url) as http:
        alice = await dev_user(http)
        sid = await new_session(http, alice)
    async with await connect(system.ws_url, sid, alice) as ws:
        await next_frame(ws)
        await ws.send(
            json.dumps({"type": "message", "message_id": "early", "content": "[fake tokens=3]"})
        )
        echo = await next_frame(ws)
        assert echo["type"] == "message"  # stored: acknowledged with no worker running
        system.add_worker()
        frames = await frames_until_end(ws, timeout_s=30)
    assert frames[-1]["type"] == "stream_end"
    assert frames[-1]["message_id"] == "early"


async def test_a_cancel_before_any_worker_took_the_message_is_honoured(system: System) -> None:
    async with httpx.AsyncClient(base_url=system.gateway_url) as http:
        alice = await dev_user(http)
        sid = await new_session(http, alice)
    async with await connect(system.ws_url, sid, alice) as ws:
        await next_frame(ws)
        await ws.send(
            json.dumps({"type": "message", "message_id": "doomed", "content": "[fake tokens=50]"})
        )
        assert (await next_frame(ws))["type"] == "message"
        await ws.send(json.dumps({"type": "cancel", "message_id": "doomed"}))
        await asyncio.sleep(0.2)  # the cancel is broadcast to nobody: no worker runs
        system.add_worker()
        frames = await frames_until_end(ws, timeout_s=30)
    assert [(f["type"], f.get("finish_reason")) for f in frames] == [("stream_end", "cancelled")]
    assert frames[-1]["text"] == ""
