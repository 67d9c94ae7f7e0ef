"""The idempotent writes of `persistence.records`, one statement per kind of row, built once
per dialect."""

from typing import Any, Literal

from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import col
from sqlmodel.ext.asyncio.session import AsyncSession

from persistence.models import Message, ModelCallRow, Usage

_REPLY_FIELDS = (
    *("attempt", "participant", "content", "status", "model", "seq", "created_at", "reasoning"),
    *("sources", "tool_calls"),
)
_USAGE_FIELDS = (
    *("user_id", "model", "attempt", "prompt_tokens", "completion_tokens", "total_tokens"),
    *("estimated", "reasoning_tokens", "cost_usd", "ttft_ms", "duration_ms", "created_at"),
)
_CALL_FIELDS = (
    *("user_id", "model", "prompt_tokens", "completion_tokens", "total_tokens", "estimated"),
    *("cost_usd", "outcome", "created_at"),
)
_STATEMENTS: dict[tuple[str, str], Any] = {}


def upsert(db: AsyncSession, kind: Literal["user message", "reply", "usage", "call"]) -> Any:
    """The idempotent write of `kind`, built once per dialect; its values are bound when it
    runs. (Built per call, the conflict clause's `excluded` columns alone were an eighth of
    persistence's samples in a profile of a 250-session burst.)"""
    dialect = db.get_bind().dialect.name
    statement = _STATEMENTS.get((dialect, kind))
    if statement is not None:
        return statement
    insert: Any = postgresql.insert if dialect == "postgresql" else sqlite.insert
    if kind == "user message":
        statement = insert(Message).on_conflict_do_nothing()
    elif kind == "call":
        plain = insert(ModelCallRow)
        statement = plain.on_conflict_do_update(  # an estimate never replaces the attempt's own
            index_elements=["session_id", "message_id", "attempt"],
            set_={name: plain.excluded[name] for name in _CALL_FIELDS},
            where=(plain.excluded.outcome != "lost") | (col(ModelCallRow.outcome) == "lost"),
        )
    else:
        table, fields = (Message, _REPLY_FIELDS) if kind == "reply" else (Usage, _USAGE_FIELDS)
        plain = insert(table)
        statement = plain.on_conflict_do_update(
            index_elements=["session_id", "message_id"],
            set_={name: plain.excluded[name] for name in fields},
            where=col(table.attempt) <= plain.excluded.attempt,
        )
    _STATEMENTS[(dialect, kind)] = statement
    return statement
