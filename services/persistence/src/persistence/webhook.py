"""The usage callback: each reply's usage, and each session title's model call, POSTed to
`TOKENWIRE_USAGE_WEBHOOK_URL`.

Driven by its own durable consumer (`usage-webhook` on `chat.*.out.end` and
`chat.*.out.title`), not a queue in
memory: a delivery is acked only after the receiver answered 2xx, and naked with exponential
backoff (plus jitter) while it does not, so nothing is lost across restarts of either side.
Delivery is at least once; `X-Tokenwire-Delivery` carries a stable id for the receiver to
deduplicate by. Each delivery is signed with the time it is sent (`shared.signatures`):
`X-Tokenwire-Signature: t=<unix seconds>,v1=<hex HMAC of "<t>.<body>">`, so a receiver that
refuses old timestamps cannot be fed a captured delivery again.
"""

import asyncio
import json
import logging
import random
from typing import Any

import httpx
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from pydantic import ValidationError

from persistence.pulls import pull_forever
from shared import signatures, subjects
from shared.events import Billed, ReplyEnd, SessionTitled, parse_event

log = logging.getLogger(__name__)

CONSUMER = "usage-webhook"
SIGNATURE_HEADER = "X-Tokenwire-Signature"
DELIVERY_HEADER = "X-Tokenwire-Delivery"


def consumer_config(*, ack_wait_s: float) -> ConsumerConfig:
    """Every reply that ends, and every title the model gives, from the moment the webhook is
    first configured."""
    return ConsumerConfig(
        durable_name=CONSUMER,
        filter_subjects=[subjects.ALL_OUT_END, subjects.ALL_OUT_TITLE],
        ack_policy=AckPolicy.EXPLICIT,
        deliver_policy=DeliverPolicy.NEW,
        ack_wait=ack_wait_s,
        max_deliver=-1,
    )


def payload(end: ReplyEnd | SessionTitled) -> dict[str, Any]:
    """The delivery of one reply (`kind` `reply`): its answering attempt's `usage` and
    `cost_usd`, and in `billed` every model call the reply took (what the provider bills); or
    of a session's title (`kind` `title`), its one call."""
    billed = Billed(calls=1, usage=end.usage, cost_usd=end.cost_usd)
    if isinstance(end, SessionTitled):
        kind, finish, ttft_ms, duration_ms = "title", None, None, None
    else:
        billed = end.billed or billed
        kind, finish, ttft_ms, duration_ms = (
            "reply",
            end.finish_reason,
            end.ttft_ms,
            end.duration_ms,
        )
    return {
        "id": delivery_id(end),
        "kind": kind,
        "session_id": end.session_id,
        "message_id": end.message_id,
        "user_id": end.requested_by,
        "model": end.model,
        "attempt": end.attempt,
        "finish_reason": finish,
        "usage": end.usage.model_dump(),
        "cost_usd": end.cost_usd,
        "billed": {"calls": billed.calls, **billed.usage.model_dump(), "cost_usd": billed.cost_usd},
        "ttft_ms": ttft_ms,
        "duration_ms": duration_ms,
        "created_at": end.created_at.isoformat(),
    }


def delivery_id(end: ReplyEnd | SessionTitled) -> str:
    """One id per reply: a redelivery, or a later attempt's end, carries the same one; a
    title's is its first message's, with `:title`."""
    if isinstance(end, SessionTitled):
        return f"{end.session_id}:{end.message_id}:title"
    return f"{end.session_id}:{end.message_id}"


def backoff_s(delivered: int, *, base_s: float, cap_s: float, rng: random.Random) -> float:
    """Exponential in the number of deliveries so far, capped, less up to 20 % of jitter (so
    that records that failed together do not all come back at once)."""
    delay: float = min(base_s * float(2 ** max(delivered - 1, 0)), cap_s)
    return delay * (1 - rng.random() * 0.2)


class WebhookSender:
    def __init__(
        self,
        js: JetStreamContext,
        http: httpx.AsyncClient,
        *,
        url: str,
        secret: str,
        base_s: float,
        cap_s: float,
        batch: int = 20,
    ) -> None:
        self._js = js
        self._http = http
        self._url = url
        self._secret = secret
        self._base_s = base_s
        self._cap_s = cap_s
        self._batch = batch
        self._rng = random.Random()

    async def run(self) -> None:
        """Deliver until cancelled."""
        await pull_forever(
            self._js, CONSUMER, self._deliver_all, batch=self._batch, retry_delay_s=self._base_s
        )

    async def _deliver_all(self, msgs: list[Msg]) -> None:
        await asyncio.gather(*(self.deliver(msg) for msg in msgs))

    async def deliver(self, msg: Msg) -> None:
        try:
            end = parse_event(msg.data)
        except ValidationError:
            end = None
        if not isinstance(end, ReplyEnd | SessionTitled):
            log.error("not a reply end or a title on %s; skipped", msg.subject)
            await msg.term()
            return
        body = json.dumps(payload(end), separators=(",", ":")).encode()
        headers = {
            "content-type": "application/json",
            DELIVERY_HEADER: delivery_id(end),
            SIGNATURE_HEADER: signatures.sign(body, self._secret),
        }
        try:
            answer = await self._http.post(self._url, content=body, headers=headers)
            delivered = 200 <= answer.status_code < 300
            reason = f"HTTP {answer.status_code}"
        except httpx.HTTPError as exc:
            delivered, reason = False, type(exc).__name__
        if delivered:
            await msg.ack()
            return
        attempts = msg.metadata.num_delivered
        delay = backoff_s(attempts, base_s=self._base_s, cap_s=self._cap_s, rng=self._rng)
        log.warning(
            "usage webhook refused %s (%s, try %d); again in %.1f s",
            delivery_id(end),
            reason,
            attempts,
            delay,
        )
        await msg.nak(delay=delay)
