"""`make run` (scripts/run_local.py) as a user runs it: a worker killed with SIGKILL is started
again while nats-server, Valkey, persistence, the other worker and the gateway go on, and
replies keep coming; Ctrl-C then stops every process it started."""

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from support.client import connect, dev_user, frames_until_end, new_session, next_frame
from support.ports import free_port, wait_for_port

pytestmark = [pytest.mark.real, pytest.mark.e2e]
ROOT = Path(__file__).resolve().parents[2]


class Run:
    """scripts/run_local.py in a process group of its own, its output collected line by line."""

    def __init__(self, run_dir: Path) -> None:
        self.port, self.admin_port = free_port(), free_port()
        env = {
            **os.environ,
            "TOKENWIRE_RUN_DIR": str(run_dir),
            "TOKENWIRE_GATEWAY_PORT": str(self.port),
            "TOKENWIRE_ADMIN_PORT": str(self.admin_port),
        }
        for key in ("TOKENWIRE_NATS_URL", "TOKENWIRE_REDIS_URL", "OPENAI_BASE_URL"):
            env.pop(key, None)
        env.pop("OPENAI_API_KEY", None)
        self.popen = subprocess.Popen(
            [sys.executable, str(ROOT / "scripts" / "run_local.py")],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def close(self) -> None:
        if self.popen.poll() is None:
            self.popen.kill()
        self.popen.wait()
        self._reader.join(timeout=5)
        assert self.popen.stdout is not None
        self.popen.stdout.close()

    def _read(self) -> None:
        assert self.popen.stdout is not None
        for line in self.popen.stdout:
            self.lines.append(line.rstrip("\n"))

    def pids(self, name: str) -> list[int]:
        """Every pid `name` was started with, in order."""
        pattern = re.compile(rf" {re.escape(name)}\s+\| (?:re)?started \(pid (\d+)\)$")
        return [int(m.group(1)) for line in self.lines if (m := pattern.search(line))]

    def wait_ready(self, timeout_s: float = 60) -> str:
        """The gateway's URL once `/readyz` answers 200."""
        url = f"http://127.0.0.1:{self.port}"
        wait_for_port(self.port, timeout_s=timeout_s)
        deadline = time.monotonic() + timeout_s
        while httpx.get(f"{url}/readyz", timeout=5).status_code != 200:
            assert time.monotonic() < deadline, "\n".join(self.lines[-40:])
            time.sleep(0.2)
        return url

    def wait_for(self, name: str, count: int, timeout_s: float = 30) -> list[int]:
        deadline = time.monotonic() + timeout_s
        while len(pids := self.pids(name)) < count:
            assert time.monotonic() < deadline, "\n".join(self.lines[-40:])
            time.sleep(0.1)
        return pids


@pytest.fixture
def run(tmp_path: Path) -> Iterator[Run]:
    running = Run(tmp_path)
    try:
        yield running
    finally:
        running.close()


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def one_reply(url: str, message_id: str) -> dict[str, object]:
    async with httpx.AsyncClient(base_url=url, timeout=10) as http:
        user = await dev_user(http)
        sid = await new_session(http, user)
    async with await connect(url.replace("http://", "ws://"), sid, user) as ws:
        await next_frame(ws)
        content = "[fake tokens=5]"
        await ws.send(json.dumps({"type": "message", "message_id": message_id, "content": content}))
        return (await frames_until_end(ws, timeout_s=30))[-1]


async def test_a_killed_worker_is_started_again_and_nothing_else_stops(run: Run) -> None:
    url = run.wait_ready()
    assert (await one_reply(url, "before"))["type"] == "stream_end"
    names = ("nats", "redis", "persistence", "worker-1", "worker-2", "gateway", "fake-llm")
    first = {name: run.wait_for(name, 1)[0] for name in names}
    os.kill(first["worker-1"], signal.SIGKILL)
    restarted = run.wait_for("worker-1", 2)[1]
    assert restarted != first["worker-1"]
    assert any("worker-1" in line and "killed by SIGKILL" in line for line in run.lines)
    for i in range(3):
        assert (await one_reply(url, f"after-{i}"))["type"] == "stream_end"
    assert all(len(run.pids(name)) == 1 for name in names if name != "worker-1")
    assert all(alive(pid) for name, pid in first.items() if name != "worker-1")
    run.popen.send_signal(signal.SIGINT)  # Ctrl-C
    assert run.popen.wait(timeout=30) == 0
    everyone = [pid for name in names for pid in run.pids(name)]
    assert not [pid for pid in everyone if alive(pid)]  # each was waited for
