"""The `/ops` dashboard in headless Chromium, against real processes: it goes live, and its
numbers move with traffic. A screenshot is kept in `test-artifacts/`."""

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.async_api import Browser

from gateway.auth import mint_token
from support.client import connect, dev_user, frames_until_end, new_session, next_frame
from support.system import System, system_with_own_nats

pytestmark = [pytest.mark.real, pytest.mark.e2e, pytest.mark.browser]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


@pytest.fixture(scope="module")
def system(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> Iterator[System]:
    with system_with_own_nats(
        tmp_path_factory.mktemp("ops"),
        redis_url=redis_url,
        workers=1,
        gateway_env={"TOKENWIRE_BROKER_VIEW_EVERY_S": "0.5"},
    ) as running:
        yield running


async def test_the_ops_page_goes_live_and_follows_traffic(system: System, browser: Browser) -> None:
    page = await browser.new_page(viewport={"width": 1280, "height": 720})
    await page.goto(f"{system.admin_url}/ops")  # no token needed there
    await page.wait_for_selector("#status.live", timeout=10_000)
    async with httpx.AsyncClient(base_url=system.gateway_url) as http:
        alice = await dev_user(http)
        sid = await new_session(http, alice)
    async with await connect(system.ws_url, sid, alice) as ws:
        await next_frame(ws)
        for i in range(3):
            await ws.send(
                json.dumps(
                    {
                        "type": "message",
                        "message_id": f"m{i}",
                        "content": "[fake tokens=10 delay_ms=5]",
                    }
                )
            )
            await frames_until_end(ws)
        await page.wait_for_function(
            "document.getElementById('tokens').textContent.startsWith('30 ')", timeout=10_000
        )
        assert await page.text_content("#connections") == "1"
    assert (await page.text_content("#ttft") or "").endswith(" ms")
    assert await page.text_content("#replies") == "3"
    ARTIFACTS.mkdir(exist_ok=True)
    await page.screenshot(path=str(ARTIFACTS / "ops.png"), full_page=True)


async def test_on_the_public_port_the_ops_page_asks_for_an_administrator_s_token(
    system: System, browser: Browser
) -> None:
    page = await browser.new_page()
    await page.goto(f"{system.gateway_url}/ops")
    await page.wait_for_selector("#signin:not([hidden])", timeout=10_000)
    assert "token is needed" in (await page.text_content("#status") or "")
    async with httpx.AsyncClient(base_url=system.gateway_url) as http:
        member = await dev_user(http)
    await page.fill("#admin-token", member.token)
    await page.click("#signin button")
    await page.wait_for_function(
        "document.getElementById('status').textContent.includes('not an administrator')",
        timeout=10_000,
    )
    await page.fill("#admin-token", mint_token("ops", system.secret, 600, role="admin"))
    await page.click("#signin button")
    await page.wait_for_selector("#status.live", timeout=10_000)
    assert await page.is_hidden("#signin")
