"""The whole tokenwire system as real processes: fake model, persistence, workers, gateway.

Each service runs as `python -m <package>` with its settings in the environment, exactly as
`make run` and the Dockerfiles start them; logs go to files that a failing test prints.
"""

import contextlib
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from support import servers
from support.ports import free_port, wait_for_port


@dataclass
class Process:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path
    module: str = ""
    env: dict[str, str] = field(default_factory=dict)
    metrics_url: str = ""
    """Where a worker or persistence serves `/metrics`."""

    def tail(self, chars: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-chars:]

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(15)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()


@dataclass
class System:
    gateway_url: str
    secret: str
    gateway_urls: list[str] = field(default_factory=list)
    """Every gateway's URL; `gateway_url` is the first."""
    admin_urls: list[str] = field(default_factory=list)
    """Every gateway's admin listener (ops endpoints without a token), in the same order."""
    llm_url: str = ""
    """The fake model's base URL (its `/v1/_fake/streams` tells what it streamed)."""
    processes: list[Process] = field(default_factory=list)
    server_pids: dict[str, int] = field(default_factory=dict)
    """Servers the system runs on, by name (`nats-server` with `system_with_own_nats`)."""
    add_worker: Callable[..., Process] = field(default=lambda **_: _no_worker())
    """Start one more worker; keyword arguments are extra environment variables."""

    def process(self, pid: int) -> Process:
        return next(p for p in self.processes if p.popen.pid == pid)

    def named(self, name: str) -> Process:
        """The newest process of that name."""
        return [p for p in self.processes if p.name == name][-1]

    def respawn(self, process: Process) -> Process:
        """Start `process` again (after it stopped) with the same module and environment."""
        with process.log.open("ab") as out:
            popen = subprocess.Popen(
                [sys.executable, "-m", process.module],
                env=process.env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        again = Process(process.name, popen, process.log, process.module, process.env)
        self.processes.append(again)
        return again

    @property
    def admin_url(self) -> str:
        """The first gateway's admin listener."""
        return self.admin_urls[0]

    @property
    def ws_url(self) -> str:
        return self.gateway_url.replace("http://", "ws://", 1)

    @property
    def ws_urls(self) -> list[str]:
        return [url.replace("http://", "ws://", 1) for url in self.gateway_urls]

    def logs(self) -> str:
        return "\n".join(f"--- {p.name} ---\n{p.tail()}" for p in self.processes)

    def stop(self) -> None:
        for process in reversed(self.processes):
            process.stop()


def start_system(
    workdir: Path,
    *,
    nats_url: str,
    redis_url: str,
    database_url: str | None = None,
    workers: int = 1,
    fake_llm_env: dict[str, str] | None = None,
    worker_env: dict[str, str] | None = None,
    gateways: int = 1,
    gateway_env: dict[str, str] | None = None,
    gateway_envs: list[dict[str, str]] | None = None,
    common_env: dict[str, str] | None = None,
    nats_users: dict[str, str] | None = None,
) -> System:
    """Start every service and wait until every gateway's `/readyz` says ready.

    `gateway_env` applies to every gateway, `gateway_envs[i]` to gateway `i` only,
    `common_env` to every process. With `nats_users` (a secured nats-server's URLs by user),
    each service connects as its own user.
    """
    secret = secrets.token_urlsafe(48)
    llm_port = free_port()
    gateway_ports = [free_port() for _ in range(gateways)]
    admin_ports = [free_port() for _ in range(gateways)]
    base = {
        **os.environ,
        "TOKENWIRE_NATS_URL": nats_url,
        "TOKENWIRE_REDIS_URL": redis_url,
        "TOKENWIRE_NATS_CONNECT_TIMEOUT_S": "20",
        "TOKENWIRE_LOG_LEVEL": "INFO",
        "PYTHONUNBUFFERED": "1",
        "TOKENWIRE_ENV": "development",
        **(common_env or {}),
    }
    for key in ("OPENAI_API_KEY", "OPENAI_BASE_URL"):
        base.pop(key, None)
    urls = [f"http://127.0.0.1:{port}" for port in gateway_ports]
    admin_urls = [f"http://127.0.0.1:{port}" for port in admin_ports]
    system = System(urls[0], secret, urls, admin_urls, llm_url=f"http://127.0.0.1:{llm_port}")

    user_of = {"gateway": "gateway", "llm_worker": "worker", "persistence": "persistence"}

    def spawn(name: str, module: str, env: dict[str, str]) -> Process:
        log = workdir / f"{name}.log"
        if nats_users and module in user_of:
            env = {**env, "TOKENWIRE_NATS_URL": nats_users[user_of[module]]}
        metrics_url = ""
        if module in ("llm_worker", "persistence"):
            metrics_port = free_port()
            env = {**env, "TOKENWIRE_METRICS_PORT": str(metrics_port)}
            metrics_url = f"http://127.0.0.1:{metrics_port}/metrics"
        with log.open("wb") as out:
            popen = subprocess.Popen(
                [sys.executable, "-m", module],
                env={**base, **env},
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        system.processes.append(Process(name, popen, log, module, {**base, **env}, metrics_url))
        return system.processes[-1]

    def add_worker(**env: str) -> Process:
        count = sum(p.name.startswith("worker-") for p in system.processes)
        worker = {
            "OPENAI_BASE_URL": f"http://127.0.0.1:{llm_port}/v1",
            "TOKENWIRE_LLM_MAX_RETRIES": "0",
            **(worker_env or {}),
            **env,
        }
        return spawn(f"worker-{count + 1}", "llm_worker", worker)

    system.add_worker = add_worker

    try:
        spawn(
            "fake-llm",
            "fake_llm",
            {
                "TOKENWIRE_FAKE_LLM_PORT": str(llm_port),
                "TOKENWIRE_FAKE_LLM_TTFT_MS": "50",
                "TOKENWIRE_FAKE_LLM_TOKEN_DELAY_MS": "5",
                **(fake_llm_env or {}),
            },
        )
        spawn(
            "persistence",
            "persistence",
            {
                "TOKENWIRE_DATABASE_URL": database_url or f"sqlite+aiosqlite:///{workdir}/tw.db",
            },
        )
        for _ in range(workers):
            add_worker()
        for i, port in enumerate(gateway_ports):
            spawn(
                f"gateway-{i + 1}" if gateways > 1 else "gateway",
                "gateway",
                {
                    "TOKENWIRE_GATEWAY_PORT": str(port),
                    "TOKENWIRE_ADMIN_PORT": str(admin_ports[i]),
                    "TOKENWIRE_REDIS_URL": redis_url,
                    "TOKENWIRE_AUTH": "dev",
                    "TOKENWIRE_JWT_SECRET": secret,
                    **(gateway_env or {}),
                    **(gateway_envs[i] if gateway_envs else {}),
                },
            )
        wait_for_port(llm_port)
        for port in gateway_ports:
            wait_for_port(port, timeout_s=30)
        _wait_ready(system)
    except BaseException:
        logs = system.logs()
        system.stop()
        raise RuntimeError(f"the system did not come up:\n{logs}") from None
    return system


@contextlib.contextmanager
def system_with_own_nats(
    workdir: Path, *, redis_url: str, workers: int, **options: Any
) -> Iterator[System]:
    """A whole system on a nats-server of its own, stopped on exit; `options` as for
    `start_system`."""
    with servers.running(servers.start_nats(workdir, secured=True)) as nats:
        options.setdefault("gateway_env", {})
        options["gateway_env"] = {
            "TOKENWIRE_NATS_MONITOR_URL": nats.monitor_url,
            **options["gateway_env"],
        }
        system = start_system(
            workdir,
            nats_url=nats.url,
            redis_url=redis_url,
            workers=workers,
            nats_users=nats.users,
            **options,
        )
        system.server_pids["nats-server"] = nats.process.pid
        try:
            yield system
        finally:
            system.stop()


def _no_worker() -> Process:
    raise RuntimeError("the system is not started")


def _wait_ready(system: System, timeout_s: float = 30.0) -> None:
    for url in system.gateway_urls:
        _wait_gateway_ready(system, url, timeout_s)


def _wait_gateway_ready(system: System, url: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    last = ""
    while time.monotonic() < deadline:
        for process in system.processes:
            if process.popen.poll() is not None:
                raise RuntimeError(f"{process.name} exited")
        try:
            answer = httpx.get(f"{url}/readyz", timeout=5)
            if answer.status_code == 200:
                return
            last = answer.text
        except httpx.HTTPError as exc:
            last = str(exc)
        time.sleep(0.2)
    raise TimeoutError(f"gateway not ready: {last}")
