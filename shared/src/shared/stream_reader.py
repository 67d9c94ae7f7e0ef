"""Reading stored events back in order: an ordered consumer on one filter subject of the
`CHAT` stream, from a sequence on. Gateways replay a session to a client that resumes;
workers read the earlier attempts of a reply they retry."""

from collections.abc import AsyncIterator
from datetime import UTC, datetime

import nats.errors
from nats.js import JetStreamContext
from nats.js.api import ConsumerConfig, DeliverPolicy

from shared import subjects


async def stored_events(
    js: JetStreamContext,
    subject: str,
    after: int,
    *,
    through: int | None = None,
    timeout_s: float = 5.0,
) -> AsyncIterator[tuple[int, bytes, str]]:
    """(sequence, data, when it was stored: `stamp`) of the events on `subject` with
    `after < seq`, in order: up to
    `through`, or with None until none is pending (the stream's end as the reading found
    it). Raises `TimeoutError` when the stream stops answering."""
    sub = await js.subscribe(
        subject,
        stream=subjects.STREAM,  # named: looking it up needs a permission services lack
        ordered_consumer=True,
        deliver_policy=DeliverPolicy.BY_START_SEQUENCE,
        config=ConsumerConfig(opt_start_seq=after + 1, inactive_threshold=30),
        pending_msgs_limit=1024,
    )
    try:
        while True:
            try:
                msg = await sub.next_msg(timeout=timeout_s)
            except nats.errors.TimeoutError:
                raise TimeoutError(f"reading {subject} stalled after {after}") from None
            seq = msg.metadata.sequence.stream
            if through is not None and seq > through:
                return
            yield seq, msg.data, stamp(msg.metadata.timestamp)
            if seq == through or (through is None and msg.metadata.num_pending == 0):
                return
    finally:
        await sub.unsubscribe()


def stamp(when: datetime | str) -> str:
    """A stored event's time as frames carry it, the same from the stream's metadata (a
    datetime) as from a republished event's `Nats-Time-Stamp` header (RFC 3339 with
    nanoseconds): `2026-12-04T10:07:23.324Z`."""
    if isinstance(when, str):
        head, _, rest = when.rstrip("Z").partition(".")
        return f"{head}.{(rest + '000')[:3]}Z"
    utc = when.astimezone(UTC)
    return f"{utc:%Y-%m-%dT%H:%M:%S}.{utc.microsecond // 1000:03d}Z"
