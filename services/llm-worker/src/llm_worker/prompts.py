"""Each session's own system prompt, read by the worker instead of carried in every message.

A session's prompt is set when it is created and never changes, so a worker keeps the ones it
used (`MAX_REMEMBERED`). Otherwise it reads `keys.session_prompt` (written by the gateway that
created the session, in the round trip of its fresh mark), and on a miss asks persistence and
writes the answer back.
"""

import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError

from shared import keys
from shared.redis import Command, text

log = logging.getLogger(__name__)
MAX_REMEMBERED = 10_000
"""Sessions whose prompt a worker keeps in memory (at most 20 kB each, most far shorter)."""

SessionPromptFetcher = Callable[[str], Awaitable[str | None]]
"""Asks persistence for a session's system prompt (None: it has none); raises when it cannot."""


class SystemPrompts:
    def __init__(self, redis: Redis, fetch: SessionPromptFetcher, *, default: str) -> None:
        self._redis = redis
        self._fetch = fetch
        self._default = default
        self._known: OrderedDict[str, str] = OrderedDict()

    def reads(self, session_id: str) -> list[Command]:
        """What `of` reads, for a caller that asks it in a round trip of its own: nothing
        when the prompt is known here."""
        return [] if session_id in self._known else [("GET", keys.session_prompt(session_id))]

    async def of(self, session_id: str, read: Sequence[Any] | None = None) -> str:
        """The session's system prompt, else the worker's `default`; from `read`, the
        answers to `reads`, when the caller asked them. When neither Redis nor persistence
        can say, the default, for this reply only (logged): like the history, the prompt is
        read on a best-effort basis, and the reply goes on."""
        prompt = self._known.get(session_id)
        if prompt is None:
            try:
                prompt = await self._look_up(session_id, read)
            except Exception as exc:
                log.warning("session prompt unavailable (%s); the default is used", exc)
                return self._default
            self._known[session_id] = prompt
            if len(self._known) > MAX_REMEMBERED:
                self._known.popitem(last=False)
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
