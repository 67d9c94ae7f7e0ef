"""Worker settings (`TOKENWIRE_*`, plus the OpenAI SDK's own `OPENAI_API_KEY`/`OPENAI_BASE_URL`)."""

from typing import Self

from pydantic import AliasChoices, Field, SecretStr, model_validator

from shared.settings import TokenwireSettings


class WorkerSettings(TokenwireSettings):
    llm_model: str = "tokenwire-fake"
    llm_max_tokens: int = Field(default=1024, ge=1)
    """Sent as `max_tokens` on every request: no reply runs unbounded."""
    llm_timeout_s: float = Field(default=60.0, gt=0)
    llm_max_retries: int = Field(default=2, ge=0)
    """Retries of the SDK itself before any token was streamed (connection errors, 429, 5xx)."""
    system_prompt: str = "You are a helpful assistant."
    worker_concurrency: int = Field(default=64, ge=1)
    """Replies one worker streams at once."""
    openai_api_key: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("OPENAI_API_KEY", "TOKENWIRE_OPENAI_API_KEY")
    )
    openai_base_url: str | None = Field(
        default=None, validation_alias=AliasChoices("OPENAI_BASE_URL", "TOKENWIRE_OPENAI_BASE_URL")
    )

    @model_validator(mode="after")
    def _needs_a_model_server(self) -> Self:
        if self.openai_api_key is None and self.openai_base_url is None:
            raise ValueError(
                "set OPENAI_API_KEY (OpenAI) or OPENAI_BASE_URL (any OpenAI-compatible server)"
            )
        return self
