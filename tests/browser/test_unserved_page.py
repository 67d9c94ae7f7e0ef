"""The chat page in headless Chromium when no worker serves the session's model: the reply's
place says the message waits, then shows the `no_worker` error with what would work."""

import json
import uuid
from collections.abc import Iterator

import pytest
from playwright.async_api import Browser

from support.system import System, system_with_own_nats

pytestmark = [pytest.mark.real, pytest.mark.e2e, pytest.mark.browser]
MODEL = f"lone-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module")
def system(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> Iterator[System]:
    with system_with_own_nats(
        tmp_path_factory.mktemp("unserved-page"),
        redis_url=redis_url,
        workers=0,
        common_env={"TOKENWIRE_MODELS": json.dumps([{"id": MODEL, "name": "tokenwire-fake"}])},
        gateway_env={"TOKENWIRE_UNSERVED_TIMEOUT_S": "3"},
    ) as running:
        yield running


async def test_a_message_no_worker_serves_shows_waiting_then_the_error(
    system: System, browser: Browser
) -> None:
    page = await (await browser.new_context()).new_page()
    await page.goto(system.gateway_url + "/")
    await page.click("#dev-signin")
    await page.wait_for_selector("#lobby:not([hidden])")
    await page.wait_for_function(  # the gateway has read that no worker serves the model
        """async () => {
             const answer = await fetch("/v1/models",
               {headers: {authorization: `Bearer ${state.token}`}});
             return (await answer.json()).models[0].workers === 0;
           }""",
        polling=200,
    )
    await page.click("#new-session")
    await page.wait_for_selector("#status.connected")
    await page.fill("#input", "Anyone there? [fake tokens=2]")
    await page.press("#input", "Enter")
    waiting = page.locator("li.assistant.waiting .text")
    await waiting.wait_for()
    assert await waiting.inner_text() == (
        f"Waiting for a worker: no worker serves the model {MODEL} now: "
        "the message waits for one for up to 3 s."
    )
    failed = page.locator("li.assistant.error:not(.waiting) .text")
    await failed.wait_for(timeout=15_000)
    text = await failed.inner_text()
    assert text.startswith(f"no worker took this message within 3 s: none serves the model {MODEL}")
    assert "/model" in text
    assert await page.locator("li.mine.failed").count() == 0  # it was stored, not refused
