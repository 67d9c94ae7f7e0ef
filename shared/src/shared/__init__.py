"""tokenwire's contracts, shared by every service.

Holds the wire protocol (`frames`), the bus events (`events`), request-reply payloads (`rpc`),
subject names (`subjects`), the stream and consumer definitions (`stream`), the settings base
(`settings`) and logging setup (`logs`). Nothing here opens a connection at import time.
"""
