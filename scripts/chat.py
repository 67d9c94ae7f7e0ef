"""A tiny chat client: `uv run python scripts/chat.py "Hello!"`, built on `tokenwire_client`.

In dev auth mode it mints a token and opens a new session by itself; give `--token` and
`--session` to talk in an existing one. Prints the reply as it streams in; a dropped connection
is made again and the reply resumed where it was.
"""

import argparse
import asyncio

from tokenwire_client import Client

from shared.frames import ErrorFrame, ReadyFrame, StreamEndFrame, StreamErrorFrame, StreamTokenFrame


async def chat(url: str, token: str | None, session_id: str | None, text: str) -> None:
    client = Client(url, token) if token else await Client.dev(url)
    async with client:
        sid = session_id or await client.create_session()
        async with client.session(sid) as session:
            print(f"[session {sid}]")
            async for frame in session.ask(text):
                match frame:
                    case StreamTokenFrame(text=piece):
                        print(piece, end="", flush=True)
                    case StreamEndFrame(finish_reason=finish, usage=usage):
                        print(f"\n[{finish}, {usage.total_tokens} tokens]")
                    case StreamErrorFrame(message=message) | ErrorFrame(detail=message):
                        print(f"\n[{frame.type}: {message}]")
                    case ReadyFrame(recovered=False):
                        print("\n[the stream could not replay what was missed: see history]")


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
