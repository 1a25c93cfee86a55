"""`aitbc-up`'s supervisor, with small Python children: their output, their stop, and what
it does when one dies, never gets ready or will not stop; and how readiness is waited for."""

from __future__ import annotations

import asyncio
import io
import sys
from pathlib import Path

from aitbc_infra.readiness import run_to_end, until_ready
from aitbc_infra.supervisor import Service, Supervisor
from tests.unit.waiting import until


def child(code: str) -> list[str]:
    return [sys.executable, "-u", "-c", code]


async def ready_now() -> bool:
    return True


async def never_ready() -> bool:
    return False


async def test_output_is_prefixed_and_stop_ends_everything_with_0() -> None:
    out = io.StringIO()
    sup = Supervisor(
        [
            Service("one", child("import time; print('hello'); time.sleep(60)"), ready=ready_now),
            Service("second", child("import time; print('hi'); time.sleep(60)")),
        ],
        out=out,
        color=False,
    )
    stop = asyncio.Event()
    task = asyncio.create_task(sup.run(stop))
    lines = ("everything is up", "one    | hello", "second | hi")  # and the children's first
    await until(lambda: all(line in out.getvalue() for line in lines), timeout=30, every=0.05)
    processes = [r.process for r in sup.running]
    stop.set()
    assert await asyncio.wait_for(task, 10) == 0
    printed = out.getvalue().splitlines()
    assert "one    | hello" in printed
    assert "second | hi" in printed
    # stopped in reverse order of starting, and really gone
    assert printed.index("up     | stopping second") < printed.index("up     | stopping one")
    assert all(p.returncode is not None for p in processes)


async def test_a_child_that_dies_stops_the_rest_and_fails() -> None:
    out = io.StringIO()
    sup = Supervisor(
        [
            Service("steady", child("import time; time.sleep(60)")),
            Service("fragile", child("import time; time.sleep(0.5); raise SystemExit(3)")),
        ],
        out=out,
        color=False,
    )
    assert await asyncio.wait_for(sup.run(asyncio.Event()), 15) == 1
    assert "fragile exited unexpectedly with code 3: stopping everything" in out.getvalue()
    assert "stopping steady" in out.getvalue()


async def test_a_child_that_never_gets_ready_times_out() -> None:
    out = io.StringIO()
    sup = Supervisor(
        [Service("slow", child("import time; time.sleep(60)"), ready=never_ready)],
        out=out,
        ready_timeout=0.5,
        color=False,
    )
    assert await asyncio.wait_for(sup.run(asyncio.Event()), 15) == 1
    assert "slow was not ready within 0.5 s" in out.getvalue()


async def test_a_child_that_exits_while_starting_is_reported() -> None:
    out = io.StringIO()
    sup = Supervisor([Service("broken", child("raise SystemExit(2)"), ready=never_ready)], out=out)
    assert await asyncio.wait_for(sup.run(asyncio.Event()), 15) == 1
    assert "broken exited (code 2) before it was ready" in out.getvalue()


async def test_a_child_that_ignores_sigterm_is_killed() -> None:
    out = io.StringIO()
    stubborn = (
        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
        "print('ok'); time.sleep(60)"
    )
    sup = Supervisor([Service("stubborn", child(stubborn))], out=out, stop_timeout=0.5, color=False)
    stop = asyncio.Event()
    task = asyncio.create_task(sup.run(stop))
    await until(lambda: "stubborn | ok" in out.getvalue(), timeout=30, every=0.05)
    stop.set()
    assert await asyncio.wait_for(task, 10) == 0
    assert "stubborn did not stop in 0.5 s: killing it" in out.getvalue()


async def test_waiting_ends_when_the_caller_gives_up_or_time_is_out() -> None:
    assert await until_ready(ready_now, within=1.0)
    assert not await until_ready(never_ready, within=0.2)
    assert not await until_ready(ready_now, within=10.0, given_up=lambda: True)


async def test_a_probe_can_be_waited_for_from_inside_a_running_loop() -> None:
    assert run_to_end(until_ready(ready_now, within=1.0))


async def test_neighbours_of_one_group_are_stopped_together(tmp_path: Path) -> None:
    """Each of these stops only once the other has been told to, as each node of a cluster
    stopped alone would call out for the others: one after the other, the first would be
    killed at the stop timeout."""
    term = (
        "import os, signal, sys, time\n"
        "mine, theirs = sys.argv[1:3]\n"
        "def stop(*_):\n"
        "    open(mine, 'w').close()\n"
        "    while not os.path.exists(theirs):\n"
        "        time.sleep(0.01)\n"
        "    sys.exit(0)\n"
        "signal.signal(signal.SIGTERM, stop)\n"
        "print('ok')\n"
        "while True:\n"
        "    time.sleep(1)\n"
    )
    a, b = str(tmp_path / "a"), str(tmp_path / "b")
    pair = [
        Service("a", [*child(term), a, b], group="pair"),
        Service("b", [*child(term), b, a], group="pair"),
    ]
    out = io.StringIO()
    sup = Supervisor(pair, out=out, stop_timeout=10, color=False)
    stop = asyncio.Event()
    task = asyncio.create_task(sup.run(stop))
    ready = ("everything is up", "a  | ok", "b  | ok")  # their SIGTERM handlers are set
    await until(lambda: all(line in out.getvalue() for line in ready), timeout=30, every=0.05)
    processes = [r.process for r in sup.running]
    stop.set()
    assert await asyncio.wait_for(task, 30) == 0
    assert "did not stop" not in out.getvalue()
    assert [p.returncode for p in processes] == [0, 0]


async def test_with_restarts_a_child_that_dies_is_started_again_and_the_rest_run_on() -> None:
    out = io.StringIO()
    sup = Supervisor(
        [
            Service("steady", child("import time; print('up'); time.sleep(60)")),
            Service("fragile", child("import time; print('up'); time.sleep(60)")),
        ],
        out=out,
        color=False,
        restart_after=0.1,
    )
    stop = asyncio.Event()
    task = asyncio.create_task(sup.run(stop))
    await until(lambda: "everything is up" in out.getvalue(), timeout=30, every=0.05)
    steady, fragile = (r.process for r in sup.running)
    fragile.kill()
    await until(lambda: "fragile is ready again" in out.getvalue(), timeout=30, every=0.05)
    assert steady.returncode is None, "the others carry on"
    assert [r.service.name for r in sup.running] == ["steady", "fragile"]
    assert sup.running[1].process is not fragile
    stop.set()
    assert await asyncio.wait_for(task, 15) == 0
    assert "starting it again in 0.1 s" in out.getvalue()
