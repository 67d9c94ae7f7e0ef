"""Build the worker app: the model server's client, Redis, the broker, the handlers."""

import os
import socket

from faststream import FastStream
from faststream.nats import NatsBroker
from pydantic import BaseModel
from redis.asyncio import Redis

from llm_worker import handlers
from llm_worker.cancels import CancelRegistry
from llm_worker.context import ContextStore
from llm_worker.coordination import Coordinator
from llm_worker.earlier_reader import EarlierReader
from llm_worker.metrics import WorkerMetrics
from llm_worker.prompts import SystemPrompts
from llm_worker.providers import Providers
from llm_worker.publisher import JetStreamPublisher, ReplyPublisher
from llm_worker.responder import Responder
from llm_worker.retrieval import Retrieval
from llm_worker.serving import Serving
from llm_worker.settings import WorkerSettings
from llm_worker.titling import Titler
from llm_worker.tool_runs import ToolRunner
from llm_worker.tools import Toolbox
from llm_worker.upstream import ModelServer
from shared import rpc, stream, subjects, telemetry
from shared.broker import LOGGER, make_broker
from shared.logs import dump_tasks_on_sigusr1
from shared.redis import redis_client

PERSISTENCE_TIMEOUT_S = 3.0
TITLES_DRAIN_S = 10.0
"""How long a stopping worker lets its title calls end (they are billed once stored)."""
"""How long a request to persistence (history, a session's prompt) may take."""


WORKER_ID = f"{socket.gethostname()}-{os.getpid()}"
"""Sent as `X-Tokenwire-Worker` with every model request, for the model server's logs."""


def model_servers(settings: WorkerSettings) -> Providers:
    """The models this worker serves, on their servers (OpenAI's API when only a key is set);
    local servers need no key.

    Its transport is httpx's own. aiohttp read a streamed chunk for less CPU (worker 265
    against 327 µs a paced token, through the openai SDK's `DefaultAioHttpClient`), but with
    it one model call in a CI run of the fault suite hung until its 60 s timeout; see
    docs/benchmarks.md."""

    def server(base_url: str | None, key: str | None) -> ModelServer:
        return ModelServer(
            base_url,
            key,
            timeout_s=settings.llm_timeout_s,
            max_retries=settings.llm_max_retries,
            headers={"X-Tokenwire-Worker": WORKER_ID},
        )

    return Providers.build(settings, server)


def fence_ttl_s(settings: WorkerSettings) -> int:
    """Longer than every delivery of one message can take, with a wide margin."""
    return max(24 * 3600, int(settings.worker_ack_wait_s * (settings.worker_max_deliver + 1) * 4))


def create_app(
    settings: WorkerSettings,
    client: ModelServer | None = None,
    publisher: ReplyPublisher | None = None,
    redis: Redis | None = None,
) -> FastStream:
    """The worker; `client`, `publisher` and `redis` replace its own in tests (and are then
    the caller's to close)."""
    tracing = telemetry.setup_tracing("llm-worker")
    metrics = WorkerMetrics()
    broker = make_broker(
        settings.nats_url,
        service="llm-worker",
        registry=metrics.registry,
        tracing=tracing,
        graceful_timeout=settings.drain_timeout_s,
        apply_types=False,  # see handlers.the_message
    )
    llm = Providers.one_server(settings, client) if client else model_servers(settings)
    own_redis = redis is None
    redis = redis or redis_client(settings.redis_url, timeout_s=5)
    responder = build_responder(settings, broker, llm, redis, metrics, publisher)
    handlers.register(broker, settings, responder, llm.ids())

    serving = Serving(redis, WORKER_ID, llm.ids())

    async def setup() -> None:
        dump_tasks_on_sigusr1()
        metrics.serve(settings.metrics_host, settings.metrics_port)
        await stream.prepare(settings, name="llm-worker")
        serving.start()

    async def close() -> None:
        await serving.stop()
        if responder.titles is not None:
            await responder.titles.drain(TITLES_DRAIN_S)
        if responder.asking.retrieval is not None:
            await responder.asking.retrieval.close()
        if responder.tools is not None:
            await responder.tools.close()
        await llm.close()
        if own_redis:
            await redis.aclose()
        telemetry.shutdown(tracing)

    return FastStream(broker, logger=LOGGER, on_startup=[setup], after_shutdown=[close])


def build_responder(
    settings: WorkerSettings,
    broker: NatsBroker,
    llm: Providers,
    redis: Redis,
    metrics: WorkerMetrics,
    publisher: ReplyPublisher | None,
) -> Responder:
    """The responder and what it reads and writes through: Redis, persistence, the stream."""
    publishers: list[ReplyPublisher] = [publisher] if publisher else []

    def get_publisher() -> ReplyPublisher:
        if not publishers:  # one JetStream context per process: it owns the async-ack inbox
            publishers.append(JetStreamPublisher(broker.connection.jetstream()))
        return publishers[0]

    async def ask(subject: str, request: BaseModel) -> bytes:
        answer = await broker.connection.request(
            subject, request.model_dump_json().encode(), timeout=PERSISTENCE_TIMEOUT_S
        )
        return answer.data

    async def history(request: rpc.HistoryRequest) -> rpc.HistoryPage:
        return rpc.HistoryPage.model_validate_json(await ask(subjects.SVC_HISTORY, request))

    async def session_prompt(session_id: str) -> str | None:
        data = await ask(subjects.SVC_SESSION_GET, rpc.SessionGet(session_id=session_id))
        reply = rpc.SessionReply.model_validate_json(data)
        if reply.error is not None and reply.error.code != "not_found":
            raise RuntimeError(f"session {session_id}: {reply.error.detail}")
        return reply.session.system_prompt if reply.session else None

    coordinator = Coordinator(redis, fence_ttl_s=fence_ttl_s(settings))
    responder = Responder(
        settings,
        llm,
        get_publisher,
        coordinator,
        ContextStore(
            redis, history, max_turns=settings.context_turns, ttl_s=settings.context_ttl_s
        ),
        SystemPrompts(redis, session_prompt, default=settings.system_prompt),
        CancelRegistry(),
        metrics,
    )
    if publisher is None:  # tests that replace the publisher have no stream to read
        # The connection is made later.
        responder.asking.earlier = EarlierReader(lambda: broker.connection.jetstream())
    titler = Titler(
        llm,
        get_publisher,
        coordinator,
        model=settings.title_model,
        daily_budget=settings.daily_token_budget,
        session_cap=settings.session_token_budget,
    )
    equip(responder, settings, redis, titler)
    return responder


def equip(responder: Responder, settings: WorkerSettings, redis: Redis, titler: Titler) -> None:
    """What replies may use beside their model, as configured: retrieval, titles, tools."""
    if settings.retrieval_url:
        responder.asking.retrieval = Retrieval(
            settings.retrieval_url, timeout_s=settings.retrieval_timeout_s
        )
    if settings.session_titles == "model":
        responder.titles = titler
    if toolbox := Toolbox.load(settings.tools, settings.tools_file):
        responder.tools = ToolRunner(
            toolbox,
            redis,
            timeout_s=settings.tool_timeout_s,
            max_steps=settings.tool_max_steps,
            ttl_s=fence_ttl_s(settings),
        )
