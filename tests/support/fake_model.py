"""What the fake model (a real process in end-to-end tests) says about its calls."""

import asyncio
import json
from typing import Any

import httpx

from support.system import Process, System


async def fake_streams(system: System) -> list[dict[str, Any]]:
    """Every completion the fake model streamed (see `fake_llm.main.StreamRecord`)."""
    async with httpx.AsyncClient() as client:
        records: list[dict[str, Any]] = (
            await client.get(f"{system.llm_url}/v1/_fake/streams")
        ).json()
        return records


async def streaming_worker(system: System, planned: int) -> Process:
    """The worker process streaming the (only running) reply of `planned` deltas."""
    for _ in range(100):
        live = [r for r in await fake_streams(system) if r["planned"] == planned and not r["ended"]]
        if live:
            return system.process(int(live[-1]["worker"].rsplit("-", 1)[1]))
        await asyncio.sleep(0.05)
    raise AssertionError("no stream running")


async def fake_tool_calls(system: System) -> list[dict[str, Any]]:
    """Every call the fake model's tools got (see `fake_llm.tool_script.ToolDesk`)."""
    async with httpx.AsyncClient() as client:
        calls: list[dict[str, Any]] = (
            await client.get(f"{system.llm_url}/v1/_fake/tool_calls")
        ).json()
        return calls


TOOL_PARAMETERS = {
    "type": "object",
    "properties": {
        "query": {"type": "string"},
        "delay_ms": {"type": "integer"},
        "fail": {"type": "boolean"},
    },
    "required": ["query"],
}


def fake_tools(llm_url: str, secret_env: str | None = None) -> str:
    """`TOKENWIRE_TOOLS` for the fake model's desk: a lookup (no side effects) and an order
    (side effects)."""
    return json.dumps(
        [
            {
                "name": name,
                "description": f"The {name} tool.",
                "parameters": TOOL_PARAMETERS,
                "url": f"{llm_url}/v1/_fake/tools/{name}",
                "side_effects": name == "order",
                "secret_env": secret_env,
            }
            for name in ("lookup", "order")
        ]
    )
