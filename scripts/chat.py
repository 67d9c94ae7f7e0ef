"""A tiny WebSocket client: `uv run python scripts/chat.py "Hello!"`.

In dev auth mode it mints a token and opens a new session by itself; give `--token` and
`--session` to talk in an existing one. Prints the reply as it streams in.
"""

import argparse
import asyncio
import json
import uuid

import httpx
import websockets


async def chat(url: str, token: str | None, session_id: str | None, text: str) -> None:
    async with httpx.AsyncClient(base_url=url) as http:
        if token is None:
            token = (await http.post("/v1/auth/dev-token")).raise_for_status().json()["token"]
        auth = {"Authorization": f"Bearer {token}"}
        if session_id is None:
            created = await http.post("/v1/sessions", headers=auth)
            session_id = created.raise_for_status().json()["session_id"]
    ws_url = url.replace("http", "ws", 1) + f"/v1/sessions/{session_id}/ws"
    async with websockets.connect(
        ws_url,
        subprotocols=[websockets.Subprotocol("tokenwire.v1")],
        additional_headers=auth,
    ) as ws:
        ready = json.loads(await ws.recv())
        print(f"[session {session_id} as {ready['participant']}]")
        frame = {"type": "message", "message_id": uuid.uuid4().hex, "content": text}
        await ws.send(json.dumps(frame))
        async for raw in ws:
            event = json.loads(raw)
            match event["type"]:
                case "stream_token":
                    print(event["text"], end="", flush=True)
                case "stream_end":
                    print(f"\n[{event['finish_reason']}, usage {event['usage']}]")
                    return
                case "stream_error" | "error":
                    print(f"\n[{event['type']}: {event}]")
                    return


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("message")
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--token")
    parser.add_argument("--session")
    args = parser.parse_args()
    asyncio.run(chat(args.url, args.token, args.session, args.message))


if __name__ == "__main__":
    main()
