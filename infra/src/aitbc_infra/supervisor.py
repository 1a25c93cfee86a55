"""Run services as child processes in the foreground, like foreman: prefixed output, readiness
checks, and a clean stop (reverse order, SIGTERM, then SIGKILL after a timeout)."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import signal
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TextIO

from aitbc_infra.readiness import Probe, until_ready

COLORS = ("36", "33", "32", "35", "34", "31")  # cyan, yellow, green, magenta, blue, red
LINE_LIMIT = 1 << 20  # a child's log line may be long; beyond this it is cut, not fatal


@dataclass(frozen=True)
class Service:
    """One child process. `ready` says when it serves (aitbc_infra.readiness)."""

    name: str
    argv: Sequence[str]
    env: Mapping[str, str] = field(default_factory=dict)
    ready: Probe | None = None  # None: ready as soon as it has started
    address: str = ""  # for people: where it serves, shown once everything is ready
    port: int | None = None  # the TCP port it listens on, if any
    # Services started one after another with the same group are stopped together: a
    # cluster's nodes, each of which would otherwise try to reach the ones stopped before it.
    group: str = ""


@dataclass
class Running:
    service: Service
    process: asyncio.subprocess.Process
    pump: asyncio.Task[None]


def _libc_prctl() -> Callable[..., int] | None:
    try:
        prctl: Callable[..., int] = ctypes.CDLL(None).prctl  # looked up now, not after fork
    except (OSError, AttributeError):
        return None
    return prctl


_PRCTL = _libc_prctl() if sys.platform == "linux" else None
PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:  # pragma: no cover - runs in the child, between fork and exec
    """Linux: SIGTERM the child if the runner itself is killed (SIGKILL), so nothing is orphaned."""
    if _PRCTL is not None:
        _PRCTL(PR_SET_PDEATHSIG, signal.SIGTERM)


async def _at_once() -> bool:
    """The readiness of a service without a probe: as soon as it has started."""
    return True


class Supervisor:
    def __init__(
        self,
        services: Sequence[Service],
        out: TextIO = sys.stdout,
        ready_timeout: float = 30.0,
        stop_timeout: float = 10.0,
        color: bool | None = None,
        restart_after: float | None = None,
    ) -> None:
        self.services = list(services)
        self.out = out
        self.ready_timeout = ready_timeout
        self.stop_timeout = stop_timeout
        # None: a child that dies stops everything (`just up`: one of each, nothing to fail
        # over to). Else it is started again this many seconds later while the others carry
        # on, as a process manager would (`just cluster`: faults can be tried by killing any).
        self.restart_after = restart_after
        if color is None:
            color = out.isatty() and "NO_COLOR" not in os.environ
        self.color = color
        self.width = max([len(s.name) for s in self.services] + [len("up")])
        self.running: list[Running] = []

    # --- output ----------------------------------------------------------------------------

    def _prefix(self, name: str, index: int) -> str:
        label = f"{name:<{self.width}} |"
        if self.color:
            return f"\x1b[{COLORS[index % len(COLORS)]}m{label}\x1b[0m "
        return label + " "

    def say(self, message: str) -> None:
        label = f"{'up':<{self.width}} |"
        prefix = f"\x1b[1m{label}\x1b[0m " if self.color else label + " "
        for line in message.splitlines() or [""]:
            self.out.write(prefix + line + "\n")
        self.out.flush()

    async def _pump(self, stream: asyncio.StreamReader, prefix: str) -> None:
        while True:
            try:
                line = await stream.readline()
            except ValueError:  # longer than LINE_LIMIT: take what there is
                line = await stream.read(LINE_LIMIT)
            if not line:
                return
            self.out.write(prefix + line.decode(errors="replace").rstrip("\r\n") + "\n")
            self.out.flush()

    # --- lifecycle -------------------------------------------------------------------------

    async def _spawn(self, service: Service, index: int) -> Running:
        process = await asyncio.create_subprocess_exec(
            *service.argv,
            env={**os.environ, **service.env},
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            limit=LINE_LIMIT,
            # Its own process group: Ctrl-C reaches the runner only, which stops the children
            # in order, instead of every child at once.
            process_group=0,
            preexec_fn=_die_with_parent if _PRCTL is not None else None,
        )
        assert process.stdout is not None
        pump = asyncio.create_task(self._pump(process.stdout, self._prefix(service.name, index)))
        running = Running(service, process, pump)
        self.running.append(running)
        return running

    async def _wait_ready(self, running: Running, stop: asyncio.Event) -> bool:
        service, process = running.service, running.process
        ended = lambda: process.returncode is not None or stop.is_set()  # noqa: E731
        if await until_ready(service.ready or _at_once, self.ready_timeout, ended):
            return True
        if process.returncode is not None:
            self.say(f"{service.name} exited (code {process.returncode}) before it was ready")
        elif not stop.is_set():
            self.say(f"{service.name} was not ready within {self.ready_timeout:g} s: giving up")
        return False

    async def run_in_foreground(self, summary: str = "") -> int:
        """`run` until Ctrl-C or SIGTERM (exit 0); a second one kills the children at once."""
        stop = asyncio.Event()

        def on_signal() -> None:
            if stop.is_set():
                self.say("stopping at once")
                self.kill_all()
            stop.set()

        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, on_signal)
        return await self.run(stop, summary)

    async def run(self, stop: asyncio.Event, summary: str = "") -> int:
        """Start every service in order, then wait for `stop` (exit 0) or a death (exit 1).
        `summary` is said once everything is up, where a person looks for it."""
        try:
            for index, service in enumerate(self.services):
                self.say(f"starting {service.name}: {' '.join(service.argv)}")
                running = await self._spawn(service, index)
                if not await self._wait_ready(running, stop):
                    return 0 if stop.is_set() else 1
                where = f" on {service.address}" if service.address else ""
                self.say(f"{service.name} is ready{where}")
            if summary:
                self.say(summary)
            self.say("everything is up. Ctrl-C stops it.")
            return await self._watch(stop)
        finally:
            await self.shutdown()
            self.say("all stopped")

    async def _watch(self, stop: asyncio.Event) -> int:
        stopping = asyncio.create_task(stop.wait())
        try:
            while True:
                exits = {asyncio.create_task(r.process.wait()): r for r in self.running}
                done, _ = await asyncio.wait(
                    [*exits, stopping], return_when=asyncio.FIRST_COMPLETED
                )
                for task in exits:
                    task.cancel()
                if stopping in done:
                    return 0
                died = next(exits[task] for task in done if task in exits)
                code, name = died.process.returncode, died.service.name
                if self.restart_after is None:
                    self.say(f"{name} exited unexpectedly with code {code}: stopping everything")
                    return 1
                self.say(
                    f"{name} exited unexpectedly with code {code}: starting it again in "
                    f"{self.restart_after:g} s; the others carry on"
                )
                await self._restart(died, stop)
        finally:
            stopping.cancel()

    async def _restart(self, died: Running, stop: asyncio.Event) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), self.restart_after)
        if stop.is_set():
            return
        index = self.running.index(died)
        self.running.remove(died)
        running = await self._spawn(died.service, self.services.index(died.service))
        self.running.remove(running)
        self.running.insert(index, running)  # stopped in its place in the order
        if await self._wait_ready(running, stop):
            self.say(f"{died.service.name} is ready again")

    def _signal(self, running: Running, sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(running.process.pid, sig)

    async def shutdown(self) -> None:
        """Stop the children in reverse order of starting, those of one `group` side by side:
        SIGTERM, then SIGKILL if they linger."""
        for batch in self._batches():
            await asyncio.gather(*(self._stop(running) for running in batch))
        self.running.clear()

    def _batches(self) -> list[list[Running]]:
        """The children in reverse order of starting, neighbours of one `group` together."""
        batches: list[list[Running]] = []
        for running in reversed(self.running):
            group = running.service.group
            if batches and group and batches[-1][0].service.group == group:
                batches[-1].append(running)
            else:
                batches.append([running])
        return batches

    async def _stop(self, running: Running) -> None:
        if running.process.returncode is None:
            self.say(f"stopping {running.service.name}")
            self._signal(running, signal.SIGTERM)
            try:
                await asyncio.wait_for(running.process.wait(), self.stop_timeout)
            except TimeoutError:
                name = running.service.name
                self.say(f"{name} did not stop in {self.stop_timeout:g} s: killing it")
                self._signal(running, signal.SIGKILL)
                await running.process.wait()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(running.pump, 2.0)

    def kill_all(self) -> None:
        """A second Ctrl-C: no more waiting."""
        for running in self.running:
            self._signal(running, signal.SIGKILL)
