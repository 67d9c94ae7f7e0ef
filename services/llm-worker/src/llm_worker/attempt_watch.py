"""What the responder says about one attempt while it streams (`replies.Watch`): its budgets
metered in batches, whether the attempt still holds the reply, its deltas counted."""

from llm_worker.coordination import Budgets, Coordinator, Limit
from llm_worker.metrics import WorkerMetrics
from llm_worker.patience import patiently
from shared.events import UserMessage

METER_EVERY_TOKENS = 32
"""Streamed tokens are added to the spending in batches of this many."""


class AttemptWatch:
    """What the responder says about one attempt while it streams (`replies.Watch`): its
    budgets, metered in batches; whether it still holds the reply; its deltas."""

    def __init__(
        self,
        coord: Coordinator,
        metrics: WorkerMetrics,
        message: UserMessage,
        attempt: int,
        budgets: Budgets,
    ) -> None:
        self._coord = coord
        self._metrics = metrics
        self._message = message
        self._attempt = attempt
        self._budgets = budgets
        self.meters = budgets.any
        self.metered = 0
        """Tokens added to the spending so far."""
        self._pending = 0

    async def spend(self, tokens: int) -> Limit | None:
        self._pending += tokens
        if self._pending < METER_EVERY_TOKENS:
            return None
        today, in_session = await self._coord.spend(self._message, self._pending)
        self.metered, self._pending = self.metered + self._pending, 0
        return self._budgets.exceeded(today, in_session)

    async def still_ours(self) -> bool:
        message, coord, attempt = self._message, self._coord, self._attempt
        sid, mid = message.session_id, message.message_id
        return await patiently(lambda: coord.holds(sid, mid, attempt))

    def delta(self, gap_s: float | None) -> None:
        self._metrics.tokens.inc()
        if gap_s is not None:
            self._metrics.gap.observe(gap_s)
