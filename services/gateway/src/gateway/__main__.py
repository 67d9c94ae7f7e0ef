"""`python -m gateway`: serve the gateway with settings from the environment."""

import asyncio
import socket

import uvicorn
import uvloop

from gateway.main import create_app
from gateway.settings import GatewaySettings
from shared.logs import configure_logging


def listening_socket(settings: GatewaySettings) -> socket.socket:
    """The listening socket; accepted connections inherit its send buffer size."""
    family = socket.AF_INET6 if ":" in settings.gateway_host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if settings.ws_sndbuf_bytes:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, settings.ws_sndbuf_bytes)
    sock.bind((settings.gateway_host, settings.gateway_port))
    sock.set_inheritable(True)
    return sock


def main() -> None:
    settings = GatewaySettings()
    configure_logging("gateway", settings.log_level, json_lines=settings.log_json)
    config = uvicorn.Config(
        create_app(settings),
        loop="none",
        http="httptools",
        ws="websockets-sansio",
        ws_max_size=settings.max_frame_bytes,
        ws_per_message_deflate=False,
        ws_ping_interval=settings.ws_ping_interval_s,
        ws_ping_timeout=settings.ws_ping_timeout_s,
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=10,
    )
    server = uvicorn.Server(config)
    sock = listening_socket(settings)
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    asyncio.run(server.serve(sockets=[sock]))


if __name__ == "__main__":
    main()
