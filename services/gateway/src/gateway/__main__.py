"""`python -m gateway`: serve the gateway with settings from the environment."""

import asyncio
import socket

import uvicorn
import uvloop

from gateway.main import create_app
from gateway.settings import GatewaySettings
from shared.logs import configure_logging


def listening_socket(host: str, port: int, *, sndbuf_bytes: int = 0) -> socket.socket:
    """A listening socket; accepted connections inherit its send buffer size."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if sndbuf_bytes:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, sndbuf_bytes)
    sock.bind((host, port))
    sock.set_inheritable(True)
    return sock


def listening_sockets(settings: GatewaySettings) -> list[socket.socket]:
    """The public listener, and the admin listener when `admin_port` is set: one server
    serves both, and the ops endpoints tell them apart by the port a request came to."""
    sockets = [
        listening_socket(
            settings.gateway_host, settings.gateway_port, sndbuf_bytes=settings.ws_sndbuf_bytes
        )
    ]
    if settings.admin_port:
        sockets.append(listening_socket(settings.admin_host, settings.admin_port))
    return sockets


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
    sockets = listening_sockets(settings)
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    asyncio.run(server.serve(sockets=sockets))


if __name__ == "__main__":
    main()
