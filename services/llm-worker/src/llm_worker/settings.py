"""Worker settings (`TOKENWIRE_*`, plus OpenAI's usual `OPENAI_API_KEY`/`OPENAI_BASE_URL`)."""

from pathlib import Path
from typing import Literal, Self

from pydantic import AliasChoices, Field, SecretStr, model_validator

from llm_worker.tools import ToolSpec
from shared.models import Price
from shared.settings import TokenwireSettings

__all__ = ["Price", "WorkerSettings"]


class WorkerSettings(TokenwireSettings):
    llm_timeout_s: float = Field(default=60.0, gt=0)
    """How long a model server may stay silent (to answer, or between chunks)."""
    llm_max_retries: int = Field(default=2, ge=0)
    """Retries of 408, 409, 429, 5xx, timeouts and connection errors before the first token,
    with exponential backoff and jitter, honouring `Retry-After` (see `llm_worker.upstream`)."""
    system_prompt: str = "You are a helpful assistant."
    """The system prompt of a session that has none of its own."""
    context_turns: int = Field(default=40, ge=0)
    """Recent turns kept per session in Redis (and read from history on a cache miss)."""
    context_ttl_s: int = Field(default=24 * 3600, ge=60)
    """How long a session's cached turns live without activity."""
    redis_url: str = "redis://127.0.0.1:6379/0"
    """Redis or Valkey: reply queues, fences, budgets, context."""
    worker_concurrency: int = Field(default=512, ge=1)
    """Replies one worker holds at once. A reply waiting on the model costs memory, not CPU,
    so the default lets two workers take a burst of a thousand messages at once; the model
    server is protected by the adaptive limit on calls (`upstream_limit`), not by this."""
    worker_fetchers: int = Field(default=32, ge=1, le=64)
    """Pull loops on the `llm-workers` consumer, sharing `worker_concurrency` (a burst of
    messages is fetched this many at a time). Each holds one waiting pull request: all
    workers together must stay within the consumer's 512 (NATS's `max_waiting`)."""
    worker_coalesce_ms: float = Field(default=50.0, ge=0)
    """Deltas of one reply closer together than this share one token event (0: one event per
    delta); a delta after a quiet spell of this long goes out at once. 50 ms: 20 updates a
    second are more than a reader can tell apart, and a model streaming 50 tokens a second
    then costs every process after the worker a token event per 2 or 3 tokens."""
    drain_timeout_s: float = Field(default=30.0, ge=0)
    """On SIGTERM: how long held replies may finish before they are handed back."""
    worker_models: str = ""
    """The ids of the catalogue's models this worker serves, comma-separated (empty: all of
    them): it takes messages from those models' queues only."""
    retrieval_url: str | None = None
    """The retrieval hook (see `llm_worker.retrieval`); none: replies retrieve nothing."""
    retrieval_timeout_s: float = Field(default=3.0, gt=0)
    """How long the hook may take; past it the reply goes on without (and says so)."""
    tools: list[ToolSpec] = Field(default_factory=list)
    """The tools models may call (JSON list; see `llm_worker.tools`); none: no tools."""
    tools_file: Path | None = None
    """A JSON file with the tools, read when `TOKENWIRE_TOOLS` is not set."""
    tool_max_steps: int = Field(default=4, ge=1, le=32)
    """Model calls of a reply that may ask for tools; the call after the last of them is
    offered none, so the model answers with what it has."""
    tool_timeout_s: float = Field(default=15.0, gt=0)
    """How long a tool call may take, for tools that set no `timeout_s`."""
    session_titles: Literal["model", "message"] = "model"
    """How an untitled session is titled: `model` asks the model for a title once its first
    reply ends (a short call, billed like any); `message` keeps the first message's first
    line, which every untitled session has until then."""
    title_model: str | None = None
    """The catalogue id of the model that writes titles (default: the one that answered),
    e.g. a small, cheap one; this worker must serve it."""
    prices: dict[str, Price] = Field(default_factory=dict)
    """Per model name, for models the catalogue gives no `price`, e.g.
    `{"gpt-4o-mini": {"input": 0.15, "output": 0.6}}` (JSON in the env)."""
    openai_api_key: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("OPENAI_API_KEY", "TOKENWIRE_OPENAI_API_KEY")
    )
    """The key of the model server (OpenAI's, or any that asks for one)."""
    openai_base_url: str | None = Field(
        default=None, validation_alias=AliasChoices("OPENAI_BASE_URL", "TOKENWIRE_OPENAI_BASE_URL")
    )
    """The model server's base URL (default: OpenAI's API)."""

    @model_validator(mode="after")
    def _needs_a_model_server(self) -> Self:
        own_servers = self.models_file is not None or (
            self.models and all(m.base_url for m in self.models)
        )
        if self.openai_api_key is None and self.openai_base_url is None and not own_servers:
            raise ValueError(
                "set OPENAI_API_KEY (OpenAI) or OPENAI_BASE_URL (any OpenAI-compatible server)"
            )
        return self
