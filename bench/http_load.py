"""HTTP load: wrk (closed loop, as many requests as 32 connections carry) and bench/paced.py
(open loop, a fixed rate), each a child process whose figures come back as JSON."""

from __future__ import annotations

import asyncio
import json
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROTATE = HERE / "wrk" / "rotate.lua"


def wrk_binary() -> str:
    found = shutil.which("wrk")
    if found is None:
        raise SystemExit(
            "wrk is not installed: `just bench` installs it (apt-get install -y wrk, as root)"
        )
    return found


@dataclass(frozen=True)
class Target:
    """What one scenario loads: a URL, and optionally headers rotated over a file of values
    (`header`: their names, comma-separated; a line of the file: their values, tab-separated)."""

    name: str
    url: str
    header: str | None = None
    values: Path | None = None

    def wrk_argv(self, seconds: float, connections: int, threads: int) -> list[str]:
        argv = [wrk_binary(), f"-t{threads}", f"-c{connections}", f"-d{round(seconds)}s"]
        argv += ["--timeout", "10s", "-s", str(ROTATE), self.url]
        if self.header and self.values:
            argv += ["--", self.header, str(self.values)]
        return argv

    def paced_argv(self, rate: float, seconds: float, connections: int) -> list[str]:
        argv = [sys.executable, "-m", "bench.paced", self.url, f"--rate={rate:.0f}"]
        argv += [f"--duration={seconds:g}", f"--connections={connections}"]
        if self.header and self.values:
            argv += ["--header", self.header, "--values", str(self.values)]
        return argv


async def _run(argv: list[str], cwd: Path) -> str:
    process = await asyncio.create_subprocess_exec(
        *argv, cwd=cwd, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await process.communicate()
    if process.returncode != 0:
        raise RuntimeError(f"{argv[0]} failed ({process.returncode}): {err.decode()[-2000:]}")
    return out.decode()


async def wrk(target: Target, seconds: float, connections: int, threads: int = 1) -> dict:
    out = await _run(target.wrk_argv(seconds, connections, threads), HERE.parent)
    for line in out.splitlines():
        if line.startswith("WRK_JSON "):
            result = json.loads(line[len("WRK_JSON ") :])
            seconds_run = result["duration_us"] / 1e6
            errors = sum(
                result[k] for k in ("connect_errors", "read_errors", "write_errors", "timeouts")
            )
            return {
                "rps": result["requests"] / seconds_run,
                "requests": result["requests"],
                "non_2xx": result["status_errors"],
                "socket_errors": errors,
                "p50_ms": result["p50_us"] / 1000,
                "p90_ms": result["p90_us"] / 1000,
                "p99_ms": result["p99_us"] / 1000,
                "p999_ms": result["p999_us"] / 1000,
                "max_ms": result["max_us"] / 1000,
                "mean_ms": result["mean_us"] / 1000,
            }
    raise RuntimeError(f"no figures in wrk's output:\n{out}")


async def paced(target: Target, rate: float, seconds: float, connections: int) -> dict:
    out = await _run(target.paced_argv(rate, seconds, connections), HERE.parent)
    return dict(json.loads(out.strip().splitlines()[-1]))
