"""The baseline: the single-process design tokenwire replaces. One FastAPI WebSocket endpoint
calls the model through the `openai` SDK and forwards each delta straight to its socket.

`python bench/baseline.py PORT MODEL_BASE_URL`
"""

import json
import sys

import uvicorn
from fastapi import FastAPI, WebSocket, WebSocketDisconnect
from openai import AsyncOpenAI


def create_app(model_url: str) -> FastAPI:
    app = FastAPI()
    client = AsyncOpenAI(api_key="unused", base_url=model_url, max_retries=0)

    @app.websocket("/ws")
    async def chat(ws: WebSocket) -> None:
        await ws.accept()
        try:
            while True:
                content = json.loads(await ws.receive_text())["content"]
                stream = await client.chat.completions.create(
                    model="tokenwire-fake",
                    messages=[{"role": "user", "content": content}],
                    max_tokens=1024,
                    stream=True,
                    stream_options={"include_usage": True},
                )
                text = []
                async for chunk in stream:
                    if chunk.choices and chunk.choices[0].delta.content:
                        text.append(chunk.choices[0].delta.content)
                        await ws.send_text(
                            json.dumps(
                                {"type": "stream_token", "text": chunk.choices[0].delta.content}
                            )
                        )
                await ws.send_text(json.dumps({"type": "stream_end", "text": "".join(text)}))
        except WebSocketDisconnect:
            return

    return app


if __name__ == "__main__":
    uvicorn.run(
        create_app(sys.argv[2]),
        host="127.0.0.1",
        port=int(sys.argv[1]),
        loop="uvloop",
        http="httptools",
        ws="websockets-sansio",
        ws_per_message_deflate=False,
        log_level="warning",
    )
