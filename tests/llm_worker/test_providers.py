"""The models a worker serves: their servers, keys and prices, and what a reply asks them."""

import json
from typing import Any

import pytest

from llm_worker.context import Turn
from llm_worker.model_call import TOO_LONG, prepare
from llm_worker.providers import Providers, ServerFactory
from llm_worker.settings import WorkerSettings
from llm_worker.upstream import ModelServer
from shared.events import UserMessage
from shared.models import Price

MODELS: list[dict[str, Any]] = [
    {"name": "gpt-4o-mini", "api_key_env": "TW_TEST_OPENAI_KEY", "base_url": "https://api/v1"},
    {"name": "gpt-4o", "api_key_env": "TW_TEST_OPENAI_KEY", "base_url": "https://api/v1"},
    {
        "id": "local",
        "name": "llama3.1:8b",
        "base_url": "http://127.0.0.1:9/v1",
        "price": {"input": 0, "output": 0},
        "context_tokens": 2048,
        "max_tokens": 512,
    },
]


def settings(**more: object) -> WorkerSettings:
    return WorkerSettings.model_validate({"models": MODELS, **more})


def made_servers(seen: list[tuple[str | None, str | None]]) -> ServerFactory:
    def server(base_url: str | None, key: str | None) -> ModelServer:
        seen.append((base_url, key))
        return ModelServer(base_url, key, timeout_s=1, max_retries=0)

    return server


def test_models_on_one_server_share_its_client(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TW_TEST_OPENAI_KEY", "sk-test-key-1234")
    seen: list[tuple[str | None, str | None]] = []
    providers = Providers.build(settings(), made_servers(seen))
    assert providers.ids() == ["gpt-4o-mini", "gpt-4o", "local"]
    assert seen == [("https://api/v1", "sk-test-key-1234"), ("http://127.0.0.1:9/v1", None)]
    mini, big = providers.of(None), providers.of("gpt-4o")
    assert mini is not None
    assert big is not None
    assert mini.server is big.server
    assert providers.prices["llama3.1:8b"] == Price(input=0, output=0)


def test_a_worker_serves_the_models_it_names(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[tuple[str | None, str | None]] = []
    providers = Providers.build(settings(worker_models="local"), made_servers(seen))
    assert providers.ids() == ["local"]
    assert providers.of(None) is None  # the default model is another pool's
    assert seen == [("http://127.0.0.1:9/v1", None)]  # no key read for models it does not serve
    with pytest.raises(ValueError, match=r"names \['gpt'\], not in the catalogue"):
        Providers.build(settings(worker_models="local,gpt"), made_servers(seen))


def test_a_key_variable_that_is_not_set_stops_the_worker(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TW_TEST_OPENAI_KEY", raising=False)
    with pytest.raises(ValueError, match="TW_TEST_OPENAI_KEY is not set"):
        Providers.build(settings(), made_servers([]))


def test_a_catalogue_of_own_servers_needs_no_openai_settings() -> None:
    local = [m for m in MODELS if m.get("id") == "local"]
    assert WorkerSettings.model_validate({"models": local}).openai_base_url is None
    with pytest.raises(ValueError, match="OPENAI_API_KEY"):
        WorkerSettings.model_validate({"models": [{"name": "x"}]})


def message(content: str, **params: object) -> UserMessage:
    return UserMessage.model_validate(
        {"session_id": "s", "message_id": "m", "participant": "u", "content": content, **params}
    )


def test_a_reply_asks_with_the_sessions_parameters_and_the_models_window(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TW_TEST_OPENAI_KEY", "sk-test-key-1234")
    providers = Providers.build(settings(), made_servers([]))
    local = providers.of("local")
    assert local is not None
    job = prepare(message("hi", model="local", temperature=0.2), 1, local, "Be brief.", [])
    assert not isinstance(job, str)
    assert (job.model, job.max_tokens, job.temperature) == ("llama3.1:8b", 512, 0.2)
    job = prepare(message("hi", model="local", max_tokens=100), 1, local, "", [])
    assert not isinstance(job, str)
    assert (job.max_tokens, job.temperature) == (100, None)
    # The window is 2,048 tokens: 512 for the reply leave 1,536 for the prompt.
    turns = [Turn(f"t{i}", "user", "word " * 300) for i in range(8)]
    job = prepare(message("hi", model="local"), 1, local, "", turns)
    assert not isinstance(job, str)
    assert 2 <= len(job.prompt) - 2 <= 5  # the newest turns that fit
    assert prepare(message("word " * 2000, model="local"), 1, local, "", []) == TOO_LONG


def test_prices_in_the_catalogue_come_before_the_table(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TW_TEST_OPENAI_KEY", "sk-test-key-1234")
    table = {"gpt-4o": {"input": 2.5, "output": 10}, "llama3.1:8b": {"input": 9, "output": 9}}
    providers = Providers.build(settings(prices=json.loads(json.dumps(table))), made_servers([]))
    assert providers.prices["gpt-4o"] == Price(input=2.5, output=10)
    assert providers.prices["llama3.1:8b"] == Price(input=0, output=0)
