"""The markdown tables `make bench` prints (and docs/benchmarks.md holds), rendered from the
results it writes to bench/results.json: every figure and setting they show comes from there."""

from typing import Any

STREAMING = [
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
STAGES = [
    ("echo_ms_p50", "message echoed p50 ms"),
    ("start_ms_p50", "stream_start p50 ms"),
    ("start_ms_p99", "stream_start p99 ms"),
    ("model_ttft_ms_p50", "model TTFT seen by the worker p50 ms"),
]
FAST = [
    ("tokens_per_s", "tokens/s at the clients"),
    ("whole_s_p50", "reply p50 s"),
    ("cpu_s", "CPU s"),
    ("front_cpu_s", "CPU s of the process facing the clients"),
    ("tokens_per_front_cpu_s", "tokens per CPU second of that process"),
]


def table(
    rows: list[tuple[str, str]], ours: dict[str, float], theirs: dict[str, float], names: str
) -> list[str]:
    lines = [f"| figure | {names} | ratio |", "| --- | ---: | ---: | ---: |"]
    for key, label in rows:
        a, b = ours.get(key, float("nan")), theirs.get(key, float("nan"))
        ratio = a / b if b else float("nan")
        lines.append(f"| {label} | {a:.2f} | {b:.2f} | {ratio:.2f} |")
    return [*lines, ""]


def cost_table(cost: dict[str, dict[str, dict[str, float]]]) -> list[str]:
    ours, theirs = cost["tokenwire"], cost["baseline"]
    lines = ["| process | CPU ms per reply | CPU µs per token |", "| --- | ---: | ---: |"]
    for name, reply_ms in ours["reply_ms"].items():
        if name != "total":
            lines.append(f"| {name} | {reply_ms:.2f} | {ours['token_us'][name]:.1f} |")
    ours_reply, ours_token = ours["reply_ms"]["total"], ours["token_us"]["total"]
    base_reply, base_token = theirs["reply_ms"]["total"], theirs["token_us"]["total"]
    return [
        *lines,
        f"| **tokenwire, all processes** | **{ours_reply:.2f}** | **{ours_token:.1f}** |",
        f"| **baseline** (one process) | **{base_reply:.2f}** | **{base_token:.1f}** |",
        f"| ratio | {ours_reply / base_reply:.2f} | {ours_token / base_token:.2f} |",
        "",
        *title_line(ours.get("title_ms")),
    ]


def title_line(title_ms: dict[str, float] | None) -> list[str]:
    """What a session the model names costs (its sessions above are titled: no title call)."""
    if not title_ms:
        return []
    parts = ", ".join(f"{name} {ms:+.2f}" for name, ms in title_ms.items() if name != "total")
    return [
        "The sessions above are made with a title. A session the model names after its first "
        f"reply costs **{title_ms['total']:+.2f} ms** of CPU more ({parts}).",
        "",
    ]


def alone_line(alone: dict[str, dict[str, float]]) -> list[str]:
    ours, theirs = alone["tokenwire"], alone["baseline"]
    extra = ours["ttft_ms_p50"] - theirs["ttft_ms_p50"]
    return [
        "**One session alone** (30 replies one after the other, each on a new connection; "
        f"model TTFT 300 ms): first token p50 {ours['ttft_ms_p50']:.1f} ms against "
        f"{theirs['ttft_ms_p50']:.1f} ms (**{extra:+.1f} ms**), p99 "
        f"{ours['ttft_ms_p99']:.1f} against {theirs['ttft_ms_p99']:.1f} ms.",
        "",
    ]


def memory_table(memory: dict[str, dict[str, float]]) -> list[str]:
    """RSS of each process at the start, then its peak after each streaming scenario."""
    columns = [name for name in memory if name != "started"]
    lines = [
        "| process | started | " + " | ".join(f"peak through {c}" for c in columns) + " |",
        "| --- | ---: |" + " ---: |" * len(columns),
    ]
    for process, started in memory["started"].items():
        peaks = " | ".join(f"{memory[c][process]:.0f}" for c in columns)
        lines.append(f"| {process} | {started:.0f} | {peaks} |")
    totals = " | ".join(f"**{sum(memory[c].values()):.0f}**" for c in columns)
    lines.append(f"| **all** | **{sum(memory['started'].values()):.0f}** | {totals} |")
    return [*lines, ""]


def report(results: dict[str, Any]) -> str:
    settings = results["settings"]
    model, workers = settings["model"], settings["workers"]
    fast_shape = f"{settings['fast_sessions']} sessions x {settings['fast_tokens']} tokens"
    clients = settings["fast_clients"]
    lines = [
        f"Fake model: TTFT {model['ttft_s'] * 1000:.0f} ms, {model['token_s'] * 1000:.0f} ms a "
        f"token, {model['tokens']} tokens (ideal reply {settings['ideal_s']:.2f} s). tokenwire: "
        f"1 gateway, {workers} workers (each holding up to {settings['concurrency']} replies: "
        f"`make run`'s settings), persistence, nats-server, Valkey. Medians of "
        f"{settings['runs']} runs; {results['minutes']:.1f} minutes in all.",
        "",
        f"**Cost**: CPU per reply (a new connection, one message, a one-token reply, "
        f"{settings['cost_replies']} replies 10 at a time) and per token (the difference "
        "between 260- and 10-token replies paced at 50 tokens a second, 50 at once), by "
        "process",
        "",
        *cost_table(results["cost"]),
        *alone_line(results["alone"]),
    ]
    for size, systems in results["sessions"].items():
        lines += [f"**{size} concurrent sessions**", ""]
        lines += table(STREAMING, systems["tokenwire"], systems["baseline"], "tokenwire | baseline")
        lines += ["Where tokenwire's time to first token goes (at the client):", ""]
        lines += ["| stage | ms |", "| --- | ---: |"]
        lines += [f"| {label} | {systems['tokenwire'].get(key, 0):.1f} |" for key, label in STAGES]
        lines.append("")
    if "memory" in results:
        lines += ["**Memory** of tokenwire's processes, MiB (the workers summed):", ""]
        lines += memory_table(results["memory"])
    sustained = results["sustained"]
    lines += [
        f"**Largest C sustained** (of {', '.join(results['sessions'])}; ≥ 99 % complete, reply "
        f"p99 ≤ {settings['sustained_p99_s']:.2f} s): tokenwire {sustained['tokenwire']}, "
        f"baseline {sustained['baseline']}.",
        "",
        f"**Fast model** ({fast_shape}, no delays): tokens per second delivered to clients",
        "",
    ]
    fast = results["fast"]
    lines += table(FAST, fast["tokenwire"], fast["baseline"], "tokenwire | baseline")
    lines += [
        f"**Fan-out** (the fast model's {fast_shape}, {clients} connections a session: one "
        f"gateway delivers every token {clients} times; the baseline has no shared sessions)",
        "",
    ]
    lines += table(FAST, results["fanout"], fast["tokenwire"], f"{clients} clients | 1 client")
    idle = results["idle"]
    lines += [
        f"**Idle connections**: {idle['connections']:,} to one gateway, opened in "
        f"{idle['open_s']:.1f} s; gateway RSS {idle['rss_before_mib']:.0f} → "
        f"{idle['rss_after_mib']:.0f} MiB: **{idle['kib_per_connection']:.1f} KiB per "
        "connection**.",
        "",
        f"**One worker against {workers}** ({settings['worker_sessions']} sessions)",
        "",
    ]
    per_worker = results["workers"]
    lines += table(
        STREAMING,
        per_worker["1"],
        per_worker.get(str(workers)) or {},
        f"1 worker | {workers} workers",
    )
    return "\n".join(lines)
