"""Reading a session's history: pages of messages, newest first, with each reply's usage and
which of its versions is current; and one message with how many versions its reply has."""

from collections.abc import Sequence

from pydantic import TypeAdapter
from sqlalchemy import func
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from persistence.models import ChatSession, Message, Usage
from persistence.repository import aware
from shared import rpc, versions
from shared.events import Source, ToolCall
from shared.events import Usage as UsageEvent


async def page(db: AsyncSession, request: rpc.HistoryRequest) -> rpc.HistoryPage:
    """Newest first; `next` continues with older messages. For a reply's context
    (`for_context`): nothing before the session's last clear, and of a reply's versions only
    the current one."""
    query = select(Message).where(col(Message.session_id) == request.session_id)
    if request.for_context:
        session = await db.get(ChatSession, request.session_id)
        if session is not None and session.context_since is not None:
            query = query.where(col(Message.created_at) > session.context_since)
    if request.before is not None:
        if not request.before.isdigit():
            return rpc.HistoryPage(error=rpc.RpcError(code="bad_request", detail="bad cursor"))
        query = query.where(col(Message.id) < int(request.before))
    query = query.order_by(col(Message.id).desc()).limit(request.limit + 1)
    rows = list((await db.exec(query)).all())
    kept = rows[: request.limit]
    newest = await _newest_versions(db, request.session_id, kept)
    usage = await _usage_for(db, request.session_id, [_asked_by(r) for r in kept if r.in_reply_to])
    messages = [
        _history_message(r, usage.get(_asked_by(r)), newest.get(r.in_reply_to or "", 1))
        for r in kept
    ]
    if request.for_context:
        messages = [m for m in messages if m.current]
    total = None
    if request.count:
        counted = select(func.count()).where(col(Message.session_id) == request.session_id)
        total = int((await db.exec(counted)).one())
    return rpc.HistoryPage(
        messages=messages,
        next=str(kept[-1].id) if len(rows) > request.limit else None,
        total=total,
    )


async def message(db: AsyncSession, request: rpc.MessageGet) -> rpc.MessageInfo:
    """The user message `message_id`, and how many versions of its reply are recorded."""
    found = await db.exec(
        select(Message).where(
            col(Message.session_id) == request.session_id,
            col(Message.message_id) == request.message_id,
            col(Message.role) == "user",
        )
    )
    row = found.one_or_none()
    if row is None:
        detail = f"no message {request.message_id} in this session"
        return rpc.MessageInfo(error=rpc.RpcError(code="not_found", detail=detail))
    replies = await db.exec(
        select(func.count()).where(
            col(Message.session_id) == request.session_id,
            col(Message.in_reply_to) == request.message_id,
        )
    )
    return rpc.MessageInfo(message=_history_message(row, None, 1), versions=replies.one())


def _asked_by(row: Message) -> str:
    """The id of the message a reply row answers: its user message's, or its version's own."""
    asked = row.in_reply_to or ""
    return versions.version_id(asked, row.version) if row.version and row.version > 1 else asked


async def _newest_versions(
    db: AsyncSession, session_id: str, rows: Sequence[Message]
) -> dict[str, int]:
    """Per user message answered in `rows`, its reply's newest version."""
    asked = {r.in_reply_to for r in rows if r.in_reply_to}
    if not asked:
        return {}
    newest = await db.exec(
        select(Message.in_reply_to, func.max(func.coalesce(col(Message.version), 1)))
        .where(col(Message.session_id) == session_id, col(Message.in_reply_to).in_(asked))
        .group_by(col(Message.in_reply_to))
    )
    return {str(asked_id): int(version) for asked_id, version in newest.all()}


async def _usage_for(
    db: AsyncSession, session_id: str, message_ids: list[str]
) -> dict[str, UsageEvent]:
    if not message_ids:
        return {}
    rows = await db.exec(
        select(Usage).where(
            col(Usage.session_id) == session_id, col(Usage.message_id).in_(message_ids)
        )
    )
    return {
        u.message_id: UsageEvent(
            prompt_tokens=u.prompt_tokens,
            completion_tokens=u.completion_tokens,
            total_tokens=u.total_tokens,
            estimated=u.estimated,
            reasoning_tokens=u.reasoning_tokens,
        )
        for u in rows.all()
    }


def _history_message(row: Message, usage: UsageEvent | None, newest: int) -> rpc.HistoryMessage:
    version = row.version or 1
    return rpc.HistoryMessage(
        message_id=row.message_id,
        role=row.role if row.role in ("assistant", "system") else "user",  # type: ignore[arg-type]
        participant=row.participant,
        content=row.content,
        status=row.status,  # type: ignore[arg-type]
        in_reply_to=row.in_reply_to,
        attempt=row.attempt,
        model=row.model,
        usage=usage,
        seq=row.seq,
        created_at=aware(row.created_at),
        version=version,
        current=version >= newest,
        reasoning=row.reasoning or "",
        sources=_SOURCES.validate_json(row.sources) if row.sources else [],
        tool_calls=_TOOL_CALLS.validate_json(row.tool_calls) if row.tool_calls else [],
    )


_SOURCES: TypeAdapter[list[Source]] = TypeAdapter(list[Source])
_TOOL_CALLS: TypeAdapter[list[ToolCall]] = TypeAdapter(list[ToolCall])
