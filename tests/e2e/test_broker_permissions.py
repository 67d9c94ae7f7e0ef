"""Least privilege on the broker: tokenwire's nats-server config, with real credentials.

Each service can do its own job and nothing else: a worker cannot post user messages, a
gateway cannot forge reply tokens, nobody reads everyone's replies.
"""

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator

import nats
import nats.errors
import pytest
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.js.errors import NotFoundError

from shared import stream, subjects
from shared.settings import TokenwireSettings
from support import servers

pytestmark = [pytest.mark.real, pytest.mark.e2e]


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[servers.Server]:
    workdir = tmp_path_factory.mktemp("secured-nats")
    with servers.running(servers.start_nats(workdir, secured=True)) as server:
        yield server


class Client:
    def __init__(self, nc: NatsClient, errors: list[str]) -> None:
        self.nc = nc
        self.errors = errors


async def client(broker: servers.Server, user: str) -> Client:
    errors: list[str] = []

    async def on_error(exc: Exception) -> None:
        errors.append(str(exc))

    service = {"gateway": "gateway", "worker": "llm-worker", "persistence": "persistence"}
    prefix = subjects.inbox(service[user]) if user in service else f"_INBOX_{user}"
    nc = await nats.connect(broker.users[user], error_cb=on_error, inbox_prefix=prefix)
    return Client(nc, errors)


@pytest.fixture
async def as_user(broker: servers.Server) -> AsyncIterator[dict[str, Client]]:
    await stream.prepare(TokenwireSettings(nats_url=broker.users["gateway"]), name="gateway")
    clients = {user: await client(broker, user) for user in servers.NATS_USERS}
    yield clients
    for c in clients.values():
        await c.nc.close()


async def stored(as_user: dict[str, Client], subject_filter: str) -> bool:
    js = as_user["gateway"].nc.jetstream()
    try:
        await js.get_last_msg(subjects.STREAM, subject_filter, direct=True)
    except NotFoundError:
        return False
    return True


async def test_a_worker_cannot_post_user_messages(as_user: dict[str, Client]) -> None:
    sid = uuid.uuid4().hex
    worker = as_user["worker"]
    await worker.nc.publish(subjects.chat_in(sid), b'{"forged": true}')
    await worker.nc.flush()
    await asyncio.sleep(0.3)
    assert any("permissions violation" in e for e in worker.errors)
    assert not await stored(as_user, subjects.chat_in(sid))
    # its own job works: replies go into the stream
    ack = await worker.nc.jetstream().publish(subjects.out_token(sid), b"{}")
    assert ack.seq > 0


async def test_a_worker_reads_every_models_queue_and_not_persistences(
    as_user: dict[str, Client],
) -> None:
    worker = as_user["worker"]
    await worker.nc.publish(subjects.chat_in(uuid.uuid4().hex, "large"), b'{"forged": true}')
    for consumer in ("llm-workers", "llm-workers-large", "persistence", "usage-webhook"):
        await worker.nc.publish(f"$JS.API.CONSUMER.MSG.NEXT.CHAT.{consumer}", b"1")
    await worker.nc.flush()
    await asyncio.sleep(0.3)
    violations = [e for e in worker.errors if "permissions violation" in e]
    assert len(violations) == 3, worker.errors
    assert all("in.large" in e or "persistence" in e or "usage-webhook" in e for e in violations)


async def test_a_gateway_cannot_forge_replies(as_user: dict[str, Client]) -> None:
    sid = uuid.uuid4().hex
    gateway = as_user["gateway"]
    await gateway.nc.publish(subjects.out_end(sid), b"{}")
    await gateway.nc.flush()
    await asyncio.sleep(0.3)
    assert any("permissions violation" in e for e in gateway.errors)
    assert not await stored(as_user, subjects.out_end(sid))


async def test_a_gateway_ends_only_with_an_error_a_reply_no_worker_took(
    as_user: dict[str, Client],
) -> None:
    sid = uuid.uuid4().hex
    gateway = as_user["gateway"]
    ack = await gateway.nc.jetstream().publish(subjects.out_error(sid), b"{}")  # gateway.unserved
    assert ack.seq > 0
    for subject in (subjects.out_start(sid), subjects.out_token(sid)):
        await gateway.nc.publish(subject, b"{}")
    await gateway.nc.flush()
    await asyncio.sleep(0.3)
    assert sum("permissions violation" in e for e in gateway.errors) == 2
    assert not await stored(as_user, subjects.out_start(sid))
    assert not await stored(as_user, subjects.out_token(sid))


async def test_persistence_only_answers(as_user: dict[str, Client]) -> None:
    persistence = as_user["persistence"]
    await persistence.nc.publish(subjects.chat_in("x"), b"{}")
    await persistence.nc.publish(subjects.cancel("x"), b"m")
    await persistence.nc.flush()
    await asyncio.sleep(0.3)
    assert sum("permissions violation" in e for e in persistence.errors) == 2


@pytest.mark.parametrize("user", ["worker", "persistence", "ops"])
async def test_nobody_reads_the_live_path_or_everyones_inbox_but_gateways(
    as_user: dict[str, Client], user: str
) -> None:
    c = as_user[user]
    await c.nc.subscribe("live.>")
    await c.nc.subscribe("_INBOX.>")
    await c.nc.flush()
    await asyncio.sleep(0.3)
    assert sum("permissions violation for subscription" in e for e in c.errors) == 2


async def test_ops_reads_stream_state_and_writes_nothing(as_user: dict[str, Client]) -> None:
    ops = as_user["ops"]
    info = await ops.nc.jetstream().stream_info(subjects.STREAM)
    assert info.config.name == subjects.STREAM
    await ops.nc.publish(subjects.chat_in("x"), b"{}")
    await ops.nc.flush()
    await asyncio.sleep(0.3)
    assert any("permissions violation" in e for e in ops.errors)


async def answered(requester: Client, subject: str) -> bytes:
    """The answer to a request on `subject`; asked again while the server reports no
    responder (a fresh subscription can take a moment to count, even after a flush)."""
    for _ in range(20):
        try:
            return (await requester.nc.request(subject, b"{}", timeout=2)).data
        except nats.errors.NoRespondersError:
            await asyncio.sleep(0.1)
    raise AssertionError(f"nobody answered on {subject}")


async def test_a_worker_asks_persistence_for_history_and_sessions_only(
    as_user: dict[str, Client],
) -> None:
    persistence, worker = as_user["persistence"], as_user["worker"]

    async def answer(msg: Msg) -> None:
        await msg.respond(b"{}")

    for subject in (subjects.SVC_HISTORY, subjects.SVC_SESSION_GET, subjects.SVC_SESSION_CREATE):
        await persistence.nc.subscribe(subject, cb=answer)
    await persistence.nc.flush()
    for subject in (subjects.SVC_HISTORY, subjects.SVC_SESSION_GET):
        assert await answered(worker, subject) == b"{}"
    await worker.nc.publish(subjects.SVC_SESSION_CREATE, b"{}")
    await worker.nc.flush()
    await asyncio.sleep(0.3)
    assert sum("permissions violation" in e for e in worker.errors) == 1
