"""Jepsen-style accounting for the fault suite: clients that keep chatting through faults, and
the counts that say whether anything was lost, duplicated or shown twice.

A `Chat` is one user in one session sending messages one after another, as a real client
does: it reconnects with backoff and resumes from its last `seq`, and sends a message again
(same `message_id`) until its echo arrives. Every frame it receives is kept. `count` then
compares what clients saw with what persistence stored and what the model was asked.
"""

import asyncio
import contextlib
import itertools
import json
import random
import socket
import time
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

import httpx
import websockets
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from support.client import SUBPROTOCOL, User

TERMINAL = ("stream_end", "stream_error")
UNBILLED_PER_LOST_CALL = 3
"""Tokens a lost call's estimate may miss: what its worker had received but not yet published
when it died (one coalescing window, 10 ms here at 25 ms a token) and what was in flight."""


@dataclass
class Chat:
    ws_url: str
    session_id: str
    user: User
    tag: str = field(default_factory=lambda: uuid.uuid4().hex[:10])
    frames: list[dict[str, Any]] = field(default_factory=list)
    echoed: dict[str, int] = field(default_factory=dict)
    """message_id → seq of its echo: acknowledged to the client."""
    ended: dict[str, dict[str, Any]] = field(default_factory=dict)
    last_seq: int = 0
    reconnects: int = 0
    resends: int = 0
    sent: set[str] = field(default_factory=set)
    rcvbuf: int = 0
    """A kernel receive buffer this small (0: the default), so a slow reader backs up."""
    connections: list[tuple[int, int, int]] = field(default_factory=list)
    """Per connection: the `last_seq` it resumed from, the head in its `ready`, and how many
    frames had been received before it."""
    _ws: ClientConnection | None = None

    def __str__(self) -> str:
        """The session and what it received, one run of frames per (type, message, attempt)."""
        runs: list[list[Any]] = []
        for frame in self.frames:
            key = (frame.get("type"), frame.get("message_id"), frame.get("attempt"))
            if runs and runs[-1][0] == key:
                runs[-1][1] += 1
            else:
                runs.append([key, 1, frame.get("seq")])
        seen = ", ".join(
            f"{kind} {mid}"
            + (f" a{attempt}" if attempt else "")
            + (f" x{n}" if n > 1 else "")
            + f" @{seq}"
            for (kind, mid, attempt), n, seq in runs
        )
        return f"session {self.session_id} ({self.reconnects} reconnects) received: {seen}"

    def content(self, message_id: str, directive: str) -> str:
        return f"{self.tag}:{message_id} {directive}"

    async def say(self, message_id: str, directive: str, *, deadline_s: float = 120) -> None:
        """Send until echoed, then read until the reply ends; survives any disconnect."""
        payload = json.dumps(
            {
                "type": "message",
                "message_id": message_id,
                "content": self.content(message_id, directive),
            }
        )
        try:
            async with asyncio.timeout(deadline_s):
                await self._say(message_id, payload)
        except TimeoutError:
            raise TimeoutError(f"no end of {message_id} after {deadline_s} s: {self}") from None

    async def _say(self, message_id: str, payload: str) -> None:
        while message_id not in self.ended:
            ws = await self._connected()
            try:
                if message_id not in self.echoed:
                    if message_id in self.sent:
                        self.resends += 1
                    self.sent.add(message_id)
                    await ws.send(payload)
                await self._read_until(ws, message_id, resend_after_s=3.0)
            except (ConnectionClosed, OSError):
                await self._drop()

    async def leave(self) -> None:
        await self._drop()

    async def _connected(self) -> ClientConnection:
        delay = 0.1
        while self._ws is None:
            try:
                ws = await websockets.connect(
                    f"{self.ws_url}/v1/sessions/{self.session_id}/ws?last_seq={self.last_seq}",
                    subprotocols=[SUBPROTOCOL],
                    additional_headers=self.user.auth,
                    open_timeout=5,
                    max_size=2**24,
                    **self._socket_options(),
                )
                ready = json.loads(await asyncio.wait_for(ws.recv(), 5))
                if ready.get("type") != "ready":
                    await ws.close()
                    raise ConnectionError(f"no ready frame: {ready}")
                self._ws = ws
                self.connections.append((self.last_seq, ready.get("last_seq", 0), len(self.frames)))
                if self.frames or self.last_seq:
                    self.reconnects += 1
            except (OSError, InvalidHandshake, InvalidStatus, ConnectionClosed, TimeoutError):
                await asyncio.sleep(delay * (0.5 + random.random()))
                delay = min(delay * 2, 2.0)
            except ConnectionError:
                await asyncio.sleep(delay)
        return self._ws

    def _socket_options(self) -> dict[str, Any]:
        return {"sock": self._small_socket()} if self.rcvbuf else {}

    def _small_socket(self) -> socket.socket:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self.rcvbuf)
        host, port = self.ws_url.removeprefix("ws://").split(":")
        sock.connect((host, int(port)))
        return sock

    async def _read_until(
        self, ws: ClientConnection, message_id: str, *, resend_after_s: float
    ) -> None:
        """Read frames until `message_id`'s reply ends; return early (to resend) when its
        echo has not come within `resend_after_s`."""
        started = time.monotonic()
        while message_id not in self.ended:
            waiting_echo = message_id not in self.echoed
            timeout = resend_after_s - (time.monotonic() - started) if waiting_echo else 30.0
            if timeout <= 0:
                return
            try:
                raw = await asyncio.wait_for(ws.recv(), timeout)
            except TimeoutError:
                if waiting_echo:
                    return
                raise ConnectionClosed(None, None) from None
            frame = json.loads(raw)
            self._take(frame)

    def _take(self, frame: dict[str, Any]) -> None:
        kind = frame.get("type")
        if kind in ("typing", "presence", "pong"):
            return
        if kind == "error":
            if frame.get("code") in ("unavailable", "rate_limited", "busy"):
                return  # retryable: `say` sends again
            self.frames.append(frame)
            return
        self.frames.append(frame)
        seq = frame.get("seq")
        if isinstance(seq, int):
            self.last_seq = max(self.last_seq, seq)
        if kind == "message":
            self.echoed.setdefault(frame["message_id"], frame["seq"])
        elif kind in TERMINAL:
            self.ended[frame["message_id"]] = frame

    async def _drop(self) -> None:
        ws, self._ws = self._ws, None
        if ws is not None:
            with contextlib.suppress(Exception):
                await ws.close()


@dataclass
class SlowChat(Chat):
    """A client of a session that only reads, slowly, through a small receive buffer."""

    rcvbuf: int = 4096
    delay_s: float = 0.05

    async def follow(self, message_ids: set[str], *, deadline_s: float = 120) -> None:
        """Read until every one of `message_ids` has its reply; resume after any close."""
        async with asyncio.timeout(deadline_s):
            while not message_ids <= set(self.ended):
                ws = await self._connected()
                try:
                    while not message_ids <= set(self.ended):
                        self._take(json.loads(await asyncio.wait_for(ws.recv(), 30)))
                        await asyncio.sleep(self.delay_s)
                except (ConnectionClosed, OSError, TimeoutError):
                    await self._drop()
        await self._drop()


@dataclass
class Counts:
    scenario: str
    sessions: int = 0
    acknowledged: int = 0  # S
    stored: int = 0  # P
    replies: int = 0  # A
    duplicates: int = 0
    lost: int = 0
    unanswered: int = 0
    gaps: int = 0
    twice: int = 0
    llm_calls_max: int = 0
    llm_calls_mean: float = 0.0
    calls_made: int = 0
    """Model calls the fake model answered for these messages."""
    calls_billed: int = 0
    """Model calls recorded for billing (every attempt's, estimated for a lost one)."""
    estimated_calls: int = 0
    tokens_served: int = 0
    """Completion tokens the fake model sent."""
    tokens_billed: int = 0
    reconnects: int = 0
    problems: list[str] = field(default_factory=list)

    def must_be_clean(self, *, broker_failed: bool = False) -> None:
        """Nothing lost, duplicated or shown twice; every model call billed, and tokens
        billed as served but for what calls lost with a killed worker could not count. When
        the broker failed (`broker_failed`), an attempt that failed mid-stream counted what
        it had read, while the model went on writing into its socket as it waited on the
        broker: its bill may fall short by more, never exceed."""
        bad = {
            "duplicates": self.duplicates,
            "lost": self.lost,
            "unanswered": self.unanswered,
            "gaps": self.gaps,
            "tokens twice": self.twice,
        }
        assert not any(bad.values()), f"{self.scenario}: {bad}; {self.problems[:5]}"
        assert self.acknowledged == self.stored, self
        assert self.replies == self.acknowledged, self
        assert self.calls_billed == self.calls_made, self
        unbilled = self.tokens_served - self.tokens_billed
        assert unbilled >= 0, self
        if not broker_failed:
            assert unbilled <= UNBILLED_PER_LOST_CALL * self.estimated_calls, self


def client_view(chat: Chat, problems: list[str] | None = None) -> tuple[int, int]:
    """(gaps, tokens twice) in what `chat` rendered, per reply: the token frames of the final
    attempt, appended in order, must give exactly the stored text (a missing event is a gap),
    and their `index`es must only grow (a gateway merges consecutive events into one frame
    with the `index` of the first, so they may skip; a repeat is a token shown twice). Each
    finding is described in `problems`."""
    problems = [] if problems is None else problems
    gaps = twice = 0
    tokens: dict[tuple[str, int], list[dict[str, Any]]] = defaultdict(list)
    newest: dict[str, int] = {}
    for frame in chat.frames:
        kind, mid = frame.get("type"), frame.get("message_id", "")
        if kind == "stream_start":
            newest[mid] = max(newest.get(mid, 0), int(frame["attempt"]))
        elif kind == "stream_token":
            tokens[(mid, newest.get(mid, 1))].append(frame)
    for mid, end in chat.ended.items():
        seen = tokens.get((mid, newest.get(mid, 1)), [])
        indexes = [int(f["index"]) for f in seen]
        where = f"{chat.session_id[:8]}/{mid} attempt {newest.get(mid, 1)}"
        repeats = sum(1 for a, b in itertools.pairwise(indexes) if b <= a)
        if repeats:
            twice += repeats
            problems.append(f"{where}: indexes {indexes}")
        if end["type"] == "stream_end" and repeats == 0:
            text = "".join(f["text"] for f in seen)
            if text != end["text"]:
                gaps += 1
                problems.append(f"{where}: rendered {len(text)} of {len(end['text'])} chars")
    return gaps, twice


async def count(
    scenario: str, chats: list[Chat], gateway_url: str, llm_url: str, *, settle_s: float = 60
) -> Counts:
    """Compare what clients saw with persistence's history and the model's requests. Waits up
    to `settle_s` for persistence to catch up (it may have been down)."""
    result = Counts(scenario, sessions=len(chats))
    deadline = time.monotonic() + settle_s
    async with httpx.AsyncClient(base_url=gateway_url, timeout=10) as http:
        while True:
            rows = {chat.session_id: await history(http, chat) for chat in chats}
            caught_up = all(
                {m["message_id"] for m in rows[c.session_id] if m["role"] == "user"}
                >= set(c.echoed)
                and sum(
                    m["role"] == "assistant" and m["status"] != "error" for m in rows[c.session_id]
                )
                >= len(c.echoed)
                for c in chats
            )
            if caught_up or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.5)
        streams = (await http.get(f"{llm_url}/v1/_fake/streams")).json()
        tags = {chat.tag for chat in chats}
        ours = [s for s in streams if s["prompt"].split(":", 1)[0] in tags]
        await _billing(http, chats, ours, result, settle_s=10)
    calls = Counter(s["prompt"].split(" ", 1)[0] for s in streams)
    per_message: list[int] = []
    for chat in chats:
        stored = rows[chat.session_id]
        users = Counter(m["message_id"] for m in stored if m["role"] == "user")
        answers = Counter(
            m["in_reply_to"] for m in stored if m["role"] == "assistant" and m["status"] != "error"
        )
        result.acknowledged += len(chat.echoed)
        result.stored += sum(1 for mid in chat.echoed if users[mid])
        result.replies += sum(1 for mid in chat.echoed if answers[mid])
        result.duplicates += sum(n - 1 for n in users.values() if n > 1)
        result.duplicates += sum(n - 1 for n in answers.values() if n > 1)
        result.lost += sum(1 for mid in chat.echoed if not users[mid])
        unanswered = [mid for mid in chat.echoed if not answers[mid]]
        result.unanswered += len(unanswered)
        result.problems += [
            f"{chat.session_id[:8]}/{mid} unanswered: ended with {chat.ended.get(mid)}; "
            f"stored {[m for m in stored if mid in (m['message_id'], m.get('in_reply_to'))]}"
            for mid in unanswered
        ]
        gaps, twice = client_view(chat, result.problems)
        result.gaps += gaps
        result.twice += twice
        result.reconnects += chat.reconnects
        per_message += [calls[f"{chat.tag}:{mid}"] for mid in chat.echoed]
    if per_message:
        result.llm_calls_max = max(per_message)
        result.llm_calls_mean = sum(per_message) / len(per_message)
    return result


async def _billing(
    http: httpx.AsyncClient,
    chats: list[Chat],
    streams: list[dict[str, Any]],
    result: Counts,
    *,
    settle_s: float,
) -> None:
    """What was billed against what the model served: calls, and completion tokens. Waits up
    to `settle_s` for the estimates of lost calls, which follow the replies."""
    result.calls_made = len(streams)
    result.tokens_served = sum(int(s["sent"]) for s in streams)
    users = {chat.user.user_id: chat.user for chat in chats}
    deadline = time.monotonic() + settle_s
    while True:
        billed = [
            (await http.get("/v1/usage", headers=user.auth)).json()["billed"]
            for user in users.values()
        ]
        result.calls_billed = sum(b["calls"] for b in billed)
        result.estimated_calls = sum(b["estimated_calls"] for b in billed)
        result.tokens_billed = sum(b["completion_tokens"] for b in billed)
        if result.calls_billed >= result.calls_made or time.monotonic() > deadline:
            return
        await asyncio.sleep(0.5)


async def history(http: httpx.AsyncClient, chat: Chat) -> list[dict[str, Any]]:
    answer = await http.get(
        f"/v1/sessions/{chat.session_id}/messages", params={"limit": 200}, headers=chat.user.auth
    )
    if answer.status_code != 200:
        return []
    messages: list[dict[str, Any]] = answer.json()["messages"]
    return messages


HEADER = (
    "| scenario | clients | S acked | P stored | A replies | duplicates | lost (S-P) "
    "| unanswered | gaps | tokens twice | LLM calls/msg (mean, max) "
    "| calls billed / made (estimated) | tokens billed - served | reconnects |"
)


def table(rows: list[Counts]) -> str:
    lines = [HEADER, "| --- " + "| ---: " * 13 + "|"]
    for r in rows:
        lines.append(
            f"| {r.scenario} | {r.sessions} | {r.acknowledged} | {r.stored} | {r.replies} "
            f"| {r.duplicates} | {r.lost} | {r.unanswered} | {r.gaps} | {r.twice} "
            f"| {r.llm_calls_mean:.2f}, {r.llm_calls_max} "
            f"| {r.calls_billed} / {r.calls_made} ({r.estimated_calls}) "
            f"| {r.tokens_billed - r.tokens_served} | {r.reconnects} |"
        )
    return "\n".join(lines)
