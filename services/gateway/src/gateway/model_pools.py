"""Which models have a worker now, as the workers say (`llm_worker.serving`), read every few
seconds. A message for a model that no worker serves, while another model's workers are
running, is refused with what would work; when no worker at all is heard from (a deployment
starting, an outage), messages are stored and wait (`waiting`), for a while
(`gateway.unserved`)."""

import asyncio
import logging
import time

from redis.asyncio import Redis
from redis.exceptions import RedisError

from gateway.refusal import Refusal
from shared import keys
from shared.models import Catalogue, Model

log = logging.getLogger(__name__)


class ModelPools:
    def __init__(
        self,
        redis: Redis,
        models: Catalogue,
        *,
        absent_s: float = keys.SERVING_ABSENT_S,
        refresh_s: float = 5.0,
        recheck_s: float = 1.0,
    ) -> None:
        self._redis = redis
        self._models = models
        self._absent_s = absent_s
        self._refresh_s = refresh_s
        self._recheck_s = recheck_s
        self._read_at = float("-inf")
        self.workers: dict[str, int] = {}
        """Per model id, the workers heard from within `absent_s` (empty: not read yet)."""

    async def refresh(self) -> None:
        """Forget workers not heard from for `absent_s`, and count the others."""
        self._read_at = time.monotonic()
        since = time.time() - self._absent_s
        ids = self._models.ids()
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                for model in ids:
                    pipe.zremrangebyscore(keys.serving(model), "-inf", since)
                    pipe.zcard(keys.serving(model))
                answers = await pipe.execute()
        except RedisError as exc:
            log.debug("model pools not refreshed: %s", exc)
            return
        self.workers = dict(zip(ids, answers[1::2], strict=True))

    async def refresh_forever(self) -> None:
        while True:
            await self.refresh()
            await asyncio.sleep(self._refresh_s)

    async def recheck(self, model_id: str | None) -> None:
        """Read again now when `model_id`'s model reads as unserved (or nothing was read) and
        the last read is `recheck_s` old: a worker that just started is seen at once, and a
        burst of messages while none runs reads once a second."""
        model = self._model(model_id)
        if self.workers.get(model.id, 0) > 0:
            return
        if time.monotonic() - self._read_at >= self._recheck_s:
            await self.refresh()

    def refusal(self, model_id: str | None) -> Refusal | None:
        """Why a message for `model_id` (None: the default) is refused now; None when it is
        served, or when no worker at all is heard from."""
        model = self._model(model_id)
        if not any(self.workers.values()) or self.workers.get(model.id, 0) > 0:
            return None
        served = ", ".join(m for m, n in self.workers.items() if n > 0)
        detail = (
            f"no worker serves the model {model.id} now; switch to one that is served "
            f"(/model {served.split(', ')[0]}): {served}"
        )
        return Refusal("unavailable", detail, 30.0)

    def waiting(self, model_id: str | None) -> str | None:
        """The id of `model_id`'s model (None: the default) when no worker serves it now, as
        read (None when served, or not read yet)."""
        model = self._model(model_id)
        if not self.workers or self.workers.get(model.id, 0) > 0:
            return None
        return model.id

    def _model(self, model_id: str | None) -> Model:
        return self._models.get(model_id) or self._models.default
