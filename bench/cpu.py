"""CPU time per process across a measurement, from /proc/<pid>/stat: who used the two cores."""

from __future__ import annotations

import os
import resource
import time
from pathlib import Path

_TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a running process (all its threads) and of its running
    descendants (an edge's workers under API_WORKERS are its children)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    own = (int(fields[11]) + int(fields[12])) / _TICK  # utime, stime
    return own + sum(cpu_seconds(child) for child in _children_of(pid))


def _children_of(pid: int) -> list[int]:
    children: list[int] = []
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            children += [int(c) for c in (task / "children").read_text().split()]
    except OSError:  # ended meanwhile
        return []
    return children


def runqueue_seconds(pid: int) -> float:
    """Seconds a process's threads spent ready to run but waiting for a core (schedstat's
    second field): how much the other processes on the machine held it back."""
    waited = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            waited += int((task / "schedstat").read_text().split()[1])
        except (OSError, IndexError, ValueError):  # a thread that ended; no schedstat
            continue
    return waited / 1e9


def pin(pid: int, cpus: set[int]) -> None:
    """Runs every thread of `pid` on `cpus` only (threads it starts later inherit it)."""
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except OSError:  # the process is gone: nothing to place
        return
    for task in tasks:
        try:
            os.sched_setaffinity(int(task.name), cpus)
        except OSError:  # a thread that ended meanwhile
            continue


def system_busy() -> tuple[float, float]:
    """CPU seconds the whole machine spent busy, and stolen by the hypervisor (/proc/stat)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields
    return (user + nice + system + irq + softirq) / _TICK, steal / _TICK


def load_average() -> float:
    return float(Path("/proc/loadavg").read_text().split()[0])


def _children() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


class CpuMeter:
    """CPU seconds of each named process (and seconds it waited for a core), plus the load
    generator (children that exited), and of everything else on the machine ("others": the
    machine is shared; a run with others busy is noise, and the report says so)."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = pids
        self._start: dict[str, float] = {}
        self._wall = 0.0

    def __enter__(self) -> CpuMeter:
        self._waited = {name: runqueue_seconds(pid) for name, pid in self.pids.items()}
        self._start = {name: cpu_seconds(pid) for name, pid in self.pids.items()}
        self._start["load generator"] = _children()
        self._system = system_busy()
        self._wall = time.perf_counter()
        return self

    def __exit__(self, *_: object) -> None:
        self.wall = time.perf_counter() - self._wall
        end = {name: cpu_seconds(pid) for name, pid in self.pids.items()}
        self.waited = {
            name: runqueue_seconds(pid) - self._waited[name] for name, pid in self.pids.items()
        }
        end["load generator"] = _children()
        busy, steal = system_busy()
        self.seconds = {name: end[name] - self._start[name] for name in end}
        ours = sum(self.seconds.values())
        self.others = max(0.0, busy - self._system[0] - ours)  # seconds of CPU
        self.steal = steal - self._system[1]
