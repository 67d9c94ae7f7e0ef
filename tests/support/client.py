"""A test client of the tokenwire protocol: REST calls and a WebSocket reader."""

import asyncio
import json
from dataclasses import dataclass
from typing import Any

import httpx
import websockets
from websockets.asyncio.client import ClientConnection

SUBPROTOCOL = websockets.Subprotocol("tokenwire.v1")


@dataclass
class User:
    user_id: str
    token: str

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


async def dev_user(http: httpx.AsyncClient) -> User:
    answer = (await http.post("/v1/auth/dev-token")).raise_for_status().json()
    return User(answer["user_id"], answer["token"])


async def new_session(http: httpx.AsyncClient, user: User, **fields: Any) -> str:
    body = {"title": "test", **fields}
    answer = await http.post("/v1/sessions", headers=user.auth, json=body)
    assert answer.status_code == 201, answer.text
    session_id: str = answer.json()["session_id"]
    return session_id


async def connect(ws_url: str, session_id: str, user: User, **kwargs: Any) -> ClientConnection:
    return await websockets.connect(
        f"{ws_url}/v1/sessions/{session_id}/ws",
        subprotocols=[SUBPROTOCOL],
        additional_headers=user.auth,
        **kwargs,
    )


RELAYS = ("typing", "presence")
NOTICES = ("waiting",)
"""Frames a test sees or not by when its worker started: a message sent before it was heard
from is told it waits."""


async def next_frame(
    ws: ClientConnection, timeout_s: float = 10.0, *, relays: bool = False, notices: bool = False
) -> dict[str, Any]:
    """The next frame; `typing` and `presence` relays, which interleave with everything at
    their own pace, are skipped unless `relays` is set, and `waiting` unless `notices` is."""
    while True:
        frame: dict[str, Any] = json.loads(await asyncio.wait_for(ws.recv(), timeout_s))
        if (relays or frame["type"] not in RELAYS) and (notices or frame["type"] not in NOTICES):
            return frame


async def frames_until_end(
    ws: ClientConnection, timeout_s: float = 15.0, *, notices: bool = False
) -> list[dict[str, Any]]:
    """Every frame up to and including the next `stream_end` or `stream_error`."""
    frames: list[dict[str, Any]] = []
    async with asyncio.timeout(timeout_s):
        while True:
            frames.append(await next_frame(ws, timeout_s, notices=notices))
            if frames[-1]["type"] in ("stream_end", "stream_error"):
                return frames


async def history(http: httpx.AsyncClient, sid: str, user: User, expected: int) -> list[Any]:
    """The session's history once it holds at least `expected` messages (persistence
    records them a moment after they stream)."""
    messages: list[Any] = []
    for _ in range(150):
        answer = await http.get(
            f"/v1/sessions/{sid}/messages", headers=user.auth, params={"limit": 200}
        )
        if answer.status_code == 200:
            messages = answer.json()["messages"]
            if len(messages) >= expected:
                return messages
        await asyncio.sleep(0.1)
    raise AssertionError(f"history has {len(messages)} of {expected}")


async def replay(ws_url: str, session_id: str, user: User, last_seq: int) -> list[dict[str, Any]]:
    """A new socket's frames after `last_seq`, to the next reply's end (a complete resume:
    its `ready` says the stream recovered it)."""
    async with websockets.connect(
        f"{ws_url}/v1/sessions/{session_id}/ws?last_seq={last_seq}",
        subprotocols=[SUBPROTOCOL],
        additional_headers=user.auth,
    ) as ws:
        ready = await next_frame(ws)
        assert (ready["type"], ready["recovered"]) == ("ready", True)
        return await frames_until_end(ws)
