"""The database schema (SQLModel tables)."""

from datetime import UTC, datetime

from sqlalchemy import DateTime, Integer, Text, UniqueConstraint
from sqlmodel import Column, Field, SQLModel


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _timestamp(*, index: bool = False) -> Column[datetime]:
    return Column(DateTime(timezone=True), nullable=False, default=_utcnow, index=index)


class ChatSession(SQLModel, table=True):
    __tablename__ = "sessions"

    id: str = Field(primary_key=True, max_length=64)
    owner: str = Field(index=True, max_length=128)
    title: str = Field(default="", max_length=200)
    policy: str = Field(default="queue", max_length=16)
    """What a message does while a reply streams: `queue`, `interrupt`, `reject`, `parallel`."""
    system_prompt: str | None = None
    model: str | None = Field(default=None, max_length=48)
    """The catalogue's id of its model (None: the default model)."""
    temperature: float | None = None
    max_tokens: int | None = None
    created_at: datetime = Field(sa_column=_timestamp())
    deleted_at: datetime | None = Field(
        default=None, sa_column=Column(DateTime(timezone=True), nullable=True)
    )
    """Set when its owner deleted it: its rows are gone, and events still in flight for it are
    dropped rather than recorded."""
    context_since: datetime | None = Field(
        default=None, sa_column=Column(DateTime(timezone=True), nullable=True)
    )
    """When its context was last cleared (`/clear`): replies see no message before."""
    last_active_at: datetime = Field(sa_column=_timestamp(index=True))
    """The newest user message's time (or creation): retention prunes by it."""


class Member(SQLModel, table=True):
    __tablename__ = "members"

    session_id: str = Field(primary_key=True, foreign_key="sessions.id", max_length=64)
    user_id: str = Field(primary_key=True, index=True, max_length=128)
    role: str = Field(default="member", max_length=16)
    """`owner` or `member`."""


class Message(SQLModel, table=True):
    """A user message, or the latest attempt of an assistant reply (`in_reply_to` set)."""

    __tablename__ = "messages"
    __table_args__ = (UniqueConstraint("session_id", "message_id"),)

    id: int | None = Field(default=None, primary_key=True)
    session_id: str = Field(index=True, max_length=64)
    message_id: str = Field(max_length=160)
    role: str = Field(max_length=16)
    participant: str = Field(max_length=128)
    content: str
    status: str = Field(default="complete", max_length=16)
    in_reply_to: str | None = Field(default=None, max_length=128)
    attempt: int | None = None
    model: str | None = Field(default=None, max_length=200)
    seq: int | None = None
    """Stream sequence of the event this row was written from."""
    version: int | None = None
    """Of a reply: 2, 3… for a regenerated one (None: the first), whose `message_id` is
    `<user message id>~v<version>/reply`."""
    reasoning: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    """Of a reply: what the model reasoned before it (None: nothing streamed)."""
    sources: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    """Of a reply: its sources, a JSON list of `shared.events.Source` (None: none)."""
    tool_calls: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    """Of a reply: the tools it called, a JSON list of `shared.events.ToolCall` (None: none)."""
    created_at: datetime = Field(sa_column=_timestamp())


class Usage(SQLModel, table=True):
    """Token usage of one reply (its latest attempt)."""

    __tablename__ = "usage"
    __table_args__ = (UniqueConstraint("session_id", "message_id"),)

    id: int | None = Field(default=None, primary_key=True)
    session_id: str = Field(index=True, max_length=64)
    message_id: str = Field(max_length=128)
    """The user message the reply answers."""
    user_id: str | None = Field(default=None, index=True, max_length=128)
    model: str = Field(index=True, max_length=200)
    attempt: int
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    estimated: bool = False
    reasoning_tokens: int = Field(
        default=0, sa_column=Column(Integer, nullable=False, server_default="0")
    )
    cost_usd: float | None = None
    ttft_ms: float | None = None
    duration_ms: float
    created_at: datetime = Field(sa_column=_timestamp(index=True))


class ModelCallRow(SQLModel, table=True):
    """One model call: every attempt at a reply that reached the model, whatever became of
    it (`outcome`: `answered`, `superseded`, `failed`, or `lost` with its worker and estimated
    by a later attempt). What the provider bills is their sum."""

    __tablename__ = "model_calls"
    __table_args__ = (UniqueConstraint("session_id", "message_id", "attempt"),)

    id: int | None = Field(default=None, primary_key=True)
    session_id: str = Field(index=True, max_length=64)
    message_id: str = Field(max_length=128)
    attempt: int
    user_id: str | None = Field(default=None, index=True, max_length=128)
    model: str = Field(max_length=200)
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    estimated: bool = False
    cost_usd: float | None = None
    outcome: str = Field(max_length=16)
    created_at: datetime = Field(sa_column=_timestamp(index=True))
