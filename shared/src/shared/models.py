"""The models a deployment offers: its catalogue, shared by every service.

`TOKENWIRE_MODELS` (JSON) lists them; the first is the default. Without it the catalogue is one
model, `TOKENWIRE_LLM_MODEL` on the worker's `OPENAI_BASE_URL`/`OPENAI_API_KEY`, as before there
was a catalogue. A model's `id` is what sessions and clients name; its `name` is what the model
server is asked for; each model's messages have their own subject and queue (`pool`), so that
each model's workers scale on their own queue depth.
"""

import re
from dataclasses import dataclass
from typing import Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

MODEL_ID_PATTERN = r"^[A-Za-z0-9_-]{1,48}$"
"""A model id is one NATS subject token, and part of a consumer's name."""
MAX_TEMPERATURE = 2.0


class Price(BaseModel):
    """US dollars per million tokens."""

    model_config = ConfigDict(frozen=True)

    input: float = Field(ge=0)
    output: float = Field(ge=0)


class ModelSpec(BaseModel):
    """One model of the catalogue. `context_tokens` and `max_tokens` left out take the
    deployment's `TOKENWIRE_MAX_CONTEXT_TOKENS` + `TOKENWIRE_LLM_MAX_TOKENS` and
    `TOKENWIRE_LLM_MAX_TOKENS`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = Field(default="", pattern=r"^$|" + MODEL_ID_PATTERN)
    """Defaults to `name` with every character a subject token cannot hold replaced by `-`."""
    name: str = Field(min_length=1, max_length=200)
    label: str = Field(default="", max_length=100)
    base_url: str | None = None
    """Its OpenAI-compatible server; None: the worker's `OPENAI_BASE_URL` (or OpenAI's API)."""
    api_key_env: str | None = Field(default=None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    """The environment variable holding its key; None: `OPENAI_API_KEY`. Never the key itself."""
    price: Price | None = None
    context_tokens: int | None = Field(default=None, ge=512)
    """Its context window: prompt and reply together."""
    max_tokens: int | None = Field(default=None, ge=1)
    """A reply's length when its session sets none; a session may set up to the window less
    256 tokens of prompt."""

    @model_validator(mode="after")
    def _an_id(self) -> Self:
        if not self.id:
            object.__setattr__(self, "id", slug(self.name))
        return self


def slug(name: str) -> str:
    """`llama3.1:8b` → `llama3-1-8b`: a name as a subject token."""
    return re.sub(r"[^A-Za-z0-9_-]+", "-", name).strip("-")[:48] or "model"


@dataclass(frozen=True, slots=True)
class Model:
    """A catalogue entry with every default applied."""

    id: str
    name: str
    label: str
    base_url: str | None
    api_key_env: str | None
    price: Price | None
    context_tokens: int
    max_tokens: int

    def prompt_budget(self, max_tokens: int) -> int:
        return max(self.context_tokens - max_tokens, 256)


class Catalogue:
    """The configured models, the first the default; ids are unique."""

    def __init__(self, models: list[Model]) -> None:
        if not models:
            raise ValueError("the catalogue needs at least one model")
        ids = [m.id for m in models]
        if len(set(ids)) != len(ids):
            raise ValueError(f"model ids must be unique: {ids}")
        self.models = tuple(models)
        self.default = models[0]
        self._by_id = {m.id: m for m in models}

    @classmethod
    def of(
        cls, specs: list[ModelSpec], *, model: str, max_tokens: int, prompt_tokens: int
    ) -> "Catalogue":
        """`specs`, or the one model `model` when there are none; `max_tokens` and
        `prompt_tokens` fill what a spec leaves out."""
        return cls(
            [_resolved(s, max_tokens, prompt_tokens) for s in specs or [ModelSpec(name=model)]]
        )

    def get(self, model_id: str | None) -> Model | None:
        """The model `model_id` names (None: the default); None when there is no such model."""
        return self.default if model_id is None else self._by_id.get(model_id)

    def pool(self, model_id: str | None) -> str:
        """The subject suffix of the model's messages: "" for the default model (its messages
        are on `chat.<sid>.in`, its workers' consumer is `llm-workers`)."""
        model = self.get(model_id)
        return "" if model is None or model is self.default else model.id

    def ids(self) -> list[str]:
        return [m.id for m in self.models]

    def check(
        self, model_id: str | None, temperature: float | None, max_tokens: int | None
    ) -> str | None:
        """Why a session's model and parameters cannot be used; None when they can."""
        model = self.get(model_id)
        if model is None:
            return f"no model {model_id!r}; the models are: {', '.join(self.ids())}"
        if temperature is not None and not 0 <= temperature <= MAX_TEMPERATURE:
            return f"temperature must be between 0 and {MAX_TEMPERATURE:g}"
        if max_tokens is not None and not 1 <= max_tokens <= model.context_tokens - 256:
            return f"max_tokens must be between 1 and {model.context_tokens - 256} for {model.id}"
        return None


def _resolved(spec: ModelSpec, max_tokens: int, prompt_tokens: int) -> Model:
    reply = spec.max_tokens or max_tokens
    return Model(
        id=spec.id,
        name=spec.name,
        label=spec.label or spec.name,
        base_url=spec.base_url,
        api_key_env=spec.api_key_env,
        price=spec.price,
        context_tokens=spec.context_tokens or prompt_tokens + reply,
        max_tokens=reply,
    )
