"""Usage aggregates: a user's (or everyone's) tokens and cost by day, session and model, of
the replies (their answering attempts), and of every model call made (what is billed)."""

from typing import Any

from sqlalchemy import String, case, func, select
from sqlalchemy.sql.elements import ColumnElement
from sqlmodel import col
from sqlmodel.ext.asyncio.session import AsyncSession

from persistence.models import ModelCallRow, Usage
from shared import rpc


async def report(db: AsyncSession, request: rpc.UsageRequest) -> rpc.UsageReport:
    filters = _filters(Usage, request)
    by_day = await _grouped(db, _day(db.get_bind().dialect.name), filters)
    return rpc.UsageReport(
        totals=await _totals(db, filters),
        billed=await _billed(db, _filters(ModelCallRow, request)),
        by_day=by_day,
        by_session=await _grouped(db, col(Usage.session_id), filters),
        by_model=await _grouped(db, col(Usage.model), filters),
    )


def _filters(table: Any, request: rpc.UsageRequest) -> list[ColumnElement[bool]]:
    filters: list[ColumnElement[bool]] = []
    if request.user_id is not None:
        filters.append(col(table.user_id) == request.user_id)
    if request.session_id is not None:
        filters.append(col(table.session_id) == request.session_id)
    if request.since is not None:
        filters.append(col(table.created_at) >= request.since)
    if request.until is not None:
        filters.append(col(table.created_at) < request.until)
    return filters


async def _billed(db: AsyncSession, filters: list[ColumnElement[bool]]) -> rpc.BilledTotals:
    calls = ModelCallRow
    statement: Any = select(
        func.count(),
        func.coalesce(func.sum(case((col(calls.estimated), 1), else_=0)), 0),
        func.coalesce(func.sum(col(calls.prompt_tokens)), 0),
        func.coalesce(func.sum(col(calls.completion_tokens)), 0),
        func.coalesce(func.sum(col(calls.total_tokens)), 0),
        func.coalesce(func.sum(col(calls.cost_usd)), 0.0),
        func.count() - func.count(col(calls.cost_usd)),
    ).where(*filters)
    count, estimated, prompt, completion, total, cost, unpriced = (await db.exec(statement)).one()
    return rpc.BilledTotals(
        calls=int(count),
        estimated_calls=int(estimated),
        prompt_tokens=int(prompt),
        completion_tokens=int(completion),
        total_tokens=int(total),
        cost_usd=round(float(cost), 8),
        unpriced=int(unpriced),
    )


def _day(dialect: str) -> Any:
    """The UTC day of a reply as `YYYY-MM-DD` (PostgreSQL sessions run in UTC, see `db`)."""
    if dialect == "postgresql":
        return func.to_char(col(Usage.created_at), "YYYY-MM-DD")
    return func.strftime("%Y-%m-%d", col(Usage.created_at), type_=String)


def _sums() -> list[Any]:
    return [
        func.count(),
        func.coalesce(func.sum(col(Usage.prompt_tokens)), 0),
        func.coalesce(func.sum(col(Usage.completion_tokens)), 0),
        func.coalesce(func.sum(col(Usage.total_tokens)), 0),
        func.coalesce(func.sum(col(Usage.cost_usd)), 0.0),
        func.count() - func.count(col(Usage.cost_usd)),
    ]


async def _totals(db: AsyncSession, filters: list[ColumnElement[bool]]) -> rpc.UsageTotals:
    statement: Any = select(*_sums()).where(*filters)
    row = (await db.exec(statement)).one()
    return rpc.UsageTotals(**_fields(row))


async def _grouped(
    db: AsyncSession, key: Any, filters: list[ColumnElement[bool]]
) -> list[rpc.UsageGroup]:
    statement: Any = select(key, *_sums()).where(*filters).group_by(key).order_by(key)
    rows = await db.exec(statement)
    return [rpc.UsageGroup(key=str(row[0]), **_fields(row[1:])) for row in rows.all()]


def _fields(row: Any) -> dict[str, Any]:
    replies, prompt, completion, total, cost, unpriced = row
    return {
        "replies": int(replies),
        "prompt_tokens": int(prompt),
        "completion_tokens": int(completion),
        "total_tokens": int(total),
        "cost_usd": round(float(cost), 8),
        "unpriced": int(unpriced),
    }
