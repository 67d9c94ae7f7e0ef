"""Idempotent writes and paged reads, on SQLite and PostgreSQL alike."""

from datetime import UTC, datetime, timedelta

from sqlalchemy import func
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from persistence import history, records, repository
from persistence.models import ChatSession, Message
from persistence.models import Usage as UsageRow
from shared import rpc
from shared.events import ReplyEnd, ReplyError, Usage, UserMessage

Sessions = async_sessionmaker[AsyncSession]


def user(mid: str, sid: str = "s1", content: str = "hi") -> UserMessage:
    return UserMessage(session_id=sid, message_id=mid, participant="alice", content=content)


def end(mid: str, attempt: int, text: str, sid: str = "s1") -> ReplyEnd:
    return ReplyEnd(
        session_id=sid,
        message_id=mid,
        attempt=attempt,
        model="m",
        text=text,
        finish_reason="stop",
        usage=Usage(prompt_tokens=5, completion_tokens=attempt, total_tokens=5 + attempt),
        ttft_ms=10,
        duration_ms=20,
    )


async def record(sessions: Sessions, *events: object) -> None:
    async with sessions() as db:
        await records.record(db, [(e, i + 1) for i, e in enumerate(events)])  # type: ignore[misc]
        await db.commit()


async def count(sessions: Sessions, table: type[Message] | type[UsageRow]) -> int:
    async with sessions() as db:
        return (await db.exec(select(func.count()).select_from(table))).one()


async def test_sessions_are_created_with_their_owner_as_member(sessions: Sessions) -> None:
    async with sessions() as db:
        created = await repository.create_session(
            db, rpc.SessionCreate(owner="alice", title="chat", policy="reject")
        )
        await db.commit()
    async with sessions() as db:
        info = await repository.get_session(db, created.session_id)
        assert await repository.get_session(db, "missing") is None
    assert info is not None
    assert (info.owner, info.title, info.members) == ("alice", "chat", ["alice"])
    assert info.policy == "reject"


async def test_redelivered_events_change_nothing(sessions: Sessions) -> None:
    await record(sessions, user("m1"), end("m1", 1, "hello"))
    await record(sessions, user("m1"), end("m1", 1, "hello"))
    assert await count(sessions, Message) == 2
    assert await count(sessions, UsageRow) == 1


async def test_only_the_latest_attempt_is_the_reply(sessions: Sessions) -> None:
    await record(sessions, user("m1"), end("m1", 2, "second"))
    await record(sessions, end("m1", 1, "first, redelivered late"))
    async with sessions() as db:
        page = await history.page(db, rpc.HistoryRequest(session_id="s1"))
    reply = page.messages[0]
    assert (reply.content, reply.attempt, reply.in_reply_to) == ("second", 2, "m1")
    assert reply.usage is not None
    assert reply.usage.completion_tokens == 2


async def test_an_error_then_a_successful_retry_keeps_the_reply(sessions: Sessions) -> None:
    error = ReplyError(
        session_id="s1",
        message_id="m1",
        attempt=1,
        code="upstream_error",
        message="boom",
        retryable=True,
    )
    await record(sessions, user("m1"), error, end("m1", 2, "fine"))
    async with sessions() as db:
        page = await history.page(db, rpc.HistoryRequest(session_id="s1"))
    assert [(m.role, m.status, m.content) for m in page.messages] == [
        ("assistant", "complete", "fine"),
        ("user", "complete", "hi"),
    ]


async def test_one_batch_keeps_what_writing_its_events_one_by_one_keeps(
    sessions: Sessions,
) -> None:
    error = ReplyError(
        session_id="s1", message_id="m1", attempt=1, code="x", message="boom", retryable=True
    )
    await record(
        sessions,
        user("m1"),
        user("m1", content="redelivered"),
        error,
        end("m1", 2, "second"),
        end("m1", 1, "first, redelivered late"),
        end("m1", 2, "second, stored again"),
        user("m2", sid="s2"),
    )
    async with sessions() as db:
        page = await history.page(db, rpc.HistoryRequest(session_id="s1"))
    assert [(m.role, m.content, m.attempt) for m in page.messages] == [
        ("assistant", "second, stored again", 2),
        ("user", "hi", None),
    ]
    assert page.messages[0].usage is not None
    assert page.messages[0].usage.completion_tokens == 2
    assert await count(sessions, Message) == 3
    assert await count(sessions, UsageRow) == 1


async def test_a_batch_moves_each_session_to_its_latest_message(sessions: Sessions) -> None:
    async with sessions() as db:
        created = [
            await repository.create_session(db, rpc.SessionCreate(owner="alice")) for _ in range(2)
        ]
        await db.commit()
    first, second = (c.session_id for c in created)
    later = datetime.now(UTC) + timedelta(hours=1)
    await record(
        sessions,
        user("m1", sid=first).model_copy(update={"created_at": later + timedelta(minutes=5)}),
        user("m2", sid=first).model_copy(update={"created_at": later}),
        user("m3", sid=second).model_copy(update={"created_at": later}),
    )
    async with sessions() as db:
        rows = {row.id: row.last_active_at for row in (await db.exec(select(ChatSession))).all()}
    assert _aware(rows[first]) == later + timedelta(minutes=5)
    assert _aware(rows[second]) == later


def _aware(at: datetime) -> datetime:
    return at if at.tzinfo else at.replace(tzinfo=UTC)


async def test_history_pages_newest_first(sessions: Sessions) -> None:
    await record(
        sessions, *[user(f"m{i}", content=f"message {i}") for i in range(5)], user("x", sid="other")
    )
    seen: list[str] = []
    before = None
    async with sessions() as db:
        while True:
            page = await history.page(
                db, rpc.HistoryRequest(session_id="s1", before=before, limit=2)
            )
            seen += [m.message_id for m in page.messages]
            if page.next is None:
                break
            before = page.next
    assert seen == ["m4", "m3", "m2", "m1", "m0"]


async def test_a_bad_cursor_is_a_bad_request(sessions: Sessions) -> None:
    async with sessions() as db:
        page = await history.page(db, rpc.HistoryRequest(session_id="s1", before="x"))
    assert page.error is not None
    assert page.error.code == "bad_request"


async def test_a_user_s_sessions_are_listed_latest_activity_first_in_pages(
    sessions: Sessions,
) -> None:
    made: list[str] = []
    async with sessions() as db:
        for i in range(5):
            owner = "alice" if i != 3 else "bob"
            info = await repository.create_session(
                db, rpc.SessionCreate(owner=owner, title=f"t{i}")
            )
            made.append(info.session_id)
        await repository.add_member(db, made[3], "alice")  # bob's, alice a member
        await repository.add_member(db, made[0], "carol")
        await db.commit()
    base = datetime.now(UTC) + timedelta(days=1)  # after their creation
    for i, sid in enumerate(made):  # activity: t2 newest, then t0, t4, t1, t3
        at = base + timedelta(minutes=[3, 1, 5, 0, 2][i])
        message = UserMessage(
            session_id=sid, message_id="m", participant="alice", content="hi", created_at=at
        )
        await record(sessions, message)
    pages: list[rpc.SessionPage] = []
    before = None
    async with sessions() as db:
        while True:
            page = await repository.list_sessions(
                db, rpc.SessionList(user_id="alice", limit=2, before=before)
            )
            pages.append(page)
            if page.next is None:
                break
            before = page.next
    listed = [s for page in pages for s in page.sessions]
    assert [s.title for s in listed] == ["t2", "t0", "t4", "t1", "t3"]
    assert [len(p.sessions) for p in pages] == [2, 2, 1]
    by_title = {s.title: s for s in listed}
    assert (by_title["t3"].role, by_title["t3"].owner) == ("member", "bob")
    assert (by_title["t0"].role, by_title["t0"].members) == ("owner", 2)
    assert by_title["t2"].last_active_at == base + timedelta(minutes=5)
    async with sessions() as db:
        nobody = await repository.list_sessions(db, rpc.SessionList(user_id="dave"))
        bad = await repository.list_sessions(db, rpc.SessionList(user_id="a", before="x|y"))
    assert (nobody.sessions, nobody.next) == ([], None)
    assert bad.error is not None
    assert bad.error.code == "bad_request"


async def test_a_member_s_role_changes_when_added_again_but_the_owner_s_never(
    sessions: Sessions,
) -> None:
    async with sessions() as db:
        info = await repository.create_session(db, rpc.SessionCreate(owner="alice"))
        sid = info.session_id
        await repository.add_member(db, sid, "vera", "viewer")
        await repository.add_member(db, sid, "alice", "viewer")  # the owner stays the owner
        await db.commit()
        viewing = await repository.get_session(db, sid)
        await repository.add_member(db, sid, "vera", "member")
        await db.commit()
        writing = await repository.get_session(db, sid)
    assert viewing is not None
    assert (viewing.members, viewing.viewers) == (["alice", "vera"], ["vera"])
    assert writing is not None
    assert (writing.members, writing.viewers) == (["alice", "vera"], [])


async def test_an_untitled_session_takes_its_first_message_as_title(sessions: Sessions) -> None:
    async with sessions() as db:
        create = repository.create_session
        untitled = (await create(db, rpc.SessionCreate(owner="alice"))).session_id
        titled = (await create(db, rpc.SessionCreate(owner="alice", title="Mine"))).session_id
        await db.commit()
    await record(
        sessions,
        user("m1", untitled, "Plan a trip to Lisbon"),
        user("m2", untitled, "and Porto"),
        user("m1", titled, "Something else"),
    )
    await record(sessions, user("m3", untitled, "Later message"))
    async with sessions() as db:
        first = await repository.get_session(db, untitled)
        second = await repository.get_session(db, titled)
    assert first is not None
    assert second is not None
    assert (first.title, second.title) == ("Plan a trip to Lisbon", "Mine")
