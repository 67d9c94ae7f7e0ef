"""Start and terminal events on a real stream: a publish whose acknowledgement was lost is sent
again under the same `Nats-Msg-Id`, and stored once."""

import uuid
from typing import Any

import nats
import pytest
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js import JetStreamContext

from llm_worker.publisher import PUBLISH_TRIES, JetStreamPublisher
from shared import stream, subjects
from shared.events import ReplyStart
from shared.settings import TokenwireSettings
from support.events import reply_end

pytestmark = pytest.mark.real


class LosesAcks:
    """A JetStream context whose first `lose` publishes are stored but never acknowledged (as
    for a worker that froze, or a reply lost on the way back)."""

    def __init__(self, js: JetStreamContext, lose: int) -> None:
        self.js, self.lose, self.sends = js, lose, 0

    async def publish(self, subject: str, payload: bytes, **kwargs: Any) -> Any:
        self.sends += 1
        ack = await self.js.publish(subject, payload, **kwargs)
        if self.sends <= self.lose:
            raise NatsTimeoutError
        return ack


async def stored(js: JetStreamContext, subject: str) -> int:
    info = await js.stream_info(subjects.STREAM, subjects_filter=subject)
    return (info.state.subjects or {}).get(subject, 0)


async def test_a_publish_whose_ack_was_lost_is_sent_again_and_stored_once(nats_url: str) -> None:
    await stream.prepare(TokenwireSettings(nats_url=nats_url), name="test")
    nc = await nats.connect(nats_url)
    try:
        js = nc.jetstream()
        sid = uuid.uuid4().hex
        flaky = LosesAcks(js, lose=PUBLISH_TRIES - 1)
        publisher = JetStreamPublisher(flaky)  # type: ignore[arg-type]
        await publisher.start(ReplyStart(session_id=sid, message_id="m1", attempt=1, model="m"))
        assert flaky.sends == PUBLISH_TRIES
        assert await stored(js, subjects.out_start(sid)) == 1

        end = reply_end(sid, requested_by="u")
        failing = LosesAcks(js, lose=PUBLISH_TRIES)
        with pytest.raises(NatsTimeoutError):  # every try timed out: the attempt fails
            await JetStreamPublisher(failing).end(end)  # type: ignore[arg-type]
        assert failing.sends == PUBLISH_TRIES
        assert await stored(js, subjects.out_end(sid)) == 1
    finally:
        await nc.close()
