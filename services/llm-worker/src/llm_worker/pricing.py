"""Cost of a reply from the per-model price table (US dollars per million tokens)."""

from collections.abc import Mapping

from shared.events import Usage
from shared.models import Price


def cost_usd(prices: Mapping[str, Price], model: str, usage: Usage) -> float | None:
    """None for a model without a price: unknown is not free."""
    price = prices.get(model)
    if price is None:
        return None
    total = usage.prompt_tokens * price.input + usage.completion_tokens * price.output
    return round(total / 1_000_000, 8)
