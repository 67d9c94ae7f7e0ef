"""Reads and idempotent writes of sessions, messages and usage.

Writes take an open `AsyncSession`; the caller commits, so a batch of events is one transaction.
Every write is keyed by (session, message): a redelivered event changes nothing, and of a
reply's attempts only the latest is kept. Events are written by `persistence.records`.
"""

import secrets
from datetime import UTC, datetime

from sqlalchemy import delete, func
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from persistence.models import ChatSession, Member, Message
from shared import rpc


def new_session_id() -> str:
    return secrets.token_urlsafe(12)


async def create_session(db: AsyncSession, request: rpc.SessionCreate) -> rpc.SessionInfo:
    now = _now()
    row = ChatSession(
        id=new_session_id(),
        owner=request.owner,
        title=request.title,
        policy=request.policy,
        system_prompt=request.system_prompt,
        model=request.model,
        temperature=request.temperature,
        max_tokens=request.max_tokens,
        created_at=now,
        last_active_at=now,
    )
    db.add(row)
    db.add(Member(session_id=row.id, user_id=request.owner, role="owner"))
    await db.flush()
    return _info(row, [request.owner])


async def get_session(db: AsyncSession, session_id: str) -> rpc.SessionInfo | None:
    """The session; None when there is none, or it was deleted."""
    row = await db.get(ChatSession, session_id)
    if row is None or row.deleted_at is not None:
        return None
    members = list(
        (
            await db.exec(
                select(Member.user_id, Member.role).where(col(Member.session_id) == session_id)
            )
        ).all()
    )
    viewers = sorted(user for user, role in members if role == "viewer")
    return _info(row, sorted(user for user, _ in members), viewers)


async def list_sessions(db: AsyncSession, request: rpc.SessionList) -> rpc.SessionPage:
    """The user's sessions, latest activity first (ties: newest id first); `next` is the
    last one's (activity, id), from which the following page continues."""
    mine = select(ChatSession, Member.role).join(
        Member, col(Member.session_id) == col(ChatSession.id)
    )
    query = mine.where(col(Member.user_id) == request.user_id)
    if request.before is not None:
        at, _, sid = request.before.partition("|")
        try:
            when = datetime.fromisoformat(at)
        except ValueError:
            return rpc.SessionPage(error=rpc.RpcError(code="bad_request", detail="bad cursor"))
        active = col(ChatSession.last_active_at)
        query = query.where((active < when) | ((active == when) & (col(ChatSession.id) < sid)))
    query = query.order_by(
        col(ChatSession.last_active_at).desc(), col(ChatSession.id).desc()
    ).limit(request.limit + 1)
    rows = list((await db.exec(query)).all())
    page = rows[: request.limit]
    counts = await _member_counts(db, [row.id for row, _ in page])
    last = page[-1][0] if page and len(rows) > request.limit else None
    return rpc.SessionPage(
        sessions=[_summary(row, role, counts.get(row.id, 0)) for row, role in page],
        next=f"{aware(last.last_active_at).isoformat()}|{last.id}" if last else None,
    )


async def _member_counts(db: AsyncSession, session_ids: list[str]) -> dict[str, int]:
    if not session_ids:
        return {}
    counted = await db.exec(
        select(Member.session_id, func.count())
        .where(col(Member.session_id).in_(session_ids))
        .group_by(col(Member.session_id))
    )
    return {sid: int(n) for sid, n in counted.all()}


def _summary(row: ChatSession, role: str, members: int) -> rpc.SessionSummary:
    return rpc.SessionSummary(
        session_id=row.id,
        title=row.title,
        owner=row.owner,
        role=role,
        members=members,
        model=row.model,
        created_at=aware(row.created_at),
        last_active_at=aware(row.last_active_at),
    )


async def add_member(
    db: AsyncSession, session_id: str, user_id: str, role: rpc.MemberRole = "member"
) -> None:
    """Make `user_id` a member with `role` (idempotent; again with another role changes it).
    The owner's own row is never changed here."""
    member = await db.get(Member, (session_id, user_id))
    if member is None:
        db.add(Member(session_id=session_id, user_id=user_id, role=role))
    elif member.role != "owner":
        member.role = role
        db.add(member)
    await db.flush()


async def update_session(db: AsyncSession, request: rpc.SessionUpdate) -> bool:
    """Apply the fields given; whether the session exists."""
    row = await db.get(ChatSession, request.session_id)
    if row is None:
        return False
    if request.title is not None:
        row.title = request.title
    if request.policy is not None:
        row.policy = request.policy
    if request.system_prompt is not None:
        row.system_prompt = request.system_prompt or None
    for name in ("model", "temperature", "max_tokens"):
        if name in request.reset:
            setattr(row, name, None)
        elif (value := getattr(request, name)) is not None:
            setattr(row, name, value)
    db.add(row)
    return True


async def delete_session(db: AsyncSession, session_id: str) -> None:
    """Delete its messages and members; the session's row stays as a tombstone (no title, no
    prompt), so that events still in flight are not recorded (`records`), until retention
    prunes it. Usage and model calls stay. The caller commits."""
    await db.exec(delete(Message).where(col(Message.session_id) == session_id))
    await db.exec(delete(Member).where(col(Member.session_id) == session_id))
    row = await db.get(ChatSession, session_id)
    if row is not None:
        row.deleted_at, row.title, row.system_prompt = _now(), "", None
        db.add(row)


async def remove_member(db: AsyncSession, session_id: str, user_id: str) -> bool:
    """Whether `user_id` was a member (and is no longer)."""
    member = await db.get(Member, (session_id, user_id))
    if member is None:
        return False
    await db.delete(member)
    return True


def _info(
    row: ChatSession, members: list[str], viewers: list[str] | None = None
) -> rpc.SessionInfo:
    return rpc.SessionInfo(
        viewers=viewers or [],
        session_id=row.id,
        owner=row.owner,
        title=row.title,
        members=members,
        created_at=aware(row.created_at),
        policy=row.policy,  # type: ignore[arg-type]
        system_prompt=row.system_prompt,
        model=row.model,
        temperature=row.temperature,
        max_tokens=row.max_tokens,
    )


def _now() -> datetime:
    return datetime.now(UTC)


def aware(value: datetime) -> datetime:
    """SQLite hands back naive datetimes; everything stored is UTC."""
    return value if value.tzinfo else value.replace(tzinfo=UTC)
