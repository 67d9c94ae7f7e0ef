"""A session's model and parameters, its system messages and its context's start, on SQLite
and PostgreSQL alike."""

from datetime import UTC, datetime, timedelta

from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from persistence import history, records, repository, usage
from shared import rpc
from shared.events import BusEvent, ReplyEnd, SessionTitled, SystemMessage, Usage, UserMessage

Sessions = async_sessionmaker[AsyncSession]
T0 = datetime(2026, 12, 4, 9, 0, tzinfo=UTC)


async def record(sessions: Sessions, *events: BusEvent) -> None:
    async with sessions() as db:
        await records.record(db, [(e, i + 1) for i, e in enumerate(events)])
        await db.commit()


async def new_session(sessions: Sessions, **fields: object) -> str:
    async with sessions() as db:
        request = rpc.SessionCreate.model_validate({"owner": "alice", **fields})
        created = await repository.create_session(db, request)
        await db.commit()
    return created.session_id


def user(sid: str, mid: str, at: datetime) -> UserMessage:
    return UserMessage(
        session_id=sid, message_id=mid, participant="alice", content=mid, created_at=at
    )


def system(sid: str, mid: str, command: str, at: datetime) -> SystemMessage:
    return SystemMessage(
        session_id=sid,
        message_id=mid,
        participant="alice",
        command=command,
        content=f"did {command}",
        created_at=at,
    )


async def test_a_sessions_model_and_parameters_are_kept_and_reset(sessions: Sessions) -> None:
    sid = await new_session(sessions, model="large", temperature=0.4, max_tokens=300)
    async with sessions() as db:
        info = await repository.get_session(db, sid)
    assert info is not None
    assert (info.model, info.temperature, info.max_tokens) == ("large", 0.4, 300)
    async with sessions() as db:
        update = rpc.SessionUpdate(session_id=sid, by="alice", temperature=1.2, reset=["model"])
        assert await repository.update_session(db, update)
        await db.commit()
    async with sessions() as db:
        info = await repository.get_session(db, sid)
        page = await repository.list_sessions(db, rpc.SessionList(user_id="alice"))
    assert info is not None
    assert (info.model, info.temperature, info.max_tokens) == (None, 1.2, 300)
    assert [s.model for s in page.sessions if s.session_id == sid] == [None]


async def test_system_messages_are_history_and_a_clear_starts_the_context(
    sessions: Sessions,
) -> None:
    sid = await new_session(sessions)
    await record(
        sessions,
        user(sid, "m1", T0),
        system(sid, "c1", "model", T0 + timedelta(seconds=1)),
        user(sid, "m2", T0 + timedelta(seconds=2)),
        system(sid, "c2", "clear", T0 + timedelta(seconds=3)),
        user(sid, "m3", T0 + timedelta(seconds=4)),
    )
    async with sessions() as db:
        everything = await history.page(db, rpc.HistoryRequest(session_id=sid, count=True))
        context = await history.page(db, rpc.HistoryRequest(session_id=sid, for_context=True))
    assert [(m.message_id, m.role) for m in everything.messages] == [
        ("m3", "user"),
        ("c2", "system"),
        ("m2", "user"),
        ("c1", "system"),
        ("m1", "user"),
    ]
    assert everything.messages[1].content == "did clear"
    assert everything.total == 5
    assert [m.message_id for m in context.messages] == ["m3"]  # nothing from before the clear
    assert context.total is None  # not asked


async def test_one_sessions_usage(sessions: Sessions) -> None:
    sid, other = await new_session(sessions), await new_session(sessions)

    def end(session_id: str, tokens: int) -> ReplyEnd:
        return ReplyEnd(
            session_id=session_id,
            message_id=f"m{tokens}",
            attempt=1,
            model="m",
            text="ok",
            finish_reason="stop",
            usage=Usage(prompt_tokens=tokens, completion_tokens=1, total_tokens=tokens + 1),
            duration_ms=5,
            requested_by="alice",
        )

    await record(sessions, end(sid, 10), end(sid, 20), end(other, 40))
    async with sessions() as db:
        report = await usage.report(db, rpc.UsageRequest(user_id=None, session_id=sid))
    assert (report.totals.replies, report.totals.total_tokens) == (2, 32)
    assert (report.billed.calls, report.billed.total_tokens) == (2, 32)


def titled(sid: str, title: str, replaces: str, attempt: int = 1) -> SessionTitled:
    return SessionTitled(
        session_id=sid,
        message_id="m1",
        attempt=attempt,
        title=title,
        replaces=replaces,
        model="m",
        usage=Usage(prompt_tokens=90, completion_tokens=4, total_tokens=94),
        cost_usd=0.00002,
        requested_by="alice",
    )


async def test_the_models_title_replaces_the_first_messages_unless_renamed(
    sessions: Sessions,
) -> None:
    first, renamed = await new_session(sessions), await new_session(sessions)
    for sid in (first, renamed):
        await record(sessions, user(sid, "Plan a trip to Lisbon", T0))
    async with sessions() as db:
        rename = rpc.SessionUpdate(session_id=renamed, by="alice", title="Mine")
        assert await repository.update_session(db, rename)
        await db.commit()
    await record(
        sessions,
        titled(first, "Lisbon trip plan", "Plan a trip to Lisbon"),
        titled(renamed, "Lisbon trip plan", "Plan a trip to Lisbon"),
    )
    await record(sessions, titled(renamed, "Lisbon trip plan", "Plan a trip to Lisbon"))  # again
    async with sessions() as db:
        got = [await repository.get_session(db, sid) for sid in (first, renamed)]
        billed = await usage.report(db, rpc.UsageRequest(user_id="alice", session_id=renamed))
    assert [info.title for info in got if info] == ["Lisbon trip plan", "Mine"]
    # the call is billed to the sender either way, once however often it is recorded
    assert (billed.billed.calls, billed.billed.total_tokens) == (1, 94)
    assert billed.totals.replies == 0  # a title is no reply
