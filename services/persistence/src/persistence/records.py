"""How a batch of stream events becomes rows: user messages, replies (the end or error of
their latest attempt), usage, model calls (one per attempt that reached the model: a reply
end or a `ModelCall`), and each session's last activity.

Every write is keyed by (session, message), so a redelivered event changes nothing and of a
reply's attempts only the latest is kept. A batch is written with one statement per kind of
row, executed once for all its rows (an executemany), not one statement per event: events of
one key are first reduced to the one the sequential writes would have left — the first user
message, the reply and usage of the highest attempt (the later event on a tie), the latest
activity. A profile had a reply's four statements at over a tenth of persistence's CPU.
"""

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from persistence import session_writes as writes
from persistence.models import ChatSession, Message
from persistence.upserts import upsert
from shared import versions
from shared.events import (
    BusEvent,
    ModelCall,
    ReplyEnd,
    ReplyError,
    SessionTitled,
    SystemMessage,
    UserMessage,
)
from shared.titles import TITLE_CALL_ID, title_from

Key = tuple[str, str]
"""(session id, message id)"""


def reply_id(user_message_id: str) -> str:
    """The history id of the assistant reply to `user_message_id`."""
    return f"{user_message_id}/reply"


@dataclass
class Rows:
    """A batch reduced to one write per key."""

    users: dict[Key, dict[str, Any]] = field(default_factory=dict)
    replies: dict[Key, dict[str, Any]] = field(default_factory=dict)
    ends: dict[Key, ReplyEnd] = field(default_factory=dict)
    """The reply end whose usage is recorded, per user message."""
    calls: dict[tuple[str, str, int], ReplyEnd | ModelCall] = field(default_factory=dict)
    """Per attempt, the record of its model call (an attempt's own beats an estimate)."""
    active: dict[str, datetime] = field(default_factory=dict)
    titles: dict[str, str] = field(default_factory=dict)
    """Per session, a title from its first user message in the batch (for untitled ones)."""
    named: list[SessionTitled] = field(default_factory=list)
    """Titles from the model, in order."""
    cleared: dict[str, datetime] = field(default_factory=dict)
    """Per session, when its context was last cleared in the batch."""

    def add(self, evt: BusEvent, seq: int) -> None:
        match evt:
            case UserMessage():
                if versions.split(evt.message_id)[1] == 1:  # a version's asks no new row
                    self.users.setdefault((evt.session_id, evt.message_id), _user(evt, seq))
                    self.titles.setdefault(evt.session_id, title_from(evt.content))
                latest = self.active.get(evt.session_id)
                if latest is None or latest < evt.created_at:
                    self.active[evt.session_id] = evt.created_at
            case ReplyEnd() | ReplyError():
                key = (evt.session_id, evt.message_id)
                if _newer(evt.attempt, self.replies.get(key)):
                    self.replies[key] = _reply(evt, seq)
                if isinstance(evt, ReplyEnd):
                    if _newer(evt.attempt, self.ends.get(key)):
                        self.ends[key] = evt
                    self._call(evt)
            case ModelCall():
                self._call(evt)
            case SessionTitled():
                self.named.append(evt)
                self._call(title_call(evt))
            case SystemMessage():
                self.users.setdefault((evt.session_id, evt.message_id), _system(evt, seq))
                if evt.command == "clear":
                    self.cleared[evt.session_id] = evt.created_at
            case _:
                pass  # start and token events are not recorded: the end carries the reply.

    async def drop_deleted(self, db: AsyncSession) -> None:
        """Forget what a deleted session's events would write, but their usage and model
        calls: a reply still in flight when its session was deleted is billed all the same."""
        sids = {sid for sid, _ in self.users} | {sid for sid, _ in self.replies} | set(self.active)
        if not sids:
            return
        deleted = await db.exec(
            select(col(ChatSession.id)).where(
                col(ChatSession.id).in_(sids), col(ChatSession.deleted_at).is_not(None)
            )
        )
        for sid in deleted.all():
            for keyed in (self.users, self.replies):
                for key in [k for k in keyed if k[0] == sid]:
                    del keyed[key]
            for by_session in (self.active, self.titles, self.cleared):
                by_session.pop(sid, None)

    def _call(self, evt: ReplyEnd | ModelCall) -> None:
        key = (evt.session_id, evt.message_id, evt.attempt)
        kept = self.calls.get(key)
        if kept is None or not _estimate(evt) or _estimate(kept):
            self.calls[key] = evt


def title_call(evt: SessionTitled) -> ModelCall:
    """The title's model call, for billing: one per session and attempt (`TITLE_CALL_ID`)."""
    return ModelCall(
        session_id=evt.session_id,
        message_id=TITLE_CALL_ID,
        attempt=evt.attempt,
        model=evt.model,
        usage=evt.usage,
        cost_usd=evt.cost_usd,
        outcome="title",
        requested_by=evt.requested_by,
        created_at=evt.created_at,
    )


def _estimate(evt: ReplyEnd | ModelCall) -> bool:
    """A record of a lost attempt made by another: any record of the attempt's own wins."""
    return isinstance(evt, ModelCall) and evt.outcome == "lost"


def _newer(attempt: int, kept: dict[str, Any] | ReplyEnd | None) -> bool:
    """Whether an event of `attempt`, later in the batch, replaces what is `kept`."""
    if kept is None:
        return True
    return attempt >= (kept["attempt"] if isinstance(kept, dict) else kept.attempt)


async def record(db: AsyncSession, events: Sequence[tuple[BusEvent, int]]) -> None:
    """Write each (event, stream sequence); safe to repeat."""
    rows = Rows()
    for evt, seq in events:
        rows.add(evt, seq)
    await rows.drop_deleted(db)
    connection = await db.connection()
    if rows.users:
        await connection.execute(upsert(db, "user message"), list(rows.users.values()))
    if rows.active:
        await connection.execute(
            writes.TOUCH, [{"sid": sid, "at": at} for sid, at in rows.active.items()]
        )
    if rows.titles:
        titles = [{"sid": sid, "title": title} for sid, title in rows.titles.items() if title]
        if titles:
            await connection.execute(writes.TITLE, titles)
    if rows.named:
        named = [
            {"sid": t.session_id, "title": t.title, "replaces": t.replaces} for t in rows.named
        ]
        await connection.execute(writes.MODEL_TITLE, named)
    if rows.cleared:
        cleared = [{"sid": sid, "at": at} for sid, at in rows.cleared.items()]
        await connection.execute(writes.CLEARED, cleared)
    if rows.replies:
        await connection.execute(upsert(db, "reply"), list(rows.replies.values()))
    if rows.ends:
        usage = [await _usage(db, end) for end in rows.ends.values()]
        await connection.execute(upsert(db, "usage"), usage)
    if rows.calls:
        calls = [await _model_call(db, evt) for evt in rows.calls.values()]
        await connection.execute(upsert(db, "call"), calls)


def _user(evt: UserMessage | SystemMessage, seq: int) -> dict[str, Any]:
    return {
        "session_id": evt.session_id,
        "message_id": evt.message_id,
        "role": "user",
        "participant": evt.participant,
        "content": evt.content,
        "status": "complete",
        "in_reply_to": None,
        "attempt": None,
        "model": None,
        "seq": seq,
        "created_at": evt.created_at,
        "version": None,
        "reasoning": None,
        "sources": None,
        "tool_calls": None,
    }


def _system(evt: SystemMessage, seq: int) -> dict[str, Any]:
    return {**_user(evt, seq), "role": "system"}


def _reply(evt: ReplyEnd | ReplyError, seq: int) -> dict[str, Any]:
    status: str
    reasoning = sources = tools = None
    if isinstance(evt, ReplyEnd):
        status = "complete" if evt.finish_reason in ("stop", "length") else evt.finish_reason
        participant, content, model = evt.participant, evt.text, evt.model
        reasoning = evt.reasoning or None
        if evt.sources:
            sources = json.dumps([s.model_dump() for s in evt.sources])
        if evt.tool_calls:
            tools = json.dumps([t.model_dump() for t in evt.tool_calls])
    else:
        status, participant, model = "error", "assistant", None
        content = f"[{evt.code}] {evt.message}"
    asked, version = versions.split(evt.message_id)
    return {
        "session_id": evt.session_id,
        "message_id": reply_id(evt.message_id),
        "role": "assistant",
        "participant": participant,
        "content": content,
        "status": status,
        "in_reply_to": asked,
        "attempt": evt.attempt,
        "model": model,
        "seq": seq,
        "created_at": evt.created_at,
        "version": version if version > 1 else None,
        "reasoning": reasoning,
        "sources": sources,
        "tool_calls": tools,
    }


async def _usage(db: AsyncSession, evt: ReplyEnd) -> dict[str, Any]:
    return {
        "session_id": evt.session_id,
        "message_id": evt.message_id,
        "user_id": evt.requested_by or await _asker(db, evt),
        "model": evt.model,
        "attempt": evt.attempt,
        "prompt_tokens": evt.usage.prompt_tokens,
        "completion_tokens": evt.usage.completion_tokens,
        "total_tokens": evt.usage.total_tokens,
        "estimated": evt.usage.estimated,
        "reasoning_tokens": evt.usage.reasoning_tokens,
        "cost_usd": evt.cost_usd,
        "ttft_ms": evt.ttft_ms,
        "duration_ms": evt.duration_ms,
        "created_at": evt.created_at,
    }


async def _model_call(db: AsyncSession, evt: ReplyEnd | ModelCall) -> dict[str, Any]:
    return {
        "session_id": evt.session_id,
        "message_id": evt.message_id,
        "attempt": evt.attempt,
        "user_id": evt.requested_by or await _asker(db, evt),
        "model": evt.model,
        "prompt_tokens": evt.usage.prompt_tokens,
        "completion_tokens": evt.usage.completion_tokens,
        "total_tokens": evt.usage.total_tokens,
        "estimated": evt.usage.estimated,
        "cost_usd": evt.cost_usd,
        "outcome": "answered" if isinstance(evt, ReplyEnd) else evt.outcome,
        "created_at": evt.created_at,
    }


async def _asker(db: AsyncSession, evt: ReplyEnd | ModelCall) -> str | None:
    """Who sent the message a reply answers, for ends stored before they said so."""
    asker = await db.exec(
        select(Message.participant).where(
            col(Message.session_id) == evt.session_id, col(Message.message_id) == evt.message_id
        )
    )
    return asker.one_or_none()
