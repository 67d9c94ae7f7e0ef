"""A tiny WebSocket client: `python scripts/chat.py URL TOKEN SESSION_ID "message"`.

Sends one message and prints the reply as it streams in.
"""

import asyncio
import json
import sys
import uuid

import websockets


async def chat(url: str, token: str, session_id: str, text: str) -> None:
    ws_url = url.replace("http", "ws", 1) + f"/v1/sessions/{session_id}/ws"
    async with websockets.connect(
        ws_url, subprotocols=["tokenwire.v1"],  # type: ignore[list-item]
        additional_headers={"Authorization": f"Bearer {token}"},
    ) as ws:
        ready = json.loads(await ws.recv())
        print(f"[connected as {ready['participant']}, session head seq {ready['last_seq']}]")
        await ws.send(json.dumps({"type": "message", "message_id": uuid.uuid4().hex,
                                  "content": text}))
        async for raw in ws:
            frame = json.loads(raw)
            match frame["type"]:
                case "stream_token":
                    print(frame["text"], end="", flush=True)
                case "stream_end":
                    print(f"\n[{frame['finish_reason']}, usage {frame['usage']}]")
                    return
                case "stream_error" | "error":
                    print(f"\n[{frame['type']}: {frame}]")
                    return


if __name__ == "__main__":
    if len(sys.argv) != 5:
        sys.exit(__doc__)
    asyncio.run(chat(*sys.argv[1:5]))
