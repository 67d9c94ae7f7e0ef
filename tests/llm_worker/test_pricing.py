import pytest

from llm_worker.pricing import cost_usd
from llm_worker.settings import Price, WorkerSettings
from shared.events import Usage


def test_cost_is_per_million_tokens_and_unknown_models_have_none() -> None:
    prices = {"gpt-4o-mini": Price(input=0.15, output=0.6)}
    usage = Usage(prompt_tokens=1_000_000, completion_tokens=500_000, total_tokens=1_500_000)
    assert cost_usd(prices, "gpt-4o-mini", usage) == 0.45
    assert cost_usd(prices, "other", usage) is None


def test_prices_come_from_json_in_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TOKENWIRE_PRICES", '{"m": {"input": 1, "output": 2}}')
    monkeypatch.setenv("OPENAI_BASE_URL", "http://x")
    assert WorkerSettings().prices == {"m": Price(input=1, output=2)}
