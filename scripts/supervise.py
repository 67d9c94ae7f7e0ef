"""The process supervisor behind `make run`: every program in the foreground with prefixed
logs, and a program that exits on its own (a crash, a SIGKILL) started again after a pause,
while the others go on — so a worker killed mid-reply shows the failover the system is built
for instead of taking everything down.

The pause doubles with each exit that follows a short run (1 s up to 30 s) and starts over
after a program ran for a minute. SIGINT or SIGTERM stops every program: SIGTERM, then
SIGKILL for any still running after `stop_timeout_s`.
"""

import asyncio
import contextlib
import os
import signal
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TextIO

COLORS = ("36", "33", "32", "35", "34", "91", "92", "93", "94", "95", "96")


@dataclass
class Program:
    name: str
    argv: list[str]
    env: Mapping[str, str] | None = None
    process: asyncio.subprocess.Process | None = field(default=None, repr=False)
    starts: int = 0


class Supervisor:
    def __init__(
        self,
        programs: list[Program],
        *,
        out: TextIO = sys.stdout,
        first_pause_s: float = 1.0,
        longest_pause_s: float = 30.0,
        steady_s: float = 60.0,
        stop_timeout_s: float = 10.0,
    ) -> None:
        self.programs = programs
        self._out = out
        self._first_pause_s = first_pause_s
        self._longest_pause_s = longest_pause_s
        self._steady_s = steady_s
        self._stop_timeout_s = stop_timeout_s
        self._width = max(len(p.name) for p in programs)
        self._color = out.isatty()
        self._stopping = asyncio.Event()

    async def run(self) -> int:
        """Run every program until SIGINT or SIGTERM; returns 0 once all have stopped."""
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, self._stopping.set)
        keepers = [asyncio.create_task(self._keep(p, i)) for i, p in enumerate(self.programs)]
        await self._stopping.wait()
        self.say("supervisor", "stopping every program")
        await asyncio.gather(*(self._stop(p) for p in self.programs))
        for keeper in keepers:
            keeper.cancel()
        await asyncio.gather(*keepers, return_exceptions=True)
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
        return 0

    def stop(self) -> None:
        self._stopping.set()

    async def _keep(self, program: Program, index: int) -> None:
        """Start `program`, relay its output, and start it again whenever it exits."""
        pause = self._first_pause_s
        while not self._stopping.is_set():
            started = time.monotonic()
            process = await asyncio.create_subprocess_exec(
                *program.argv,
                env=dict(program.env) if program.env is not None else None,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
                start_new_session=True,  # Ctrl-C reaches the supervisor, which stops them
                limit=1 << 20,  # longest log line
            )
            program.process, program.starts = process, program.starts + 1
            verb = "started" if program.starts == 1 else "restarted"
            self.say(program.name, f"{verb} (pid {process.pid})", index)
            assert process.stdout is not None
            async for line in process.stdout:
                self.say(program.name, line.decode(errors="replace").rstrip(), index)
            code = await process.wait()
            if self._stopping.is_set():
                return
            if time.monotonic() - started >= self._steady_s:
                pause = self._first_pause_s
            self.say(program.name, f"exited ({_describe(code)}); starting again in {pause:g} s")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), pause)
            pause = min(pause * 2, self._longest_pause_s)

    async def _stop(self, program: Program) -> None:
        process = program.process
        if process is None or process.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(process.wait(), self._stop_timeout_s)
        except TimeoutError:
            self.say(program.name, f"still running after {self._stop_timeout_s:g} s: killed")
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()

    def say(self, name: str, text: str, index: int = -1) -> None:
        stamp = time.strftime("%H:%M:%S")
        label = name.ljust(self._width)
        if self._color and index >= 0:
            label = f"\033[{COLORS[index % len(COLORS)]}m{label}\033[0m"
        self._out.write(f"{stamp} {label} | {text}\n")
        self._out.flush()


def _describe(code: int) -> str:
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"killed by {signal.Signals(-code).name}"
    return f"status {code}"


def run(programs: list[Program]) -> int:
    """Supervise `programs` in the foreground until SIGINT or SIGTERM."""
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    return asyncio.run(Supervisor(programs).run())
