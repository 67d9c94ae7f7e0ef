"""The load process: C WebSocket sessions, one message each, sent at once; measures at the
client. Prints one JSON list of samples.

`python bench/load.py tokenwire|baseline URL C [PROMPT [CLIENTS]]`: with CLIENTS (tokenwire
only), each session has that many connections of its user, one of which sends; every one
counts the tokens it receives.
`python bench/load.py idle URL C`: C idle connections to one session; prints `ready` once all
are open, closes them when stdin closes.
`python bench/load.py cost tokenwire|baseline URL N P PROMPT`: N replies, P at a time, each on
a new connection of its own user (connect, send, read the reply, close); users and sessions
are made first, then it prints `prepared` and starts once stdin gives it a line (so the
caller can read CPU counters around the replies alone).
Sessions are made with a title (BENCH_UNTITLED=1: without, so that the model names each).
"""

import asyncio
import json
import os
import sys
import time
from typing import Any

import httpx
import websockets

PROMPT = "hello"
IDLE_BATCH = 250
"""Idle connections opened at once."""
TITLED = os.environ.get("BENCH_UNTITLED") != "1"
"""Sessions are made with a title, unless BENCH_UNTITLED=1 (then the model names each)."""


async def tokenwire_session(
    url: str,
    token: str,
    session_id: str,
    start: asyncio.Event,
    out: dict[str, Any],
    prompt: str | None,
) -> None:
    """One connection; it sends `prompt` once everyone is connected (None: it only watches)."""
    t0 = time.perf_counter()
    ws_url = url.replace("http", "ws", 1) + f"/v1/sessions/{session_id}/ws"
    async with websockets.connect(
        ws_url,
        subprotocols=[websockets.Subprotocol("tokenwire.v1")],
        additional_headers={"Authorization": f"Bearer {token}"},
        max_size=2**24,
    ) as ws:
        json.loads(await ws.recv())  # ready
        out["connect"] = time.perf_counter() - t0
        out["connected"].set()
        await start.wait()
        message = json.dumps({"type": "message", "message_id": "m1", "content": prompt})
        await measure(ws, message if prompt is not None else None, out)


async def baseline_session(
    url: str, start: asyncio.Event, out: dict[str, Any], prompt: str
) -> None:
    t0 = time.perf_counter()
    async with websockets.connect(url.replace("http", "ws", 1) + "/ws", max_size=2**24) as ws:
        out["connect"] = time.perf_counter() - t0
        out["connected"].set()
        await start.wait()
        await measure(ws, json.dumps({"content": prompt}), out)


async def measure(ws: Any, message: str | None, out: dict[str, Any]) -> None:
    sent = time.perf_counter()
    out["sent_at"] = sent
    if message is not None:
        await ws.send(message)
    last = None
    gaps: list[float] = []
    async for raw in ws:
        frame = json.loads(raw)
        now = time.perf_counter()
        if frame["type"] == "message":
            out["echo"] = now - sent  # stored in the stream and back through the gateway
        elif frame["type"] == "stream_start":
            out["start"] = now - sent  # the worker has the message and is calling the model
        elif frame["type"] == "stream_token":
            if last is None:
                out["ttft"] = now - sent
            else:
                gaps.append(now - last)
            last = now
        elif frame["type"] == "error":  # refused (limits, an outage): it will not be answered
            out["end"] = f"error {frame.get('code')}"
            return
        elif frame["type"] in ("stream_end", "stream_error"):
            out["whole"] = now - sent
            out["done_at"] = now
            out["words"] = len(frame.get("text", "").split())
            out["end"] = frame.get("code") or frame.get("finish_reason") or frame["type"]
            out["gaps"] = gaps
            if frame.get("ttft_ms") is not None:
                out["model_ttft"] = frame["ttft_ms"] / 1000  # as the worker saw it
            return
    out["end"] = f"closed {ws.close_code}"  # the socket closed before the reply ended


async def idle(url: str, count: int) -> None:
    async with httpx.AsyncClient(base_url=url, timeout=30) as http:
        token = (await http.post("/v1/auth/dev-token")).json()["token"]
        auth = {"Authorization": f"Bearer {token}"}
        session_id = (await http.post("/v1/sessions", headers=auth)).json()["session_id"]
    ws_url = url.replace("http", "ws", 1) + f"/v1/sessions/{session_id}/ws"
    sockets: list[Any] = []

    async def open_one() -> None:
        ws = await websockets.connect(
            ws_url,
            subprotocols=[websockets.Subprotocol("tokenwire.v1")],
            additional_headers={"Authorization": f"Bearer {token}"},
            compression=None,
            ping_interval=None,
        )
        await ws.recv()  # ready
        sockets.append(ws)

    for first in range(0, count, IDLE_BATCH):
        await asyncio.gather(*(open_one() for _ in range(min(IDLE_BATCH, count - first))))
    print("ready", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    await asyncio.gather(*(ws.close() for ws in sockets), return_exceptions=True)


async def one_reply(kind: str, url: str, user: tuple[str, str], prompt: str) -> dict[str, Any]:
    """A new connection, one message, its whole reply, then close."""
    out: dict[str, Any] = {}
    t0 = time.perf_counter()
    if kind == "tokenwire":
        token, session_id = user
        ws_url = url.replace("http", "ws", 1) + f"/v1/sessions/{session_id}/ws"
        connecting = websockets.connect(
            ws_url,
            subprotocols=[websockets.Subprotocol("tokenwire.v1")],
            additional_headers={"Authorization": f"Bearer {token}"},
            max_size=2**24,
        )
        message = json.dumps({"type": "message", "message_id": "m1", "content": prompt})
    else:
        connecting = websockets.connect(url.replace("http", "ws", 1) + "/ws", max_size=2**24)
        message = json.dumps({"content": prompt})
    async with connecting as ws:
        if kind == "tokenwire":
            json.loads(await ws.recv())  # ready
        out["connect"] = time.perf_counter() - t0
        await measure(ws, message, out)
    return out


async def cost(kind: str, url: str, count: int, parallel: int, prompt: str) -> None:
    users = [("", "")] * count
    if kind == "tokenwire":
        users = await prepare_users(url, count)
    print("prepared", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    gate = asyncio.Semaphore(parallel)

    async def gated(user: tuple[str, str]) -> dict[str, Any]:
        async with gate:
            return await one_reply(kind, url, user, prompt)

    print(json.dumps(await asyncio.gather(*(gated(user) for user in users))), flush=True)


async def prepare_users(url: str, count: int) -> list[tuple[str, str]]:
    """`count` dev users with a session each, 10 requests at a time: (token, session id).
    With 50 at a time httpx's pool spent 14 CPU-seconds on 500 users (tokenwire's processes
    5), and twice a request was reset: likely uvicorn's 5 s keep-alive closing a connection
    the starved client had left idle."""
    limits = httpx.Limits(max_connections=10)
    timeout = httpx.Timeout(30, pool=None)
    async with httpx.AsyncClient(base_url=url, timeout=timeout, limits=limits) as http:

        async def prepare() -> tuple[str, str]:
            token = (await http.post("/v1/auth/dev-token")).json()["token"]
            auth = {"Authorization": f"Bearer {token}"}
            # Titled: a session without a title asks the model for one after its first reply,
            # a call the baseline never makes (measured apart: docs/benchmarks.md, titles).
            body = {"title": "bench"} if TITLED else {}
            made = await http.post("/v1/sessions", headers=auth, json=body)
            return token, made.json()["session_id"]

        return list(await asyncio.gather(*(prepare() for _ in range(count))))


async def main(kind: str, url: str, count: int, prompt: str = PROMPT, clients: int = 1) -> None:
    start = asyncio.Event()
    results: list[dict[str, Any]] = [{"connected": asyncio.Event()} for _ in range(count * clients)]
    if kind == "tokenwire":
        users = await prepare_users(url, count)  # before the clock starts
        tasks = [
            tokenwire_session(url, token, sid, start, out, prompt if i % clients == 0 else None)
            for i, ((token, sid), out) in enumerate(
                zip([u for u in users for _ in range(clients)], results, strict=True)
            )
        ]
    else:
        tasks = [baseline_session(url, start, out, prompt) for out in results]
    runners = [asyncio.create_task(task) for task in tasks]
    # Everyone connected first, then every message at once.
    await asyncio.wait_for(asyncio.gather(*(r["connected"].wait() for r in results)), 120)
    start.set()
    await asyncio.wait(runners, timeout=120)
    for out in results:
        del out["connected"]
    print(json.dumps(results))


if __name__ == "__main__":
    import uvloop

    if sys.argv[1] == "idle":
        uvloop.run(idle(sys.argv[2], int(sys.argv[3])))
    elif sys.argv[1] == "cost":
        kind, url, count, parallel, prompt = sys.argv[2:7]
        uvloop.run(cost(kind, url, int(count), int(parallel), prompt))
    else:
        prompt = sys.argv[4] if len(sys.argv) > 4 else PROMPT
        clients = int(sys.argv[5]) if len(sys.argv) > 5 else 1
        uvloop.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3]), prompt, clients))
