"""Where the time goes: py-spy samples of a process under load, folded by layer and by frame.

py-spy samples the process from outside (no instrumentation, --nonblocking: the target is never
paused), so the profile costs the measured process nothing but the sampler's own CPU.
"""

from __future__ import annotations

import asyncio
import sys
from collections import Counter
from pathlib import Path

PY_SPY = Path(sys.executable).parent / "py-spy"
RATE = 250  # samples per second

# The first rule that matches a frame's file names its layer; a sample is charged to the layer
# of its innermost frame that belongs to one (so the event loop's own frames come last).
LAYERS = [
    ("aitbc code (edge, usage, keys, contracts)", ("aitbc_",)),
    ("nats-py client", ("nats/",)),
    ("aiohttp (to the upstream, before session 15)", ("aiohttp/", "multidict/", "yarl/")),
    ("httpx/httpcore/h11", ("httpx/", "httpcore/", "h11/")),
    ("anyio (streamed answers, FastStream's tasks)", ("anyio/",)),
    ("sqlalchemy + aiosqlite", ("sqlalchemy/", "aiosqlite/", "sqlite3/")),
    ("faststream / fast_depends", ("faststream/", "fast_depends/")),
    ("litestar (routing, request, response)", ("litestar/",)),
    ("uvicorn + httptools (HTTP server)", ("uvicorn/", "httptools/")),
    ("msgspec", ("msgspec/",)),
    ("logging", ("logging/",)),
    ("asyncio / uvloop (scheduling, I/O)", ("asyncio/", "uvloop/", "runners.py")),
]

# Inclusive: a sample counts for each of these whose frame is anywhere on its stack
# ("A>B": a frame matching B somewhere inside a frame matching A).
AREAS = [
    ("the whole request, inside the request layer", "RequestLayer.__call__"),
    ("  access log line (logging)", "RequestLayer.__call__>logging/__init__.py"),
    ("  usage event built and queued (_record)", "_record (aitbc_gate/requests.py"),
    (
        "  the app behind the gate (the gated Coordinator's Litestar)",
        "RequestLayer.__call__>litestar/app.py",
    ),
    ("forward (whole handler: gate + upstream request)", "forward (aitbc_api/proxy/forward.py"),
    ("  gate: admission (auth + rate limit + headers)", "aitbc_gate/admission.py"),
    ("    auth: Authenticator.authenticate", "Authenticator.authenticate"),
    ("    rate limit: RateLimiter.check", "RateLimiter.check"),
    ("  upstream: request sent, response head read", "UpstreamPool.request"),
    (
        "  upstream: the answer's bytes parsed (httptools callbacks)",
        "UpstreamConnection.data_received",
    ),
    ("the upstream's answer relayed back (proxy.Relay)", "Relay.__call__ (aitbc_api/proxy/"),
    ("decision batches out/in (DecisionBatcher._send)", "DecisionBatcher._send"),
    ("usage events to JetStream (UsagePublisher)", "UsagePublisher."),
    ("key events in (KeyEventReader / CacheInvalidation)", "cache_invalidation.py"),
    ("usage: Deciding.decide", "Deciding.decide"),
    ("usage: aggregator (usage stream -> SQL)", "Aggregator."),
    ("usage: snapshots", "Snapshotter."),
    ("keys: Handlers.check", "Handlers.check"),
    ("keys: outbox relay", "(aitbc_keys/outbox.py"),
    ("FastStream consume path", "faststream/"),
    ("SQLAlchemy", "sqlalchemy/"),
]


async def record(pid: int, seconds: float, out: Path) -> Path:
    """py-spy record in folded-stack ("raw") form; a flame graph tool reads it as it is."""
    argv = [str(PY_SPY), "record", "--pid", str(pid), "--duration", f"{seconds:.0f}"]
    argv += ["--rate", str(RATE), "--format", "raw", "--output", str(out), "--nonblocking"]
    process = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE
    )
    _, err = await process.communicate()
    if process.returncode != 0:
        raise RuntimeError(f"py-spy failed: {err.decode()[-1000:]}")
    return out


# Innermost frames of threads that are waiting, not working (py-spy's --nonblocking sampling
# does not always see them as idle): a logging queue listener, aiosqlite's worker.
WAITING = ("Condition.wait (threading.py", "Queue.get (queue.py", "(aiosqlite/core.py:59)")


def _layer(frames: list[str]) -> str:
    for frame in reversed(frames):
        for name, needles in LAYERS:
            if any(needle in frame for needle in needles):
                return name
    return "other (C code, interpreter)"


def _contains(stack: str, needle: str) -> bool:
    position = 0
    for part in needle.split(">"):
        position = stack.find(part, position)
        if position < 0:
            return False
    return True


def summarize(folded: Path, top: int = 12) -> dict:
    """Samples by layer (innermost matching frame) and the hottest frames (self time), leaving
    out threads caught waiting."""
    layers: Counter[str] = Counter()
    areas: Counter[str] = Counter()
    own: Counter[str] = Counter()
    total = 0
    for line in folded.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        n = int(count)
        frames = stack.split(";")
        if any(w in frames[-1] for w in WAITING):
            continue
        total += n
        layers[_layer(frames)] += n
        for name, needle in AREAS:
            if _contains(stack, needle):
                areas[name] += n
        own[frames[-1].strip()] += n
    return {
        "samples": total,
        "rate": RATE,
        "layers": dict(layers.most_common()),
        "areas": {name: areas[name] for name, _ in AREAS if areas[name]},
        "top_frames": own.most_common(top),
    }
