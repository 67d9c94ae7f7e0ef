"""The models a worker serves, each with its model server, token counter and price.

Models on the same server with the same key share one `ModelServer` (one connection pool).
A model's key is read from the environment variable its catalogue entry names
(`api_key_env`), else `OPENAI_API_KEY`; its server is its `base_url`, else `OPENAI_BASE_URL`.
"""

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from llm_worker.settings import WorkerSettings
from llm_worker.tokens import TokenCounter
from llm_worker.upstream import ModelServer
from shared.models import Catalogue, Model, Price
from shared.settings import catalogue

ServerFactory = Callable[[str | None, str | None], ModelServer]
"""(base URL, key) → a model server."""


@dataclass(frozen=True, slots=True)
class Served:
    model: Model
    server: ModelServer
    counter: TokenCounter


class Providers:
    """The models this worker answers for: the catalogue's, or those `TOKENWIRE_WORKER_MODELS`
    names."""

    def __init__(
        self, models: Catalogue, served: Mapping[str, Served], prices: Mapping[str, Price]
    ):
        self.catalogue = models
        self._served = dict(served)
        self.prices = dict(prices)
        """Per model name: the catalogue's prices, else `TOKENWIRE_PRICES`."""

    @classmethod
    def build(cls, settings: WorkerSettings, server: ServerFactory) -> "Providers":
        """Raises `ValueError` when `TOKENWIRE_WORKER_MODELS` names a model the catalogue lacks
        or a model's key variable is not set."""
        models = catalogue(settings)
        servers: dict[tuple[str | None, str | None], ModelServer] = {}
        served: dict[str, Served] = {}
        for model in _chosen(models, settings.worker_models):
            where = (model.base_url or settings.openai_base_url, _key(model, settings))
            made = servers.get(where)
            if made is None:
                made = servers[where] = server(*where)
            served[model.id] = Served(model, made, TokenCounter(model.name))
        return cls(models, served, _prices(models, settings.prices))

    @classmethod
    def one_server(cls, settings: WorkerSettings, server: ModelServer) -> "Providers":
        """Every model of the catalogue on `server` (tests)."""
        return cls.build(settings.model_copy(update={"worker_models": ""}), lambda _u, _k: server)

    def of(self, model_id: str | None) -> Served | None:
        """The model a message names (None: the default), if this worker serves it."""
        model = self.catalogue.get(model_id)
        return None if model is None else self._served.get(model.id)

    def ids(self) -> list[str]:
        return list(self._served)

    async def close(self) -> None:
        for server in {id(s.server): s.server for s in self._served.values()}.values():
            await server.close()


def _chosen(models: Catalogue, names: str) -> list[Model]:
    wanted = [name.strip() for name in names.split(",") if name.strip()]
    if not wanted:
        return list(models.models)
    unknown = [name for name in wanted if models.get(name) is None]
    if unknown:
        raise ValueError(
            f"TOKENWIRE_WORKER_MODELS names {unknown}, not in the catalogue: {models.ids()}"
        )
    return [m for m in models.models if m.id in wanted]


def _key(model: Model, settings: WorkerSettings) -> str | None:
    if model.api_key_env is None:
        return settings.openai_api_key.get_secret_value() if settings.openai_api_key else None
    key = os.environ.get(model.api_key_env)
    if not key:
        raise ValueError(f"model {model.id}: its key variable {model.api_key_env} is not set")
    return key


def _prices(models: Catalogue, table: Mapping[str, Price]) -> dict[str, Price]:
    return {**table, **{m.name: m.price for m in models.models if m.price is not None}}
