"""Cost of a reply from the per-model price table (US dollars per million tokens)."""

from collections.abc import Mapping

from llm_worker.settings import Price
from shared.events import Usage


def cost_usd(prices: Mapping[str, Price], model: str, usage: Usage) -> float | None:
    """None for a model without a price: unknown is not free."""
    price = prices.get(model)
    if price is None:
        return None
    total = usage.prompt_tokens * price.input + usage.completion_tokens * price.output
    return round(total / 1_000_000, 8)
