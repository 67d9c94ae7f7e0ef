"""Waiting for a queued message's turn: asking the session's line until `attempt.Waiting`
says it is this message's turn, and skipping or forgetting what it gives up on."""

import asyncio
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass

from llm_worker.attempt import Forget, Waiting
from llm_worker.cancels import StopSignal
from llm_worker.patience import patiently
from shared.reply_queue import ReplyQueue

log = logging.getLogger(__name__)
QUEUE_POLL_S = 0.1


@dataclass(frozen=True, slots=True)
class Waiter:
    session_id: str
    message_id: str
    admitted_at: float
    """From `Beginning.admitted_at`: the blockers it waits for were admitted before it."""
    log_context: Mapping[str, object]


async def wait_turn(queue: ReplyQueue, waiting: Waiting, waiter: Waiter, stop: StopSignal) -> None:
    """Until `waiting` says stream: its turn came, or `stop` was set. `waiting` counts time
    in `time.monotonic()`."""
    sid, mid = waiter.session_id, waiter.message_id
    while True:
        line = await patiently(lambda: queue.line(sid, waiting.place, mid, waiter.admitted_at))
        match waiting.next(line, time.monotonic(), stopped=stop.reason is not None):
            case "stream":
                return
            case "wait":
                pass
            case Forget(blocker):
                why = "forgetting message %s: admitted before this one, never taken"
                log.warning(why, blocker, extra=dict(waiter.log_context))
                await queue.forget(sid, blocker)
            case int(head):
                why = "skipping place %s in line: its message was never answered"
                log.warning(why, head, extra=dict(waiter.log_context))
                await queue.skip(sid, head)
        await asyncio.sleep(QUEUE_POLL_S)
