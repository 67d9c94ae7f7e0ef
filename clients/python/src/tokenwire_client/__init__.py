"""An async Python client of tokenwire (docs/clients.md):

    async with await Client.dev("http://127.0.0.1:8000") as client:
        async with client.session(await client.create_session()) as session:
            async for frame in session.ask("Hello!"):
                ...

Frames are `shared.frames`' typed models; a dropped connection is made again and resumed
without gap or duplicate.
"""

from tokenwire_client.client import ApiError, Client
from tokenwire_client.cursor import Cursor, backoff_s
from tokenwire_client.session import Session, SessionClosed

__all__ = ["ApiError", "Client", "Cursor", "Session", "SessionClosed", "backoff_s"]
