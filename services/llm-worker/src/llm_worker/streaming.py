"""What a reply streams with (`Streaming`: the worker's model server, publisher, counter,
prices and coalescing window), and what the worker holding it says while it streams
(`Watch`)."""

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

from llm_worker.coordination import Limit
from llm_worker.publisher import ReplyPublisher
from llm_worker.tokens import TokenCounter
from llm_worker.tool_runs import ToolRunner
from llm_worker.upstream import ModelServer
from shared.models import Price


@dataclass(frozen=True)
class Streaming:
    """What every reply of a worker streams with."""

    client: ModelServer
    publisher: ReplyPublisher
    counter: TokenCounter
    prices: Mapping[str, Price] = field(default_factory=dict)
    coalesce_s: float = 0.0
    """Deltas closer together than this share one token event (see `Coalescer`)."""
    tools: ToolRunner | None = None
    """The tools models may call (None: none)."""


class Watch(Protocol):
    """What the worker holding a reply says about it while it streams."""

    @property
    def meters(self) -> bool:
        """Whether `spend` counts (a budget is set): else deltas are not counted as they come."""
        ...

    async def spend(self, tokens: int) -> Limit | None:
        """Add streamed tokens to the spending; the budget spent, once one is."""
        ...

    async def still_ours(self) -> bool:
        """Whether this attempt still holds the reply (asked once, before the end)."""
        ...

    def delta(self, gap_s: float | None) -> None:
        """A delta came, `gap_s` after the previous one (None for the first)."""
        ...


class Unwatched:
    """A reply nobody meters or fences (tests, tools)."""

    meters = False

    async def spend(self, tokens: int) -> Limit | None:
        return None

    async def still_ours(self) -> bool:
        return True

    def delta(self, gap_s: float | None) -> None:
        return None
