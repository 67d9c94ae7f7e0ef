"""Resume: the stored events of one session after a client's `last_seq`, in order.

The gateway joins the live path first and reads the session's head, then replays
`(last_seq, head]` through an ordered consumer and forwards live events only above `head`:
every event arrives once, none is skipped.
"""

from collections.abc import AsyncIterator

import nats.errors
from nats.js import JetStreamContext
from nats.js.api import ConsumerConfig, DeliverPolicy

from gateway.outbox import AttemptFilter, Outgoing
from gateway.translate import outgoing_for_event
from shared import subjects


def can_resume(last_seq: int, stream_first: int, stream_last: int) -> bool:
    """Whether every event after `last_seq` is still stored: `last_seq` is neither older than
    the stream's retention nor newer than the stream itself (a stream that was reset)."""
    return stream_first - 1 <= last_seq <= stream_last


async def replay(
    js: JetStreamContext, session_id: str, after: int, through: int, *, timeout_s: float = 5.0
) -> AsyncIterator[Outgoing]:
    """Yield the session's stored events with `after < seq <= through`, without the events
    of reply attempts that a newer attempt replaced."""
    if through <= after:
        return
    attempts = AttemptFilter()
    sub = await js.subscribe(
        subjects.session_stored(session_id),
        stream=subjects.STREAM,  # named: looking it up needs a permission gateways lack
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
                raise TimeoutError(f"replay of {session_id} stalled below {through}") from None
            seq = msg.metadata.sequence.stream
            if seq > through:
                return
            item = outgoing_for_event(msg.data, seq)
            if attempts.admit(item):
                yield item
            if seq == through:
                return
    finally:
        await sub.unsubscribe()
