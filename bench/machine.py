"""What the numbers were measured on: machine, interpreter, libraries, binaries, commit."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import subprocess
import sys
from pathlib import Path

from bench.stack import ROOT

PACKAGES = ("litestar", "uvicorn", "uvloop", "httptools", "aiohttp", "nats-py", "msgspec",
            "faststream", "sqlalchemy", "aiosqlite", "redis", "py-spy")  # fmt: skip


def _first_line(argv: list[str]) -> str:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False)
    except OSError:
        return "not found"
    return ((out.stdout or out.stderr).strip().splitlines() or ["?"])[0]


def _cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "?"


def _memory() -> str:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    return "?"


def describe() -> dict[str, object]:
    versions = {}
    for package in PACKAGES:
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            versions[package] = "missing"
    commit = _first_line(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"])
    dirty = _first_line(["git", "-C", str(ROOT), "status", "--porcelain"]) not in ("", "?")
    return {
        "nproc": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "memory": _memory(),
        "kernel": platform.release(),
        "python": sys.version.split()[0],
        "packages": versions,
        "nats_server": _first_line([str(Path(sys.executable).parent / "nats-server"), "--version"]),
        "redis_server": _first_line(["redis-server", "--version"]),
        "wrk": _first_line(["wrk", "-v"]),
        "commit": commit + (" (with uncommitted changes)" if dirty else ""),
    }
