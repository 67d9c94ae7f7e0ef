"""The records of a reply's model calls that are no reply end: calls of earlier attempts lost
with their worker (estimated), and calls whose record the broker refused (sent again later)."""

import asyncio
import logging

from llm_worker.attempt import ReplyJob
from llm_worker.earlier import EarlierAttempts
from llm_worker.progress import billed
from llm_worker.publisher import ReplyPublisher
from llm_worker.streaming import Streaming
from shared.events import ModelCall, ReplyEnd, ReplyError, Usage

log = logging.getLogger(__name__)

RECORD_AGAIN_S = (1.0, 2.0, 4.0, 8.0, 15.0, 30.0)
"""Pauses before each new try of a model call's record the broker refused (a minute in all)."""


async def settle(
    job: ReplyJob, s: Streaming, terminal: ReplyEnd | ReplyError, earlier: EarlierAttempts
) -> ReplyEnd | ReplyError:
    """Bill the earlier attempts lost with their worker (an estimate each: the deltas they
    published, the prompt of this attempt) and, on a reply end, total every call the reply
    took."""
    usage, cost = dict(earlier.usage), dict(earlier.cost_usd)
    lost = earlier.lost()
    if lost:
        prompt = _provider_prompt(terminal) or s.counter.count_messages(job.prompt)
    for attempt, deltas in lost.items():
        usage[attempt] = Usage(
            prompt_tokens=prompt,
            completion_tokens=deltas,
            total_tokens=prompt + deltas,
            estimated=True,
        )
        call = job.call("lost", usage[attempt], s.prices, attempt)
        cost[attempt] = call.cost_usd
        try:
            await s.publisher.call(call)
        except Exception as exc:
            log.warning("lost model call of attempt %d not recorded: %s", attempt, exc)
    if not isinstance(terminal, ReplyEnd) or not usage:
        return terminal
    return terminal.model_copy(update={"billed": billed(terminal, usage, cost)})


def record_later(publisher: ReplyPublisher, call: ModelCall) -> None:
    """Send `call`'s record again in the background, for a minute."""
    task = asyncio.create_task(_record_later(publisher, call))
    _RECORDING.add(task)
    task.add_done_callback(_RECORDING.discard)


_RECORDING: set["asyncio.Task[None]"] = set()
"""Model calls being sent again (a task must be referenced to run to its end)."""


async def _record_later(publisher: ReplyPublisher, call: ModelCall) -> None:
    for delay_s in RECORD_AGAIN_S:
        await asyncio.sleep(delay_s)
        try:
            await publisher.call(call)
            return
        except Exception as exc:
            error = exc
    log.warning("model call of attempt %d not recorded: %s", call.attempt, error)


def _provider_prompt(terminal: ReplyEnd | ReplyError) -> int:
    """The prompt as the provider counted it for this attempt (0: it did not say)."""
    if isinstance(terminal, ReplyEnd) and not terminal.usage.estimated:
        return terminal.usage.prompt_tokens
    return 0
