"""`make bench`: tokenwire against the single-process baseline, same fake model, same load
process, same machine, same run. Prints markdown tables (medians and p99s over the runs) and
writes bench/results.json. tokenwire runs with the settings `make run` gives it; the only
override is the connections one user may hold, for the idle scenario's 10,000 sockets.

Scenarios: what one reply and one token cost in CPU, by process; C streaming sessions for each
C of BENCH_SESSIONS (default "100,250,500,1000"); the largest C each system sustains among
them; a fast model (no delays) for the tokens per second one gateway delivers, with one client
a session and with BENCH_FAST_CLIENTS (5); BENCH_IDLE (10000) idle connections on one gateway;
one worker against two at BENCH_WORKER_SESSIONS (250).

Environment: BENCH_RUNS (3), BENCH_WORKERS (2), BENCH_FAST_SESSIONS (20) x BENCH_FAST_TOKENS
(1000), BENCH_COST_REPLIES (200).
"""

import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

import tables  # noqa: E402
from llm_worker.settings import WorkerSettings  # noqa: E402
from support import servers  # noqa: E402
from support.ports import free_port, wait_for_port  # noqa: E402
from support.system import System, system_with_own_nats  # noqa: E402

TTFT_S, TOKEN_S, TOKENS = 0.3, 0.02, 100
IDEAL_S = TTFT_S + TOKEN_S * (TOKENS - 1)
SUSTAINED_P99 = 1.25 * IDEAL_S
MODEL_ENV = {
    "TOKENWIRE_FAKE_LLM_TTFT_MS": str(int(TTFT_S * 1000)),
    "TOKENWIRE_FAKE_LLM_TOKEN_DELAY_MS": str(int(TOKEN_S * 1000)),
    "TOKENWIRE_FAKE_LLM_REPLY_TOKENS": str(TOKENS),
}
IDLE_LIMITS = {"TOKENWIRE_MAX_CONNECTIONS_PER_USER": "100000"}
"""The idle scenario's 10,000 sockets are one user's; every other scenario has a user a
session, within `make run`'s limits."""


def env_int(name: str, default: int) -> int:
    return int(os.environ.get(name, str(default)))


SIZES = [int(c) for c in os.environ.get("BENCH_SESSIONS", "100,250,500,1000").split(",")]
RUNS = env_int("BENCH_RUNS", 3)
WORKERS = env_int("BENCH_WORKERS", 2)
FAST_SESSIONS = env_int("BENCH_FAST_SESSIONS", 20)
FAST_TOKENS = env_int("BENCH_FAST_TOKENS", 1000)
FAST_PROMPT = f"[fake tokens={FAST_TOKENS} ttft_ms=0 delay_ms=0]"
FAST_CLIENTS = env_int("BENCH_FAST_CLIENTS", 5)
"""Connections per session in the fan-out run: the gateway delivers each token this often."""
IDLE = env_int("BENCH_IDLE", 10_000)
WORKER_SESSIONS = env_int("BENCH_WORKER_SESSIONS", 250)
COST_REPLIES = env_int("BENCH_COST_REPLIES", 200)
COST_PARALLEL = 10
"""Replies at a time in the cost-per-reply run: a steady load, not a burst."""
REPLY_PROMPT = "[fake tokens=1 ttft_ms=0 delay_ms=0]"
TITLE_SETTLE_S = 3.0
"""A title call (300 ms to its first token, 24 tokens at 20 ms) ends within this."""
ALONE_REPLIES = 30
TOKEN_SESSIONS, SHORT, LONG = 50, 10, 260
"""The cost per token: replies of SHORT and of LONG tokens at 50 a second (the difference
over LONG - SHORT tokens), TOKEN_SESSIONS at once."""


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def memory_kib(pid: int, field: str) -> int:
    """`VmRSS` or `VmHWM` (peak) of a process, in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    return 0


def load(
    kind: str, url: str, sessions: int, prompt: str | None = None, clients: int = 1
) -> list[dict[str, Any]]:
    args = [sys.executable, str(ROOT / "bench" / "load.py"), kind, url, str(sessions)]
    if prompt:
        args += [prompt, str(clients)]
    done = subprocess.run(args, capture_output=True, text=True, timeout=300)
    if done.returncode:
        raise RuntimeError(done.stderr[-2000:])
    results: list[dict[str, Any]] = json.loads(done.stdout)
    return results


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(int(q * len(ordered)), len(ordered) - 1)] if ordered else float("nan")


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def _stage(key: str, samples: list[dict[str, Any]]) -> dict[str, float]:
    """Median and p99 of a stage only tokenwire reports (the baseline has no such frames)."""
    values = [s[key] for s in samples if key in s]
    if not values:
        return {}
    return {f"{key}_ms_p50": 1000 * median(values), f"{key}_ms_p99": 1000 * pct(values, 0.99)}


def summarize(samples: list[dict[str, Any]], tokens: int = TOKENS) -> dict[str, float]:
    complete = [s for s in samples if s.get("words") == tokens]
    gaps = [g for s in complete for g in s.get("gaps", [])]
    incomplete = Counter(str(s.get("end", "no end")) for s in samples if s not in complete)
    if incomplete:
        print(f"incomplete replies: {dict(incomplete)}", file=sys.stderr)
    delivered = sum(s["words"] for s in complete)
    span = max((s["done_at"] for s in complete), default=0.0) - min(
        (s["sent_at"] for s in complete), default=0.0
    )
    return {
        "complete_pct": 100 * len(complete) / len(samples),
        "connect_ms_p50": 1000 * median([s["connect"] for s in samples if "connect" in s]),
        "ttft_ms_p50": 1000 * median([s["ttft"] for s in complete]),
        "ttft_ms_p99": 1000 * pct([s["ttft"] for s in complete], 0.99),
        **_stage("echo", complete),
        **_stage("start", complete),
        **_stage("model_ttft", complete),
        "gap_ms_p50": 1000 * median(gaps),
        "gap_ms_p99": 1000 * pct(gaps, 0.99),
        "whole_s_p50": median([s["whole"] for s in complete]),
        "whole_s_p99": pct([s["whole"] for s in complete], 0.99),
        "tokens_per_s": delivered / span if span > 0 else 0.0,
    }


def measure(
    kind: str,
    url: str,
    pids: list[int],
    sessions: int,
    prompt: str | None = None,
    *,
    front: int | None = None,
    clients: int = 1,
) -> dict[str, float]:
    """RUNS runs of `sessions` sessions (`clients` connections each); medians over the runs,
    CPU per run (and of the `front` process alone: the gateway), peak RSS."""
    rows = []
    for _ in range(RUNS):
        cpu0 = sum(cpu_seconds(p) for p in pids)
        front0 = cpu_seconds(front) if front else 0.0
        samples = load(kind, url, sessions, prompt, clients)
        summary = summarize(samples, FAST_TOKENS if prompt else TOKENS)
        summary["cpu_s"] = sum(cpu_seconds(p) for p in pids) - cpu0
        if front:
            summary["front_cpu_s"] = cpu_seconds(front) - front0
        rows.append(summary)
        time.sleep(0.5)
    # A run in which no reply completed has no latencies (nan): the others' medians stand,
    # and the completion is the worst run's.
    merged = {key: median([row[key] for row in rows if row[key] == row[key]]) for key in rows[0]}
    merged["complete_pct"] = min(row["complete_pct"] for row in rows)
    merged["peak_rss_mib"] = sum(memory_kib(p, "VmHWM") for p in pids) / 1024
    if merged.get("front_cpu_s"):  # the client-facing process's cost per token delivered
        tokens = FAST_TOKENS if prompt else TOKENS
        delivered = sessions * clients * tokens * merged["complete_pct"] / 100
        merged["tokens_per_front_cpu_s"] = delivered / merged["front_cpu_s"]
    return merged


@contextlib.contextmanager
def tokenwire(work: Path, redis_url: str, workers: int) -> Iterator[System]:
    workdir = work / f"tokenwire-{workers}"
    workdir.mkdir()
    with system_with_own_nats(
        workdir,
        redis_url=redis_url,
        workers=workers,
        fake_llm_env=MODEL_ENV,
        gateway_env=IDLE_LIMITS,
    ) as system:
        yield system


def own_pids(system: System) -> list[int]:
    return [pid for pids in process_groups(system).values() for pid in pids]


def process_groups(system: System, redis_pid: int = 0) -> dict[str, list[int]]:
    """The system's own processes by role (not the fake model's); Valkey's when given."""
    groups: dict[str, list[int]] = {}
    for process in system.processes:
        role = "llm-worker" if process.name.startswith("worker-") else process.name
        if role != "fake-llm":
            groups.setdefault(role, []).append(process.popen.pid)
    groups.update({name: [pid] for name, pid in system.server_pids.items()})
    if redis_pid:
        groups["valkey"] = [redis_pid]
    return groups


def memory_by_group(groups: dict[str, list[int]], field: str) -> dict[str, float]:
    """MiB of each process group (`VmRSS` now, or `VmHWM`: its peak so far), summed over the
    group's processes."""
    return {name: sum(memory_kib(p, field) for p in pids) / 1024 for name, pids in groups.items()}


def cpu_by_group(groups: dict[str, list[int]]) -> dict[str, float]:
    return {name: sum(cpu_seconds(pid) for pid in pids) for name, pids in groups.items()}


def cost_run(
    kind: str,
    url: str,
    groups: dict[str, list[int]],
    count: int,
    parallel: int,
    prompt: str,
    *,
    untitled: bool = False,
    settle_s: float = 0.0,
) -> tuple[dict[str, float], list[dict[str, Any]]]:
    """CPU milliseconds per reply of each process group (and `total`), over `count` replies
    `parallel` at a time, each on a new connection (users are made before the counters), and
    the replies' samples. `untitled`: sessions the model names after their reply; `settle_s`:
    how long after the last reply the counters are read (for work that follows a reply)."""
    args = [sys.executable, str(ROOT / "bench" / "load.py"), "cost", kind, url]
    load = subprocess.Popen(
        [*args, str(count), str(parallel), prompt],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "BENCH_UNTITLED": "1" if untitled else "0"},
    )
    assert load.stdin is not None
    assert load.stdout is not None
    if load.stdout.readline().strip() != "prepared":
        raise RuntimeError("the cost load did not prepare its users")
    before = cpu_by_group(groups)
    load.stdin.write("go\n")
    load.stdin.flush()
    samples = json.loads(load.stdout.readline())
    time.sleep(settle_s)
    after = cpu_by_group(groups)
    load.wait(30)
    expected = int(prompt.split("tokens=")[1].split()[0])
    done = [s for s in samples if s.get("words") == expected]
    if len(done) < count:
        print(f"cost run: {count - len(done)} replies incomplete", file=sys.stderr)
    per_reply = {name: 1000 * (after[name] - before[name]) / count for name in groups}
    return {**per_reply, "total": sum(per_reply.values())}, samples


def alone(kind: str, url: str) -> dict[str, float]:
    """First token of one session at a time (after the cost runs warmed everything up):
    ALONE_REPLIES replies one after the other, each on a new connection, with the fake model's
    own TTFT."""
    _, samples = cost_run(kind, url, {}, ALONE_REPLIES, 1, "[fake tokens=1 delay_ms=0]")
    ttfts = [s["ttft"] for s in samples if "ttft" in s]
    return {"ttft_ms_p50": 1000 * median(ttfts), "ttft_ms_p99": 1000 * pct(ttfts, 0.99)}


def cost(kind: str, url: str, groups: dict[str, list[int]]) -> dict[str, dict[str, float]]:
    """Medians over RUNS: ms per reply (a new connection, one message, a one-token reply, 10
    at a time) and µs per token (a stream paced at 50 tokens a second), by process."""

    def medians(count: int, parallel: int, prompt: str) -> dict[str, float]:
        runs = [cost_run(kind, url, groups, count, parallel, prompt)[0] for _ in range(RUNS)]
        return {key: statistics.median(run[key] for run in runs) for key in runs[0]}

    reply = medians(COST_REPLIES, COST_PARALLEL, REPLY_PROMPT)
    short, long = (
        medians(TOKEN_SESSIONS, TOKEN_SESSIONS, f"[fake tokens={n} ttft_ms=0 delay_ms=20]")
        for n in (SHORT, LONG)
    )
    token = {key: 1000 * (long[key] - short[key]) / (LONG - SHORT) for key in long}
    if kind != "tokenwire":
        return {"reply_ms": reply, "token_us": token}
    return {"reply_ms": reply, "token_us": token, "title_ms": title_cost(kind, url, groups)}


def title_cost(kind: str, url: str, groups: dict[str, list[int]]) -> dict[str, float]:
    """What a session the model names costs, by process: CPU per reply of new untitled
    sessions less that of titled ones (medians over RUNS, interleaved), each read
    TITLE_SETTLE_S after the last reply, when the last title calls have ended."""
    runs: dict[bool, list[dict[str, float]]] = {False: [], True: []}
    for _ in range(RUNS):
        for untitled in (False, True):
            per_reply, _ = cost_run(
                kind,
                url,
                groups,
                COST_REPLIES,
                COST_PARALLEL,
                REPLY_PROMPT,
                untitled=untitled,
                settle_s=TITLE_SETTLE_S,
            )
            runs[untitled].append(per_reply)
    middle = {u: {k: statistics.median(r[k] for r in runs[u]) for k in runs[u][0]} for u in runs}
    return {key: middle[True][key] - middle[False][key] for key in middle[True]}


@contextlib.contextmanager
def baseline() -> Iterator[tuple[str, int]]:
    """The baseline server and its own fake model; yields its URL and its pid."""
    model_port, base_port = free_port(), free_port()
    model = subprocess.Popen(
        [sys.executable, "-m", "fake_llm"],
        env={**os.environ, **MODEL_ENV, "TOKENWIRE_FAKE_LLM_PORT": str(model_port)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = subprocess.Popen(
        [
            sys.executable,
            str(ROOT / "bench" / "baseline.py"),
            str(base_port),
            f"http://127.0.0.1:{model_port}/v1",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(model_port)
        wait_for_port(base_port)
        yield f"http://127.0.0.1:{base_port}", base.pid
    finally:
        for process in (base, model):
            process.terminate()
            process.wait(10)


def idle_connections(url: str, gateway_pid: int, count: int) -> dict[str, float]:
    """RSS the gateway gains per idle connection, `count` connections to one session."""
    before = memory_kib(gateway_pid, "VmRSS")
    started = time.perf_counter()
    opener = subprocess.Popen(
        [sys.executable, str(ROOT / "bench" / "load.py"), "idle", url, str(count)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert opener.stdin is not None
    assert opener.stdout is not None
    try:
        if opener.stdout.readline().strip() != "ready":
            raise RuntimeError("the idle connections did not all open")
        opened_s = time.perf_counter() - started
        time.sleep(2)
        after = memory_kib(gateway_pid, "VmRSS")
    finally:
        opener.stdin.close()
        opener.wait(60)
    return {
        "connections": count,
        "open_s": opened_s,
        "rss_before_mib": before / 1024,
        "rss_after_mib": after / 1024,
        "kib_per_connection": (after - before) / count,
    }


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="tokenwire-bench-"))
    results: dict[str, Any] = {
        "machine": {"cores": os.cpu_count()},
        "settings": {
            "runs": RUNS,
            "workers": WORKERS,
            "concurrency": WorkerSettings.model_fields["worker_concurrency"].default,
            "cost_replies": COST_REPLIES,
            "model": {"ttft_s": TTFT_S, "token_s": TOKEN_S, "tokens": TOKENS},
            "ideal_s": IDEAL_S,
            "sustained_p99_s": SUSTAINED_P99,
            "fast_sessions": FAST_SESSIONS,
            "fast_tokens": FAST_TOKENS,
            "fast_clients": FAST_CLIENTS,
            "worker_sessions": WORKER_SESSIONS,
        },
        "sessions": {},
    }
    started = time.perf_counter()
    redis = servers.start_redis(work)
    try:
        with tokenwire(work, redis.url, WORKERS) as system:
            pids = own_pids(system)
            progress("tokenwire, cost per reply and per token", started)
            groups = process_groups(system, redis.process.pid)
            memory = results["memory"] = {"started": memory_by_group(groups, "VmRSS")}
            results["cost"] = {"tokenwire": cost("tokenwire", system.gateway_url, groups)}
            results["alone"] = {"tokenwire": alone("tokenwire", system.gateway_url)}
            for size in SIZES:
                progress(f"tokenwire, {size} sessions", started)
                results["sessions"].setdefault(str(size), {})["tokenwire"] = measure(
                    "tokenwire", system.gateway_url, pids, size
                )
                memory[str(size)] = memory_by_group(groups, "VmHWM")
            gateway = system.named("gateway").popen.pid
            fast = {}
            for clients in (1, FAST_CLIENTS):
                progress(f"tokenwire, fast model, {clients} client(s) a session", started)
                fast[clients] = measure(
                    "tokenwire",
                    system.gateway_url,
                    pids,
                    FAST_SESSIONS,
                    FAST_PROMPT,
                    front=gateway,
                    clients=clients,
                )
            results["fast"] = {"tokenwire": fast[1]}
            results["fanout"] = fast[FAST_CLIENTS]
            progress(f"tokenwire, {IDLE} idle connections", started)
            results["idle"] = idle_connections(system.gateway_url, gateway, IDLE)
        with baseline() as (url, pid):
            progress("baseline, cost per reply and per token", started)
            results["cost"]["baseline"] = cost("baseline", url, {"baseline": [pid]})
            results["alone"]["baseline"] = alone("baseline", url)
            for size in SIZES:
                progress(f"baseline, {size} sessions", started)
                results["sessions"][str(size)]["baseline"] = measure("baseline", url, [pid], size)
            progress("baseline, fast model", started)
            results["fast"]["baseline"] = measure(
                "baseline", url, [pid], FAST_SESSIONS, FAST_PROMPT, front=pid
            )
        progress(f"tokenwire with one worker, {WORKER_SESSIONS} sessions", started)
        with tokenwire(work, redis.url, 1) as system:
            one = measure("tokenwire", system.gateway_url, own_pids(system), WORKER_SESSIONS)
        results["workers"] = {
            "1": one,
            str(WORKERS): results["sessions"].get(str(WORKER_SESSIONS), {}).get("tokenwire"),
        }
    finally:
        redis.stop()
    results["sustained"] = {
        kind: largest_sustained(results["sessions"], kind) for kind in ("tokenwire", "baseline")
    }
    results["minutes"] = (time.perf_counter() - started) / 60
    (ROOT / "bench" / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    print(tables.report(results))


def progress(step: str, started: float) -> None:
    print(f"[{time.perf_counter() - started:6.1f} s] {step}", file=sys.stderr, flush=True)


def largest_sustained(sessions: dict[str, Any], kind: str) -> int:
    """The largest C measured with ≥ 99 % complete and reply p99 within 1.25 x ideal."""
    ok = [
        int(size)
        for size, systems in sessions.items()
        if kind in systems
        and systems[kind]["complete_pct"] >= 99
        and systems[kind]["whole_s_p99"] <= SUSTAINED_P99
    ]
    return max(ok, default=0)


if __name__ == "__main__":
    main()
