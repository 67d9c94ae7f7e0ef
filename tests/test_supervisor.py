"""`make run`'s supervisor with small real programs: one that exits is started again after
a pause that doubles, the others go on; stopping ends every program, killing one that
ignores SIGTERM."""

import asyncio
import io
import signal
import sys
from collections.abc import Callable

from supervise import Program, Supervisor

STEADY = [sys.executable, "-c", "import time; print('up', flush=True); time.sleep(60)"]
CRASHER = [sys.executable, "-c", "print('boom'); raise SystemExit(3)"]
STUBBORN = [
    sys.executable,
    "-c",
    "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN);"
    " print('stubborn', flush=True); time.sleep(60)",
]


async def until(condition: Callable[[], bool], timeout_s: float = 10.0) -> None:
    """Poll `condition` (the supervisor signals nothing a test could wait on)."""
    async with asyncio.timeout(timeout_s):
        while not condition():  # noqa: ASYNC110
            await asyncio.sleep(0.02)


async def test_a_program_that_exits_starts_again_and_the_others_go_on() -> None:
    steady, crasher = Program("steady", STEADY), Program("crasher", CRASHER)
    out = io.StringIO()
    supervisor = Supervisor([steady, crasher], out=out, first_pause_s=0.05, stop_timeout_s=5)
    running = asyncio.create_task(supervisor.run())
    await until(lambda: crasher.starts >= 4)
    assert steady.starts == 1
    first = steady.process
    assert first is not None
    assert first.returncode is None
    first.send_signal(signal.SIGKILL)  # a SIGKILL is an exit like any other
    await until(lambda: steady.starts == 2 and "up" in out.getvalue().split("restarted")[-1])
    supervisor.stop()
    assert await asyncio.wait_for(running, 10) == 0
    log = out.getvalue()
    assert "crasher | boom" in log
    pauses = [line.rsplit(" in ", 1)[1] for line in log.splitlines() if "crasher | exited" in line]
    assert pauses[:3] == ["0.05 s", "0.1 s", "0.2 s"]
    assert "exited (status 3)" in log
    assert "steady  | exited (killed by SIGKILL); starting again in 0.05 s" in log
    assert steady.process is not None
    assert steady.process.returncode == -signal.SIGTERM


async def test_stopping_kills_a_program_that_ignores_sigterm() -> None:
    stubborn = Program("stubborn", STUBBORN)
    out = io.StringIO()
    supervisor = Supervisor([stubborn], out=out, stop_timeout_s=0.5)
    running = asyncio.create_task(supervisor.run())
    await until(lambda: "stubborn | stubborn" in out.getvalue())
    supervisor.stop()
    assert await asyncio.wait_for(running, 10) == 0
    assert "still running after 0.5 s: killed" in out.getvalue()
    assert stubborn.process is not None
    assert stubborn.process.returncode == -signal.SIGKILL
