"""The settings base every service extends: environment variables with the `TOKENWIRE_` prefix.

Settings are read once, in a service's entry point, and passed in; nothing imports a global.
"""

import json
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, TypeAdapter
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.models import Catalogue, ModelSpec

_PLACEHOLDERS = (
    "changeme",
    "change-me",
    "change_me",
    "example",
    "placeholder",
    "secret",
    "password",
    "xxxxxx",
    "default",
    "dummy",
)


def placeholder(secret: SecretStr | str | None) -> bool:
    """Whether a secret looks like one copied from documentation rather than generated."""
    if secret is None:
        return False
    value = secret.get_secret_value() if isinstance(secret, SecretStr) else secret
    lowered = value.lower()
    return len(set(value)) < 8 or any(word in lowered for word in _PLACEHOLDERS)


class TokenwireSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TOKENWIRE_", extra="ignore", frozen=True)

    env: Literal["production", "development"] = "production"
    """`production` (the default) refuses dev auth and secrets that look like placeholders;
    `make run` and the tests run in `development`."""

    nats_url: str = "nats://127.0.0.1:4222"
    """One server, or several separated by commas (a cluster's nodes: any one will do)."""
    nats_connect_timeout_s: float = Field(default=30.0, gt=0)
    """How long a starting service keeps trying to reach NATS before it gives up."""
    stream_replicas: int = Field(default=1, ge=1, le=5)
    """Copies of the `CHAT` stream (3 on a three-node NATS cluster)."""
    stream_max_age_s: float = Field(default=7 * 24 * 3600, gt=0)
    """Retention of the `CHAT` stream: how far back a client can resume with `last_seq`."""
    worker_ack_wait_s: float = Field(default=30.0, gt=0)
    """Without an ack or in-progress signal for this long, a user message goes to another worker."""
    worker_max_deliver: int = Field(default=5, ge=1)
    """Deliveries of one user message before it is given up (each is a new reply attempt)."""
    daily_token_budget: int = Field(default=0, ge=0)
    """Tokens (prompt + completion) one user may spend per UTC day; 0 means no limit. Workers
    meter it while replies stream; gateways refuse messages once it is spent. A token's
    `tokenwire_daily_tokens` claim, and an administrator's override, take its place."""
    session_token_budget: int = Field(default=0, ge=0)
    """Tokens one session may spend in all (every user's replies in it); 0 means no cap."""
    llm_model: str = "tokenwire-fake"
    """The model when `TOKENWIRE_MODELS` lists none: its name as the model server knows it."""
    llm_max_tokens: int = Field(default=1024, ge=1)
    """A reply's length when neither its model nor its session sets one: no reply runs
    unbounded."""
    max_context_tokens: int = Field(default=8000, ge=256)
    """Prompt budget when a model names no context window: the oldest turns are dropped until
    the system prompt and the turns fit."""
    models: list[ModelSpec] = Field(default_factory=list)
    """The catalogue (JSON list; the first is the default); see `shared.models`."""
    models_file: Path | None = None
    """A JSON file with the catalogue, read when `TOKENWIRE_MODELS` is not set."""
    metrics_port: int = Field(default=0, ge=0, le=65535)
    """Workers and persistence serve Prometheus `/metrics` on this port (0: not served); the
    gateway serves it on its own port."""
    metrics_host: str = "127.0.0.1"
    """Where workers and persistence serve `/metrics` (with `TOKENWIRE_METRICS_PORT`)."""
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    """The least severe log records written."""
    log_json: bool = False
    """One JSON object per log line (for log collectors), instead of text."""


def catalogue(settings: TokenwireSettings) -> Catalogue:
    """The deployment's models: `TOKENWIRE_MODELS`, `TOKENWIRE_MODELS_FILE`, or the one
    `TOKENWIRE_LLM_MODEL`. Raises `ValueError` for a file that is no list of models."""
    specs = settings.models
    if not specs and settings.models_file is not None:
        specs = _SPECS.validate_python(json.loads(settings.models_file.read_text()))
    return Catalogue.of(
        specs,
        model=settings.llm_model,
        max_tokens=settings.llm_max_tokens,
        prompt_tokens=settings.max_context_tokens,
    )


_SPECS: TypeAdapter[list[ModelSpec]] = TypeAdapter(list[ModelSpec])


def nats_servers(url: str) -> list[str]:
    """The servers in `TOKENWIRE_NATS_URL` (comma-separated)."""
    return [part.strip() for part in url.split(",") if part.strip()]
