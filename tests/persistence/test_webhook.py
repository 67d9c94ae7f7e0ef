"""The usage webhook on a real nats-server and a real HTTP receiver that is down for a while:
every record arrives (at least once, deduplicated by id), signed, across a sender restart."""

import asyncio
import contextlib
import json
import random
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from persistence import webhook
from shared import signatures, stream, subjects
from shared.events import Billed, ReplyEnd, SessionTitled, Usage
from shared.settings import TokenwireSettings
from support.ports import free_port

SECRET = "w" * 40


class Receiver:
    """An HTTP server started later on a port reserved now, recording what it is sent."""

    def __init__(self) -> None:
        self.port = free_port()
        self.received: list[tuple[str, dict[str, Any]]] = []
        self.bad_signatures = 0
        self._server: ThreadingHTTPServer | None = None

    def start(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers["content-length"])
                body = self.rfile.read(length)
                if len(body) < length:
                    return  # a sender stopped mid-request: nothing was delivered
                if not signatures.verify(self.headers[webhook.SIGNATURE_HEADER], body, SECRET):
                    receiver.bad_signatures += 1
                receiver.received.append((self.headers[webhook.DELIVERY_HEADER], json.loads(body)))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    running = Receiver()
    yield running
    running.stop()


def test_backoff_doubles_up_to_the_cap_with_jitter() -> None:
    rng = random.Random(7)
    delays = [webhook.backoff_s(n, base_s=1, cap_s=10, rng=rng) for n in range(1, 7)]
    expected = [1, 2, 4, 8, 10, 10]
    assert all(0.8 * e <= d <= e for d, e in zip(delays, expected, strict=True))


@pytest.mark.real
async def test_records_survive_a_receiver_outage_and_a_sender_restart(
    nats_url: str, receiver: Receiver
) -> None:
    await stream.prepare(TokenwireSettings(nats_url=nats_url), name="test")
    nc = await stream.connect(nats_url, name="test-webhook")
    js = nc.jetstream()
    await js.add_consumer(subjects.STREAM, webhook.consumer_config(ack_wait_s=5))
    sid = uuid.uuid4().hex
    ends = [
        ReplyEnd(
            session_id=sid,
            message_id=f"m{i}",
            attempt=1,
            model="x",
            text="t",
            finish_reason="stop",
            usage=Usage(total_tokens=i),
            duration_ms=1,
            requested_by="alice",
        )
        for i in range(8)
    ]
    for end in ends:
        await js.publish(subjects.out_end(sid), end.model_dump_json().encode())
    named = titled(uuid.uuid4().hex)  # a session's title call is billed through it too
    await js.publish(subjects.out_title(named.session_id), named.model_dump_json().encode())

    async def run_sender(seconds: float) -> None:
        async with httpx.AsyncClient(timeout=2) as http:
            sender = webhook.WebhookSender(
                js,
                http,
                url=f"http://127.0.0.1:{receiver.port}/u",
                secret=SECRET,
                base_s=0.2,
                cap_s=0.5,
            )
            task = asyncio.create_task(sender.run())
            await asyncio.sleep(seconds)
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    try:
        await run_sender(1.5)  # the receiver is down: every try fails and is naked
        receiver.start()
        await run_sender(0.3)  # a restart in the middle of delivering
        await run_sender(6.0)
    finally:
        await nc.close()
    mine = {rid: body for rid, body in receiver.received if rid.startswith(sid)}
    assert sorted(mine) == sorted(f"{sid}:m{i}" for i in range(8))
    assert receiver.bad_signatures == 0
    assert mine[f"{sid}:m3"]["usage"]["total_tokens"] == 3
    assert mine[f"{sid}:m3"]["user_id"] == "alice"
    title = dict(receiver.received)[f"{named.session_id}:m1:title"]
    assert (title["kind"], title["billed"]["calls"], title["billed"]["total_tokens"]) == (
        "title",
        1,
        94,
    )
    assert mine[f"{sid}:m3"]["kind"] == "reply"


def titled(sid: str) -> SessionTitled:
    return SessionTitled(
        session_id=sid,
        message_id="m1",
        attempt=1,
        title="Lisbon",
        replaces="Plan a trip",
        model="x",
        usage=Usage(prompt_tokens=90, completion_tokens=4, total_tokens=94),
        requested_by="alice",
    )


def test_a_delivery_bills_every_call_beside_the_answering_one() -> None:
    def end(billed: Billed | None) -> ReplyEnd:
        return ReplyEnd(
            session_id="s",
            message_id="m",
            attempt=2,
            model="gpt",
            text="hi",
            finish_reason="stop",
            usage=Usage(prompt_tokens=10, completion_tokens=5, total_tokens=15),
            cost_usd=0.2,
            duration_ms=1,
            billed=billed,
        )

    alone = webhook.payload(end(None))
    assert alone["billed"] == {**alone["usage"], "calls": 1, "cost_usd": 0.2}
    total = Usage(prompt_tokens=20, completion_tokens=8, total_tokens=28, estimated=True)
    retried = webhook.payload(end(Billed(calls=2, usage=total, cost_usd=0.3)))
    assert retried["usage"]["total_tokens"] == 15  # the answered attempt's share
    assert retried["billed"] == {**total.model_dump(), "calls": 2, "cost_usd": 0.3}
