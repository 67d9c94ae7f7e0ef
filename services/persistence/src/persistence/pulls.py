"""One loop for persistence's durable pull consumers (the recorder and the usage webhook)."""

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from nats.aio.msg import Msg
from nats.js import JetStreamContext

from shared import subjects

log = logging.getLogger(__name__)


async def pull_forever(
    js: JetStreamContext,
    consumer: str,
    handle: Callable[[list[Msg]], Awaitable[None]],
    *,
    batch: int,
    retry_delay_s: float,
) -> None:
    """Fetch up to `batch` messages at a time from `consumer` and `handle` them, until
    cancelled. A fetch that got nothing in its second is no failure; a failed one (a broker
    hiccup) is retried after `retry_delay_s`: the consumer keeps its position. Messages
    fetched but not yet handled are left unacked: the server hands them out again after the
    ack wait."""
    sub = await js.pull_subscribe_bind(consumer, stream=subjects.STREAM)
    try:
        while True:
            raise_if_cancelled()
            try:
                msgs = await sub.fetch(batch, timeout=1.0)
            except TimeoutError:  # nothing came; nats-py raises its own or asyncio's
                continue
            except Exception:
                log.exception("fetch from %s failed; retrying", consumer)
                await asyncio.sleep(retry_delay_s)
                continue
            await handle(msgs)
    finally:
        # Unsubscribed, not left for the connection's drain, which would wait for a reader
        # of its queued messages until the drain timeout.
        with contextlib.suppress(Exception):
            await sub.unsubscribe()


def raise_if_cancelled() -> None:
    """nats-py's publish (under ack and nak) can swallow a CancelledError: a loop that was
    cancelled there must still stop."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError
