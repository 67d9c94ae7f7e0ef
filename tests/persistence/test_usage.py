"""Usage aggregates on SQLite and PostgreSQL: per user, per day, per session, per model."""

from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from persistence import records, usage
from shared import rpc
from shared.events import ModelCall, ReplyEnd, Usage, UserMessage

Sessions = async_sessionmaker[AsyncSession]
DAY1 = datetime(2026, 11, 20, 23, 30, tzinfo=UTC)
DAY2 = datetime(2026, 11, 21, 0, 30, tzinfo=UTC)


def exchange(
    sid: str, mid: str, user: str, model: str, at: datetime, cost: float | None, tokens: int
) -> list[object]:
    return [
        UserMessage(session_id=sid, message_id=mid, participant=user, content="q", created_at=at),
        ReplyEnd(
            session_id=sid,
            message_id=mid,
            attempt=1,
            model=model,
            text="a",
            finish_reason="stop",
            usage=Usage(prompt_tokens=tokens, completion_tokens=1, total_tokens=tokens + 1),
            cost_usd=cost,
            duration_ms=1,
            created_at=at,
        ),
    ]


async def fill(sessions: Sessions) -> None:
    events = [
        *exchange("s1", "a", "alice", "gpt", DAY1, 0.5, 10),
        *exchange("s1", "b", "alice", "gpt", DAY2, 0.25, 20),
        *exchange("s2", "c", "alice", "llama", DAY2, None, 30),
        *exchange("s3", "d", "bob", "gpt", DAY2, 1.0, 40),
    ]
    async with sessions() as db:
        await records.record(db, [(e, i + 1) for i, e in enumerate(events)])  # type: ignore[misc]
        await db.commit()


async def test_a_users_usage_by_day_session_and_model(sessions: Sessions) -> None:
    await fill(sessions)
    async with sessions() as db:
        report = await usage.report(db, rpc.UsageRequest(user_id="alice"))
    assert report.totals == rpc.UsageTotals(
        replies=3, prompt_tokens=60, completion_tokens=3, total_tokens=63, cost_usd=0.75, unpriced=1
    )
    assert [(g.key, g.replies) for g in report.by_day] == [("2026-11-20", 1), ("2026-11-21", 2)]
    assert [(g.key, g.total_tokens) for g in report.by_session] == [("s1", 32), ("s2", 31)]
    assert [(g.key, g.cost_usd, g.unpriced) for g in report.by_model] == [
        ("gpt", 0.75, 0),
        ("llama", 0.0, 1),
    ]


async def test_everyone_and_a_time_range(sessions: Sessions) -> None:
    await fill(sessions)
    async with sessions() as db:
        everyone = await usage.report(db, rpc.UsageRequest(user_id=None))
        day2 = await usage.report(
            db, rpc.UsageRequest(user_id=None, since=DAY2.replace(hour=0, minute=0))
        )
        nobody = await usage.report(db, rpc.UsageRequest(user_id="carol"))
    assert everyone.totals.replies == 4
    assert day2.totals.replies == 3
    assert nobody.totals == rpc.UsageTotals()
    assert nobody.by_day == []


def call(attempt: int, outcome: str, completion: int, *, estimated: bool) -> ModelCall:
    return ModelCall(
        session_id="s9",
        message_id="m",
        attempt=attempt,
        model="gpt",
        usage=Usage(
            prompt_tokens=10,
            completion_tokens=completion,
            total_tokens=10 + completion,
            estimated=estimated,
        ),
        cost_usd=0.01,
        outcome=outcome,  # type: ignore[arg-type]
        requested_by="carol",
    )


async def test_every_model_call_is_billed_and_an_attempt_s_own_record_beats_an_estimate(
    sessions: Sessions,
) -> None:
    answered = exchange("s9", "m", "carol", "gpt", DAY2, 0.5, 10)[1]
    assert isinstance(answered, ReplyEnd)
    answered = answered.model_copy(update={"attempt": 3, "requested_by": "carol"})
    batches: list[list[object]] = [
        [call(1, "lost", 4, estimated=True), call(2, "lost", 6, estimated=True), answered],
        [call(2, "superseded", 9, estimated=True)],  # the frozen worker woke: its own record
        [call(2, "lost", 6, estimated=True), call(1, "lost", 4, estimated=True)],  # again
    ]
    for batch in batches:
        async with sessions() as db:
            await records.record(db, [(e, 100 + i) for i, e in enumerate(batch)])  # type: ignore[misc]
            await db.commit()
    async with sessions() as db:
        report = await usage.report(db, rpc.UsageRequest(user_id="carol"))
    assert report.totals.replies == 1
    assert (report.totals.prompt_tokens, report.totals.completion_tokens) == (10, 1)
    assert report.billed == rpc.BilledTotals(
        calls=3,
        estimated_calls=2,
        prompt_tokens=30,
        completion_tokens=4 + 9 + 1,
        total_tokens=30 + 14,
        cost_usd=0.52,
        unpriced=0,
    )
