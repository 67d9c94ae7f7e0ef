"""Chat traffic for the fault suite: clients in sessions of their own, talking side by side
while a fault is injected."""

import asyncio
from collections.abc import Awaitable, Callable

import httpx

from faults.ledger import Chat
from support.client import dev_user, new_session
from support.system import System

REPLY = "[fake tokens=40 delay_ms=25]"
"""About a second of streaming per reply: faults land mid-stream."""


async def open_chats(system: System, http: httpx.AsyncClient, n: int) -> list[Chat]:
    async def one() -> Chat:
        user = await dev_user(http)
        return Chat(system.ws_url, await new_session(http, user), user)

    return list(await asyncio.gather(*(one() for _ in range(n))))


async def converse(chats: list[Chat], messages: int, directive: str = REPLY) -> None:
    """Every chat sends `messages` messages one after another; chats run side by side."""

    async def one(chat: Chat) -> None:
        for i in range(messages):
            await chat.say(f"m{i}", directive)
        await chat.leave()

    await asyncio.gather(*(one(chat) for chat in chats))


async def outage(stop: Callable[[], object], start: Callable[[], object], seconds: float) -> None:
    """A second into the traffic, `stop` a part; `start` it again `seconds` later."""
    await asyncio.sleep(1.0)
    stop()
    await asyncio.sleep(seconds)
    start()


async def with_faults(traffic: Awaitable[None], faults: Callable[[], Awaitable[None]]) -> None:
    """Run `faults` while `traffic` flows; both must finish."""
    chatting = asyncio.ensure_future(traffic)
    try:
        await faults()
        await chatting
    finally:
        if not chatting.done():
            chatting.cancel()
