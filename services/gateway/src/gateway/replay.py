"""Resume: the stored events of one session after a client's `last_seq`, in order.

The gateway joins the live path first and reads the session's head, then replays
`(last_seq, head]` through an ordered consumer and forwards live events only above `head`:
every event arrives once, none is skipped.
"""

from collections.abc import AsyncIterator

from nats.js import JetStreamContext

from gateway.outbox import AttemptFilter, Outgoing
from gateway.translate import outgoing_for_event
from shared import subjects
from shared.stream_reader import stored_events

BATCH = 256
"""Stored events sent per merge during a replay."""


async def batches(
    js: JetStreamContext, session_id: str, after: int, through: int
) -> AsyncIterator[list[Outgoing]]:
    """`replay`, in lists of at most `BATCH` events: each is merged and sent at once, and a
    long replay is never held in memory whole."""
    batch: list[Outgoing] = []
    async for item in replay(js, session_id, after, through):
        batch.append(item)
        if len(batch) >= BATCH:
            yield batch
            batch = []
    if batch:
        yield batch


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
    try:
        async for seq, data, ts in stored_events(
            js, subjects.session_stored(session_id), after, through=through, timeout_s=timeout_s
        ):
            item = outgoing_for_event(data, seq, ts)
            if item is not None and attempts.admit(item):
                yield item
    except TimeoutError:
        raise TimeoutError(f"replay of {session_id} stalled below {through}") from None
