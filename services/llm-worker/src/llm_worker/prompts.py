"""Each session's own system prompt, read by the worker instead of carried in every message.

A reply reads `keys.session_prompt` in its `begin` round trip (the gateway writes it when it
creates the session, and again when the owner changes the prompt), and on a miss asks
persistence and writes the answer back. It is not remembered between replies: an owner may
change it (`PATCH /v1/sessions/{sid}`), and the next reply must see the change.
"""

import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError

from shared import keys
from shared.redis import Command, text

log = logging.getLogger(__name__)
SessionPromptFetcher = Callable[[str], Awaitable[str | None]]
"""Asks persistence for a session's system prompt (None: it has none); raises when it cannot."""


class SystemPrompts:
    def __init__(self, redis: Redis, fetch: SessionPromptFetcher, *, default: str) -> None:
        self._redis = redis
        self._fetch = fetch
        self._default = default

    def reads(self, session_id: str) -> list[Command]:
        """What `of` reads, for a caller that asks it in a round trip of its own."""
        return [("GET", keys.session_prompt(session_id))]

    async def of(self, session_id: str, read: Sequence[Any] | None = None) -> str:
        """The session's system prompt, else the worker's `default`; from `read`, the
        answers to `reads`, when the caller asked them. When neither Redis nor persistence
        can say, the default, for this reply only (logged): like the history, the prompt is
        read on a best-effort basis, and the reply goes on."""
        try:
            prompt = await self._look_up(session_id, read)
        except Exception as exc:
            log.warning("session prompt unavailable (%s); the default is used", exc)
            return self._default
        return prompt or self._default

    async def _look_up(self, session_id: str, read: Sequence[Any] | None) -> str:
        key = keys.session_prompt(session_id)
        try:
            stored = read[0] if read else await self._redis.get(key)
        except RedisError as exc:
            log.warning("session prompt cache unavailable (%s); asking persistence", exc)
            return await self._fetch(session_id) or ""
        if stored is not None:
            return text(stored)
        prompt = await self._fetch(session_id) or ""
        try:
            await self._redis.set(key, prompt, ex=keys.SESSION_PROMPT_TTL_S)
        except RedisError as exc:
            log.warning("session prompt not cached: %s", exc)
        return prompt
