"""Which browser origins may open sockets: the gateway's own, the configured ones, and in dev
mode any localhost. Requests without an `Origin` header (non-browser clients, which could send
any header anyway) are not browser cross-site requests and pass."""

from urllib.parse import urlsplit

_LOCAL_HOSTS = {"localhost", "127.0.0.1", "[::1]", "::1"}


def origin_allowed(origin: str | None, host: str | None, *, allowed: list[str], dev: bool) -> bool:
    if origin is None:
        return True
    origin = origin.rstrip("/").lower()
    if origin in (a.lower() for a in allowed):
        return True
    parts = urlsplit(origin)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return False
    if host is not None and parts.netloc == host.lower():
        return True  # same origin
    return dev and (parts.hostname or "") in _LOCAL_HOSTS
