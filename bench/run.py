"""`make bench`: tokenwire against the single-process baseline, same fake model, same load
process, same machine, same run. Prints markdown tables (medians and p99s over the runs) and
writes bench/results.json.

Environment: BENCH_SESSIONS (default "100,250"), BENCH_RUNS (3), BENCH_WORKERS (2),
BENCH_WORKER_CONCURRENCY (256: replies one worker holds, sized so that the workers can hold
every session at once, as the baseline does).
"""

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from support import servers  # noqa: E402
from support.ports import free_port, wait_for_port  # noqa: E402
from support.system import system_with_own_nats  # noqa: E402

TTFT_S, TOKEN_S, TOKENS = 0.3, 0.02, 100
IDEAL_S = TTFT_S + TOKEN_S * (TOKENS - 1)
MODEL_ENV = {
    "TOKENWIRE_FAKE_LLM_TTFT_MS": str(int(TTFT_S * 1000)),
    "TOKENWIRE_FAKE_LLM_TOKEN_DELAY_MS": str(int(TOKEN_S * 1000)),
    "TOKENWIRE_FAKE_LLM_REPLY_TOKENS": str(TOKENS),
}


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def load(kind: str, url: str, sessions: int) -> list[dict[str, Any]]:
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "load.py"), kind, url, str(sessions)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    if done.returncode:
        raise RuntimeError(done.stderr[-2000:])
    results: list[dict[str, Any]] = json.loads(done.stdout)
    return results


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(int(q * len(ordered)), len(ordered) - 1)] if ordered else float("nan")


def summarize(samples: list[dict[str, Any]]) -> dict[str, float]:
    complete = [s for s in samples if s.get("words") == TOKENS]
    gaps = [g for s in complete for g in s.get("gaps", [])]
    incomplete = Counter(str(s.get("end", "no end")) for s in samples if s not in complete)
    if incomplete:
        print(f"incomplete replies: {dict(incomplete)}", file=sys.stderr)
    return {
        "complete_pct": 100 * len(complete) / len(samples),
        "connect_ms_p50": 1000 * statistics.median(s["connect"] for s in samples if "connect" in s),
        "ttft_ms_p50": 1000 * statistics.median(s["ttft"] for s in complete),
        "ttft_ms_p99": 1000 * pct([s["ttft"] for s in complete], 0.99),
        **_stage("echo", complete),
        **_stage("start", complete),
        **_stage("model_ttft", complete),
        "gap_ms_p50": 1000 * statistics.median(gaps),
        "gap_ms_p99": 1000 * pct(gaps, 0.99),
        "whole_s_p50": statistics.median(s["whole"] for s in complete),
        "whole_s_p99": pct([s["whole"] for s in complete], 0.99),
    }


def _stage(key: str, samples: list[dict[str, Any]]) -> dict[str, float]:
    """Median and p99 of a stage only tokenwire reports (the baseline has no such frames)."""
    values = [s[key] for s in samples if key in s]
    if not values:
        return {}
    return {
        f"{key}_ms_p50": 1000 * statistics.median(values),
        f"{key}_ms_p99": 1000 * pct(values, 0.99),
    }


def measure(kind: str, url: str, pids: list[int], sessions: int, runs: int) -> dict[str, float]:
    rows = []
    for _ in range(runs):
        cpu0 = sum(cpu_seconds(p) for p in pids)
        summary = summarize(load(kind, url, sessions))
        summary["cpu_s"] = sum(cpu_seconds(p) for p in pids) - cpu0
        rows.append(summary)
        time.sleep(0.5)
    merged = {key: statistics.median(row[key] for row in rows) for key in rows[0]}
    merged["peak_rss_mib"] = sum(peak_rss_mib(p) for p in pids)
    return merged


def main() -> None:
    sizes = [int(c) for c in os.environ.get("BENCH_SESSIONS", "100,250").split(",")]
    runs = int(os.environ.get("BENCH_RUNS", "3"))
    workers = int(os.environ.get("BENCH_WORKERS", "2"))
    concurrency = int(os.environ.get("BENCH_WORKER_CONCURRENCY", "256"))
    work = Path(tempfile.mkdtemp(prefix="tokenwire-bench-"))
    results: dict[str, Any] = {"machine": {"cores": os.cpu_count()}, "sessions": {}}
    redis = servers.start_redis(work)
    limits = {
        "TOKENWIRE_MESSAGE_RATE_PER_MIN": "1000000",
        "TOKENWIRE_MAX_CONNECTIONS_PER_USER": "100000",
    }
    try:
        with system_with_own_nats(
            work,
            redis_url=redis.url,
            workers=workers,
            fake_llm_env=MODEL_ENV,
            gateway_env=limits,
            worker_env={"TOKENWIRE_WORKER_CONCURRENCY": str(concurrency)},
        ) as system:
            ours = [p.popen.pid for p in system.processes if p.name != "fake-llm"]
            for size in sizes:
                results["sessions"].setdefault(str(size), {})["tokenwire"] = measure(
                    "tokenwire", system.gateway_url, ours, size, runs
                )
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
            for size in sizes:
                results["sessions"][str(size)]["baseline"] = measure(
                    "baseline", f"http://127.0.0.1:{base_port}", [base.pid], size, runs
                )
        finally:
            for process in (base, model):
                process.terminate()
                process.wait(10)
    finally:
        redis.stop()
    (ROOT / "bench" / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    print(report(results, runs, workers, concurrency))


def report(results: dict[str, Any], runs: int, workers: int, concurrency: int) -> str:
    lines = [
        f"Fake model: TTFT {TTFT_S * 1000:.0f} ms, {TOKEN_S * 1000:.0f} ms a token, "
        f"{TOKENS} tokens (ideal reply {IDEAL_S:.2f} s). tokenwire: 1 gateway, {workers} "
        f"workers, persistence, nats-server, Valkey. Medians of {runs} runs.",
        "",
    ]
    keys = [
        ("complete_pct", "complete %"),
        ("connect_ms_p50", "connect p50 ms"),
        ("ttft_ms_p50", "TTFT p50 ms"),
        ("ttft_ms_p99", "TTFT p99 ms"),
        ("gap_ms_p50", "gap p50 ms"),
        ("gap_ms_p99", "gap p99 ms"),
        ("whole_s_p50", "reply p50 s"),
        ("whole_s_p99", "reply p99 s"),
        ("cpu_s", "CPU s"),
        ("peak_rss_mib", "peak RSS MiB"),
    ]
    for size, systems in results["sessions"].items():
        lines += [
            f"**{size} concurrent sessions**",
            "",
            "| figure | tokenwire | baseline | ratio |",
            "| --- | ---: | ---: | ---: |",
        ]
        ours, theirs = systems["tokenwire"], systems.get("baseline", {})
        for key, label in keys:
            a, b = ours[key], theirs.get(key, float("nan"))
            ratio = a / b if b else float("nan")
            lines.append(f"| {label} | {a:.2f} | {b:.2f} | {ratio:.2f} |")
        lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
