"""The `svc.*` handlers in-process (FastStream's in-memory test broker) on SQLite and
PostgreSQL; a database that fails is answered with an `internal` error, never a timeout."""

from collections.abc import AsyncIterator
from typing import Any

import pytest
from faststream.nats import NatsBroker, TestNatsBroker
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from persistence import db, handlers
from shared import rpc, subjects


@pytest.fixture
async def broker(sessions: async_sessionmaker[AsyncSession]) -> AsyncIterator[NatsBroker]:
    broker = NatsBroker()
    handlers.register(broker, sessions)
    async with TestNatsBroker(broker) as test_broker:
        yield test_broker


async def ask(broker: NatsBroker, subject: str, request: Any, reply: type[Any]) -> Any:
    answer = await broker.request(request, subject)
    return reply.model_validate_json(answer.body)


async def test_a_session_is_created_read_and_joined(broker: NatsBroker) -> None:
    created = await ask(
        broker,
        subjects.SVC_SESSION_CREATE,
        rpc.SessionCreate(owner="alice", title="t", system_prompt="Be brief."),
        rpc.SessionReply,
    )
    sid = created.session.session_id
    read = await ask(
        broker, subjects.SVC_SESSION_GET, rpc.SessionGet(session_id=sid), rpc.SessionReply
    )
    assert (read.session.owner, read.session.system_prompt) == ("alice", "Be brief.")
    joined = await ask(
        broker,
        subjects.SVC_MEMBER_ADD,
        rpc.MemberAdd(session_id=sid, user_id="bob", by="alice"),
        rpc.SessionReply,
    )
    assert sorted(joined.session.members) == ["alice", "bob"]


async def test_refusals_are_answers(broker: NatsBroker) -> None:
    missing = await ask(
        broker, subjects.SVC_SESSION_GET, rpc.SessionGet(session_id="nope"), rpc.SessionReply
    )
    assert missing.error == rpc.RpcError(code="not_found", detail="no such session")
    created = await ask(
        broker, subjects.SVC_SESSION_CREATE, rpc.SessionCreate(owner="alice"), rpc.SessionReply
    )
    stranger = await ask(
        broker,
        subjects.SVC_MEMBER_ADD,
        rpc.MemberAdd(session_id=created.session.session_id, user_id="eve", by="eve"),
        rpc.SessionReply,
    )
    assert stranger.error is not None
    assert stranger.error.code == "forbidden"


async def test_a_database_that_fails_is_an_internal_error_for_every_request() -> None:
    broken = db.sessionmaker(db.make_engine("sqlite+aiosqlite:////nonexistent/dir/x.db"))
    broker = NatsBroker()
    handlers.register(broker, broken)
    requests: list[tuple[str, Any, type[Any]]] = [
        (subjects.SVC_SESSION_CREATE, rpc.SessionCreate(owner="a"), rpc.SessionReply),
        (subjects.SVC_SESSION_GET, rpc.SessionGet(session_id="s"), rpc.SessionReply),
        (
            subjects.SVC_MEMBER_ADD,
            rpc.MemberAdd(session_id="s", user_id="b", by="a"),
            rpc.SessionReply,
        ),
        (subjects.SVC_USAGE, rpc.UsageRequest(user_id="a"), rpc.UsageReport),
        (subjects.SVC_HISTORY, rpc.HistoryRequest(session_id="s"), rpc.HistoryPage),
    ]
    async with TestNatsBroker(broker) as test_broker:
        for subject, request, reply in requests:
            answer = await ask(test_broker, subject, request, reply)
            assert answer.error == rpc.RpcError(code="internal", detail="database unavailable")
