"""The usage events' journal on the edge's disk, so that a killed edge loses none.

The publisher buffers events for up to `linger` before a batch goes to the usage stream: a
SIGKILL would lose those, and the batches sent but not yet acknowledged. With a spool
(`USAGE_SPOOL_DIR`), each served request is appended to a journal before it is buffered (with
a sequence number), each batch when it is formed (msg id, subject, bytes, and the sequence
numbers it holds), and each batch's acknowledgement once it is stored. The next start on the
same folder reads it back: requests in no batch are buffered again, batches never
acknowledged are sent again as they were (same bytes, same `Nats-Msg-Id`: the stream's
de-duplication, 120 s, stores one that did arrive only once).

A record is copied into the segment's file through a shared memory map: into the page cache,
which a killed process cannot lose, without a system call (a `write(2)` per request cost about
3 us, a sixth of the whole gate's time: bench/results/ANALYSIS.md). It is not fsynced, so a
machine that loses power loses what the kernel had not written yet. A record's length goes
in after its bytes: a kill between the two leaves a zero length, which ends the journal.

The journal is cut into segments, a new one each second (or when one is full), each a file
made SEGMENT_BYTES long (sparse) and cut to what was written when it is closed, which begins
with a mark: the
lowest sequence number not yet stored (every request below it is done with). A segment goes
once the mark has passed every sequence number it names, so that whatever a later reading
needs to know about a request at or above the mark is still there. Records are
length-prefixed msgpack.
"""

from __future__ import annotations

import fcntl
import logging
import mmap
import os
import struct
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import msgspec

log = logging.getLogger("aitbc.api.usage_spool")
ROTATE_SECONDS = 1.0
# Room for a second of records at a busy gate's pace, and more than any batch (512 KiB) whole
SEGMENT_BYTES = 32 * 1024 * 1024
_LENGTH = struct.Struct(">I")


class Formed(msgspec.Struct, tag="b", gc=False):
    """A batch as it was formed: sent again as it is until it is stored."""

    msg_id: str
    subject: str
    payload: bytes
    seqs: list[int]  # the served requests it holds


class Stored(msgspec.Struct, tag="a", gc=False):
    msg_id: str


class Mark(msgspec.Struct, tag="m", gc=False):
    low: int  # every request numbered below it is stored (or was dropped)


SLOTS = 64  # processes that may share one spool folder (a server's workers, each a gate)


def _claim(folder: Path) -> tuple[Path, int]:
    """The first slot of `folder` no other process holds, and its lock (held until closed):
    the folder itself, then `worker-1`, `worker-2`... So the workers of one server (each with
    a gate of its own) share one USAGE_SPOOL_DIR, and a restarted one takes a slot that is
    free again, and what its last holder left there."""
    for slot in range(SLOTS):
        place = folder if slot == 0 else folder / f"worker-{slot}"
        place.mkdir(mode=0o700, parents=True, exist_ok=True)
        lock = os.open(place / "lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(lock)
            continue
        return place, lock
    raise RuntimeError(f"{SLOTS} processes are using the usage spool {folder} already")


class Spool:
    """The journal in a slot of `folder`, for one process at a time (a lock file says which).
    `low()` is the publisher's lowest sequence number not yet stored."""

    def __init__(self, folder: Path, low: Callable[[], int]) -> None:
        self.folder, self._lock = _claim(folder)
        self.low = low
        self.next_seq = 1
        self._highest: dict[int, int] = {}  # segment -> the highest sequence number it names
        self._segment, self._fd, self._opened = 0, -1, 0.0
        self._map: mmap.mmap | None = None
        self._at = 0  # where the next record goes in the segment

    def recover(self, served_type: Any) -> tuple[list[Any], list[Formed]]:
        """What a previous run left: the requests in no batch, in order, and the batches not
        stored. The journal of this run opens with its first record, once the publisher holds
        them: its mark must not pass them."""
        decoder = msgspec.msgpack.Decoder(served_type | Formed | Stored | Mark)
        served: dict[int, Any] = {}
        formed: dict[str, Formed] = {}
        stored: set[str] = set()
        low = 0
        for segment, path in sorted(
            (int(p.stem), p) for p in self.folder.glob("*.spool") if p.stem.isdecimal()
        ):
            self._segment = segment
            self._names(segment, 0)
            for record in _records(path.read_bytes(), decoder):
                if isinstance(record, Mark):
                    low = max(low, record.low)
                elif isinstance(record, Stored):
                    stored.add(record.msg_id)
                elif isinstance(record, Formed):
                    formed[record.msg_id] = record
                    self._names(segment, max(record.seqs, default=0))
                else:
                    served[record.seq] = record
                    self._names(segment, record.seq)
        in_batches = {seq for batch in formed.values() for seq in batch.seqs}
        unsent = [b for b in formed.values() if b.msg_id not in stored and max(b.seqs) >= low]
        left = [served[s] for s in sorted(served) if s >= low and s not in in_batches]
        return left, unsent

    def _names(self, segment: int, seq: int) -> None:
        self._highest[segment] = max(self._highest.get(segment, 0), seq)
        self.next_seq = max(self.next_seq, seq + 1)

    def _open(self) -> None:
        """A new segment, which begins with the mark; the segments the mark has passed go."""
        self._close_segment()
        self._segment += 1
        path = self.folder / f"{self._segment:012d}.spool"
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
        os.ftruncate(self._fd, SEGMENT_BYTES)
        self._map, self._at = mmap.mmap(self._fd, SEGMENT_BYTES), 0
        self._opened = time.monotonic()
        self._highest[self._segment] = 0
        low = self.low()
        self._write(Mark(low))
        for segment, highest in list(self._highest.items()):
            if highest < low and segment != self._segment:
                del self._highest[segment]
                (self.folder / f"{segment:012d}.spool").unlink(missing_ok=True)

    def _close_segment(self) -> None:
        """The segment cut to its records (a later reading finds the journal's end there)."""
        if self._map is not None:
            self._map.close()
            self._map = None
            os.ftruncate(self._fd, self._at)
            os.close(self._fd)
            self._fd = -1

    def _write(self, record: msgspec.Struct) -> None:
        data = _encode(record)
        end = self._at + _LENGTH.size + len(data)
        if end > SEGMENT_BYTES:  # full: the record opens the next one, after its mark
            self._open()
            end = self._at + _LENGTH.size + len(data)
        journal, at = self._map, self._at
        assert journal is not None
        journal[at + _LENGTH.size : end] = data
        journal[at : at + _LENGTH.size] = _LENGTH.pack(len(data))  # last: now it counts
        self._at = end

    def served(self, served: Any) -> None:
        """Numbers a request (its `seq`) and journals it, before it is buffered."""
        if time.monotonic() - self._opened >= ROTATE_SECONDS:
            self._open()  # also the first time
        served.seq = self.next_seq
        self.next_seq += 1
        self._highest[self._segment] = served.seq
        self._write(served)

    def formed(self, batch: Formed) -> None:
        if self._fd < 0:
            self._open()
        self._highest[self._segment] = max(self._highest.get(self._segment, 0), *batch.seqs)
        self._write(batch)

    def stored(self, msg_id: str) -> None:
        if self._fd < 0:
            self._open()
        self._write(Stored(msg_id))

    def close(self) -> None:
        """Closes the journal; with nothing left to store, nothing stays on disk."""
        if self._map is not None:
            self._close_segment()
            if self.low() >= self.next_seq:
                for path in self.folder.glob("*.spool"):
                    path.unlink(missing_ok=True)
        os.close(self._lock)


_encode = msgspec.msgpack.Encoder().encode


def _records(data: bytes, decoder: msgspec.msgpack.Decoder[Any]) -> Iterator[Any]:
    at = 0
    while at + _LENGTH.size <= len(data):
        (length,) = _LENGTH.unpack_from(data, at)
        if length == 0:  # the end: the room left in a segment, or a record a kill cut short
            return
        end = at + _LENGTH.size + length
        if end > len(data):
            log.warning("usage spool: a record cut short by a kill ends the journal")
            return
        yield decoder.decode(data[at + _LENGTH.size : end])
        at = end
