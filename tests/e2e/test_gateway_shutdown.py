"""A gateway stopped the way Kubernetes stops a pod (SIGTERM) closes its sockets with 1012
(service restart); the client reconnects to another gateway and resumes by `last_seq`, and the
reply that was streaming arrives whole, once."""

import json
import signal
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import websockets

from fake_llm.script import reply_pieces
from support.client import (
    SUBPROTOCOL,
    connect,
    dev_user,
    frames_until_end,
    new_session,
    next_frame,
)
from support.system import System, system_with_own_nats

pytestmark = [pytest.mark.real, pytest.mark.e2e]


@pytest.fixture(scope="module")
def system(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> Iterator[System]:
    with system_with_own_nats(
        tmp_path_factory.mktemp("shutdown"), redis_url=redis_url, workers=1, gateways=2
    ) as running:
        yield running


async def read_until_closed(
    ws: websockets.ClientConnection, seen: list[dict[str, Any]]
) -> websockets.ConnectionClosed:
    """Every frame until the server closes the socket; how it closed it."""
    try:
        while True:
            seen.append(await next_frame(ws, 15))
    except websockets.ConnectionClosed as closed:
        return closed


async def test_a_stopping_gateway_closes_with_1012_and_the_client_resumes_elsewhere(
    system: System,
) -> None:
    async with httpx.AsyncClient(base_url=system.gateway_urls[1]) as http:
        alice = await dev_user(http)
        sid = await new_session(http, alice)
    seen: list[dict[str, Any]] = []
    ws = await connect(system.ws_urls[0], sid, alice)
    assert (await next_frame(ws))["type"] == "ready"
    content = "[fake tokens=120 delay_ms=20]"
    await ws.send(json.dumps({"type": "message", "message_id": "m1", "content": content}))
    while [f["type"] for f in seen].count("stream_token") < 5:
        seen.append(await next_frame(ws))
    system.named("gateway-1").popen.send_signal(signal.SIGTERM)
    closed = await read_until_closed(ws, seen)
    assert closed.rcvd is not None
    assert closed.rcvd.code == 1012  # service restart: reconnect, elsewhere
    last_seq = max(f["seq"] for f in seen if "seq" in f)
    async with websockets.connect(
        f"{system.ws_urls[1]}/v1/sessions/{sid}/ws?last_seq={last_seq}",
        subprotocols=[SUBPROTOCOL],
        additional_headers=alice.auth,
    ) as again:
        assert (await next_frame(again))["recovered"] is True
        frames = seen + await frames_until_end(again)
    seqs = [f["seq"] for f in frames if "seq" in f]
    assert seqs == sorted(set(seqs))
    text = "".join(f["text"] for f in frames if f["type"] == "stream_token")
    assert text == frames[-1]["text"] == "".join(reply_pieces(120))
