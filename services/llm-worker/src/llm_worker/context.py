"""Conversation context: the recent turns of a session, and the prompt that fits the budget.

Turns live in a capped Redis list per session (`tw:ctx:<sid>`, JSON `{id, role, content}`,
oldest first, with a TTL). On a miss — a new worker, an expired key, Redis down — they come
from persistence's history, so a restart loses no context; except for a session the gateway
marked fresh at creation (`keys.fresh_session`, removed by the first write here), which has
none to fetch.
"""

import json
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from redis.asyncio import Redis
from redis.exceptions import RedisError

from llm_worker.completions import ChatMessage
from llm_worker.tokens import TokenCounter
from shared import keys, rpc
from shared.redis import Command, ListAppend, read_all

log = logging.getLogger(__name__)

HistoryFetcher = Callable[[rpc.HistoryRequest], Awaitable[rpc.HistoryPage]]


@dataclass(frozen=True)
class Turn:
    id: str
    role: Literal["user", "assistant"]
    content: str
    by: str = field(default="", compare=False)
    """Who said it (a user turn's participant); not part of what a turn is equal by."""


def fit_prompt(
    system_prompt: str,
    earlier: Sequence[Turn],
    message: Turn,
    counter: TokenCounter,
    max_tokens: int,
) -> list[ChatMessage]:
    """System prompt, then as many of the newest `earlier` turns as fit in `max_tokens`, then
    `message` (always kept: a prompt too long on its own is refused before the model call).
    Nothing is encoded when the prompt's bytes alone fit (`TokenCounter.at_most`)."""
    texts = [system_prompt, *(turn.content for turn in earlier), message.content]
    if counter.at_most([{"content": text} for text in texts]) <= max_tokens:
        return _prompt(system_prompt, earlier, message)
    budget = max_tokens - counter.count_messages(
        [{"content": system_prompt}, {"content": message.content}]
    )
    kept: list[Turn] = []
    for turn in reversed(earlier):
        cost = counter.count(turn.content) + 3
        if cost > budget:
            break
        budget -= cost
        kept.append(turn)
    return _prompt(system_prompt, kept[::-1], message)


def _prompt(system_prompt: str, turns: Sequence[Turn], message: Turn) -> list[ChatMessage]:
    """The chat messages; when more than one person speaks in them, each user message starts
    with its author's name (`alice: …`), so that the model knows who said what."""
    speakers = {t.by for t in (*turns, message) if t.role == "user"}
    named = len(speakers) > 1
    prompt: list[ChatMessage] = [{"role": "system", "content": system_prompt}]
    for turn in (*turns, message):
        if turn.role == "assistant":
            prompt.append({"role": "assistant", "content": turn.content})
        else:
            content = f"{turn.by}: {turn.content}" if named and turn.by else turn.content
            prompt.append({"role": "user", "content": content})
    return prompt


def before(turns: Sequence[Turn], message_id: str) -> list[Turn]:
    """The turns that came before `message_id` (all of them if it is not among them): a
    redelivered message must not see itself, or what was said after it, as context."""
    for i, turn in enumerate(turns):
        if turn.id == message_id:
            return list(turns[:i])
    return list(turns)


_REPLACE = """
local items = redis.call('LRANGE', KEYS[1], 0, -1)
for i, raw in ipairs(items) do
  local ok, turn = pcall(cjson.decode, raw)
  if ok and turn['id'] == ARGV[1] then
    redis.call('LSET', KEYS[1], i - 1, ARGV[2])
    return 1
  end
end
return 0
"""
"""Replace the turn with id ARGV[1] by ARGV[2], in place; 0 when the list does not hold it."""


class ContextStore:
    def __init__(
        self, redis: Redis, history: HistoryFetcher, *, max_turns: int, ttl_s: int
    ) -> None:
        self._redis = redis
        self._replace = redis.register_script(_REPLACE)
        self._history = history
        self._max_turns = max_turns
        self._ttl_s = ttl_s

    def reads(self, session_id: str) -> list[Command]:
        """What `turns` reads, for a caller that asks it in a round trip of its own."""
        if self._max_turns == 0:
            return []
        # Redis keeps no empty list: [] is a miss.
        return [
            ("LRANGE", keys.context(session_id), 0, -1),
            ("EXISTS", keys.fresh_session(session_id)),
        ]

    async def turns(self, session_id: str, read: Sequence[Any] | None = None) -> list[Turn]:
        """The session's recent turns, oldest first; from `read`, the answers to `reads`,
        when the caller asked them."""
        if self._max_turns == 0:
            return []
        if read is None:
            try:
                read = await read_all(self._redis, self.reads(session_id))
            except RedisError as exc:
                log.warning("context cache unavailable (%s); reading history", exc)
                return await self._from_history(session_id)
        cached, fresh = read
        if cached:
            return [_decode(raw) for raw in cached]
        if fresh:
            return []  # a new session, nothing said yet
        turns = await self._from_history(session_id)
        await self.append(session_id, *turns)
        return turns

    def appending(self, session_id: str, *turns: Turn) -> ListAppend | None:
        """`append` as a step of another script (`ReplyQueue.finish`); None when there is
        nothing to append."""
        if not turns or self._max_turns == 0:
            return None
        encoded = [_encode(t) for t in turns]
        return ListAppend(
            keys.context(session_id),
            encoded,
            self._max_turns,
            self._ttl_s,
            keys.fresh_session(session_id),
        )

    async def append(self, session_id: str, *turns: Turn) -> None:
        """Add turns at the end (best effort: the history is the record)."""
        step = self.appending(session_id, *turns)
        if step is None:
            return
        try:
            async with self._redis.pipeline(transaction=True) as pipe:
                step.queue_on(pipe)
                await pipe.execute()
        except RedisError as exc:
            log.warning("context cache not updated: %s", exc)

    async def replace(self, session_id: str, turn: Turn) -> None:
        """Put `turn` where the turn with its id is (a regenerated reply takes its first
        version's place); nothing when the cached turns do not hold it: they are read from
        history then, which has the newest version (best effort, like `append`)."""
        if self._max_turns == 0:
            return
        try:
            await self._replace(keys=[keys.context(session_id)], args=[turn.id, _encode(turn)])
        except RedisError as exc:
            log.warning("context cache not updated: %s", exc)

    async def _from_history(self, session_id: str) -> list[Turn]:
        try:
            page = await self._history(
                rpc.HistoryRequest(
                    session_id=session_id, limit=min(self._max_turns, 200), for_context=True
                )
            )
        except Exception as exc:  # context is an aid: a reply goes on without it
            log.warning("history unavailable for context: %s", exc)
            return []
        return [
            Turn(m.message_id, m.role, m.content, m.participant if m.role == "user" else "")
            for m in reversed(page.messages)
            if m.role != "system"
            and m.status in ("complete", "cancelled", "budget", "session_budget")
        ]


def _encode(turn: Turn) -> str:
    return json.dumps(turn.__dict__)


def _decode(raw: bytes | str) -> Turn:
    data = json.loads(raw)
    return Turn(str(data["id"]), data["role"], str(data["content"]), str(data.get("by", "")))
