"""Kill anything, lose nothing: chat traffic through real processes while faults are injected,
then counted (see `ledger.py`). Every scenario must end with nothing lost, nothing duplicated,
no gap and no token shown twice.
"""

import asyncio
import collections
import json
import random
import signal
from collections.abc import Awaitable

import httpx
import pytest

from faults.conftest import SCALE, scaled
from faults.ledger import Chat, Counts, SlowChat, count
from faults.traffic import REPLY, converse, open_chats, outage, with_faults
from shared import stream, subjects
from shared.events import UserMessage
from support import servers
from support.system import Process, System

pytestmark = [pytest.mark.real, pytest.mark.e2e, pytest.mark.faults, pytest.mark.timeout(600)]

OUTAGE_S = 10.0 if SCALE == 1 else 60.0
"""Persistence and Redis outages: 10 s in the quick form, 60 s in `make faults`."""
DATABASE_OUTAGE_S = 10.0 if SCALE == 1 else 30.0


KILLS_PER_MESSAGE = 2
"""A message whose every delivery is killed is given up after TOKENWIRE_WORKER_MAX_DELIVER
(5) deliveries, by design: the killers spare a worker streaming a message killed this often
(once traffic drains, the last message streaming would otherwise take every kill)."""


async def streaming_worker(
    system: System, hits: collections.Counter[str] | None = None
) -> Process | None:
    """A worker process that is streaming a reply now (by the fake model's records). With
    `hits`, none streaming a message killed `KILLS_PER_MESSAGE` times, and the messages the
    chosen one streams are counted in `hits`."""
    async with httpx.AsyncClient() as http:
        streams = (await http.get(f"{system.llm_url}/v1/_fake/streams")).json()
    open_streams = [s for s in streams if s["ended"] is None]
    spared = {s["worker"] for s in open_streams if hits and hits[s["prompt"]] >= KILLS_PER_MESSAGE}
    busy = {int(s["worker"].rsplit("-", 1)[1]) for s in open_streams if s["worker"] not in spared}
    alive = [p for p in system.processes if p.name.startswith("worker-") and p.popen.poll() is None]
    candidates = [p for p in alive if p.popen.pid in busy]
    if not candidates:
        return None
    victim = random.choice(candidates)
    if hits is not None:
        hits.update(
            s["prompt"] for s in open_streams if s["worker"].endswith(f"-{victim.popen.pid}")
        )
    return victim


async def streaming_in(chats: list[Chat], *, share: float, timeout_s: float = 60) -> None:
    """Until `share` of the chats have received a token (so most sockets are open)."""

    def streaming() -> int:
        return sum(1 for c in chats if any(f["type"] == "stream_token" for f in c.frames))

    deadline = asyncio.get_running_loop().time() + timeout_s
    while streaming() < share * len(chats):
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError(f"only {streaming()} of {len(chats)} chats got a token")
        await asyncio.sleep(0.05)


def frames(chat: Chat) -> int:
    return sum(1 for f in chat.frames if f["type"] == "stream_token")


def kill(process: Process, sig: signal.Signals = signal.SIGKILL) -> None:
    process.popen.send_signal(sig)
    process.popen.wait(30)


async def settle(
    name: str,
    chats: list[Chat],
    system: System,
    record: list[Counts],
    *,
    broker_failed: bool = False,
) -> Counts:
    counts = await count(name, chats, system.gateway_url, system.llm_url)
    record.append(counts)
    counts.must_be_clean(broker_failed=broker_failed)
    return counts


async def test_sigkill_of_streaming_workers(
    system: System, http: httpx.AsyncClient, record: list[Counts]
) -> None:
    chats = await open_chats(system, http, scaled(8))
    killed: list[int] = []
    hits: collections.Counter[str] = collections.Counter()

    async def faults() -> None:
        for _ in range(scaled(2)):
            await asyncio.sleep(1.0)
            victim = None
            while victim is None:
                victim = await streaming_worker(system, hits)
                await asyncio.sleep(0.05)
            kill(victim)
            killed.append(victim.popen.pid)
            system.respawn(victim)

    await with_faults(converse(chats, 3), faults)
    counts = await settle("worker SIGKILL mid-stream", chats, system, record)
    assert len(killed) == scaled(2)
    assert counts.llm_calls_max >= 2  # the killed workers' messages were answered again


async def test_a_frozen_worker_is_fenced_off(
    system: System, http: httpx.AsyncClient, record: list[Counts]
) -> None:
    chats = await open_chats(system, http, scaled(4))

    async def faults() -> None:
        await asyncio.sleep(1.0)
        victim = None
        while victim is None:
            victim = await streaming_worker(system)
            await asyncio.sleep(0.05)
        victim.popen.send_signal(signal.SIGSTOP)
        await asyncio.sleep(7)  # past the ack wait (4 s): the message goes to another worker
        victim.popen.send_signal(signal.SIGCONT)

    await with_faults(converse(chats, 2), faults)
    await settle("worker SIGSTOP past the ack wait", chats, system, record)


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["SIGKILL", "SIGTERM"])
async def test_gateway_restart_with_hundreds_of_sockets(
    system: System, http: httpx.AsyncClient, record: list[Counts], sig: signal.Signals
) -> None:
    chats = await open_chats(system, http, scaled(100))
    gateway = system.named("gateway")

    async def faults() -> None:
        await streaming_in(chats, share=0.5)  # sockets open, replies streaming
        kill(gateway, sig)
        await asyncio.sleep(0.5)
        system.respawn(gateway)

    await with_faults(converse(chats, 2, "[fake tokens=30 delay_ms=40]"), faults)
    counts = await settle(f"gateway {sig.name}", chats, system, record)
    assert counts.reconnects >= len(chats) // 4  # many sockets were open when it went


async def test_nats_server_sigkill_and_restart(
    system: System, http: httpx.AsyncClient, nats: servers.Server, record: list[Counts]
) -> None:
    chats = await open_chats(system, http, scaled(8))

    async def faults() -> None:
        await asyncio.sleep(1.5)
        nats.process.kill()
        nats.process.wait()
        await asyncio.sleep(1.0)
        nats.resume()

    await with_faults(converse(chats, 3), faults)
    name = "nats-server SIGKILL, restart"
    counts = await settle(name, chats, system, record, broker_failed=True)
    assert counts.reconnects >= len(chats)  # every client was told to resume


async def test_persistence_down_during_traffic(
    system: System, http: httpx.AsyncClient, record: list[Counts]
) -> None:
    chats = await open_chats(system, http, scaled(8))
    persistence = system.named("persistence")

    # Messages are stored and answered meanwhile.
    def faults() -> Awaitable[None]:
        return outage(lambda: kill(persistence), lambda: system.respawn(persistence), OUTAGE_S)

    await with_faults(converse(chats, 3), faults)
    await settle(f"persistence down {OUTAGE_S:g} s", chats, system, record)


async def test_redis_stopped_during_traffic(
    system: System, http: httpx.AsyncClient, redis: servers.Server, record: list[Counts]
) -> None:
    chats = await open_chats(system, http, scaled(8))

    # Gateways refuse new messages meanwhile: `unavailable`, sent again.
    def faults() -> Awaitable[None]:
        return outage(redis.halt, redis.resume, OUTAGE_S)

    await with_faults(converse(chats, 3), faults)
    await settle(f"Redis stopped {OUTAGE_S:g} s", chats, system, record)


async def test_the_database_unavailable_during_traffic(
    system: System, http: httpx.AsyncClient, database: servers.Server, record: list[Counts]
) -> None:
    chats = await open_chats(system, http, scaled(8))
    persistence = system.named("persistence")

    # Persistence naks and waits meanwhile; chat goes on.
    def faults() -> Awaitable[None]:
        return outage(database.halt, database.resume, DATABASE_OUTAGE_S)

    await with_faults(converse(chats, 3), faults)
    await settle(f"database down {DATABASE_OUTAGE_S:g} s", chats, system, record)
    assert persistence.popen.poll() is None  # no crash, let alone a crash loop


async def test_a_slow_reader_beside_fast_ones(
    system: System, http: httpx.AsyncClient, record: list[Counts]
) -> None:
    fast = await open_chats(system, http, scaled(4))
    # The same sessions and users, and the same tag: the model is asked once per message.
    slow = [SlowChat(c.ws_url, c.session_id, c.user, tag=c.tag) for c in fast]
    finished: dict[str, float] = {}

    async def talk(chat: Chat) -> None:
        for i in range(2):
            await chat.say(f"m{i}", "[fake tokens=300 delay_ms=2 chars=200]")
        finished[chat.session_id] = asyncio.get_running_loop().time()
        await chat.leave()

    async def follow(chat: "SlowChat") -> None:
        await chat.follow({"m0", "m1"})
        finished[f"slow {chat.session_id}"] = asyncio.get_running_loop().time()

    await asyncio.gather(*(talk(c) for c in fast), *(follow(c) for c in slow))
    name = "slow reader beside fast ones"
    counts = await count(name, [*fast, *slow], system.gateway_url, system.llm_url)
    record.append(counts)
    counts.must_be_clean()
    for quick in fast:  # every fast reader was done before its slow neighbour
        assert finished[quick.session_id] < finished[f"slow {quick.session_id}"]
    # The slow ones got merged frames (fewer of them), or a 1013 and resumed.
    merged = sum(frames(c) for c in slow) < sum(frames(c) for c in fast)
    assert merged or any(c.reconnects for c in slow)


async def test_the_same_message_id_three_times_and_after_the_dedup_window(
    system: System, http: httpx.AsyncClient, nats: servers.Server, record: list[Counts]
) -> None:
    chats = await open_chats(system, http, scaled(3))
    for chat in chats:
        ws = await chat._connected()
        for _ in range(3):
            await ws.send(
                json.dumps(
                    {"type": "message", "message_id": "m0", "content": chat.content("m0", REPLY)}
                )
            )
        await chat.say("m0", REPLY)
    # After the stream's duplicate window a resend is stored again: the same as publishing it
    # under a new Nats-Msg-Id, which is what this does (the window is two minutes).
    client = await stream.connect(
        nats.users["gateway"], name="faults", inbox_prefix=subjects.inbox("gateway")
    )
    try:
        js = client.jetstream()
        for chat in chats:
            again = UserMessage(
                session_id=chat.session_id,
                message_id="m0",
                participant=chat.user.user_id,
                content=chat.content("m0", REPLY),
            )
            await js.publish(subjects.chat_in(chat.session_id), again.model_dump_json().encode())
    finally:
        await client.close()
    await asyncio.sleep(2)  # a worker takes each again and finds it answered
    for chat in chats:
        await chat.leave()
    counts = await settle("same message_id 3 times, and after the window", chats, system, record)
    assert counts.llm_calls_max == 1  # one reply, one charge


async def test_a_client_that_leaves_mid_reply_for_good(
    system: System, http: httpx.AsyncClient, record: list[Counts]
) -> None:
    chats = await open_chats(system, http, scaled(4))
    for chat in chats:
        ws = await chat._connected()
        await ws.send(
            json.dumps(
                {"type": "message", "message_id": "m0", "content": chat.content("m0", REPLY)}
            )
        )
        while "m0" not in chat.echoed:
            chat._take(json.loads(await ws.recv()))
    await asyncio.sleep(0.3)
    for chat in chats:
        await chat.leave()  # gone for good, mid-reply
    await asyncio.sleep(2.5)
    async with httpx.AsyncClient() as llm:
        streams = (await llm.get(f"{system.llm_url}/v1/_fake/streams")).json()
    ours = [s for s in streams if s["prompt"].split(" ", 1)[0] in {f"{c.tag}:m0" for c in chats}]
    assert len(ours) == len(chats)
    assert all(s["ended"] is not None and not s["closed_early"] for s in ours)  # none orphaned
    counts = await count("client gone mid-reply", chats, system.gateway_url, system.llm_url)
    record.append(counts)
    assert (counts.lost, counts.unanswered, counts.duplicates) == (0, 0, 0)
    async with httpx.AsyncClient(base_url=system.gateway_url) as api:
        for chat in chats:
            rows = (
                await api.get(f"/v1/sessions/{chat.session_id}/messages", headers=chat.user.auth)
            ).json()["messages"]
            reply = next(m for m in rows if m["role"] == "assistant")
            assert reply["status"] == "complete"
            assert reply["usage"]["completion_tokens"] == 40
