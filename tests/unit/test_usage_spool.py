"""The usage spool: what a killed edge's journal gives its next start, and what it lets go."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from aitbc_contracts.keyformat import generate_key
from aitbc_gate import usage_spool
from aitbc_gate.usage_events import Served, UsagePublisher
from aitbc_gate.usage_spool import Formed, Spool


def served(n: int) -> Served:
    return Served(
        f"r{n}", "acc_1", "key_1", "GET", "/v1/jobs", "/v1/jobs", 200, 1.0, "admitted", 0.0
    )


def killed(spool: Spool) -> None:
    """What SIGKILL leaves: the files as written, the descriptors closed by the kernel."""
    os.close(spool._fd)
    os.close(spool._lock)


def test_a_killed_edge_leaves_its_unstored_requests_and_batches_to_the_next_start(
    tmp_path: Path,
) -> None:
    spool = Spool(tmp_path, low=lambda: 1)
    requests = [served(n) for n in range(6)]
    for request in requests:
        spool.served(request)
    assert [r.seq for r in requests] == [1, 2, 3, 4, 5, 6]
    stored = Formed("b1", "aitbc.usage.events.p1", b"one", [1, 2])
    sent = Formed("b2", "aitbc.usage.events.p2", b"two", [3, 5])  # acknowledgement lost
    spool.formed(stored)
    spool.formed(sent)
    spool.stored("b1")
    killed(spool)

    again = Spool(tmp_path, low=lambda: 1)
    left, unsent = again.recover(Served)
    assert [r.request_id for r in left] == ["r3", "r5"]  # in no batch: buffered again
    assert unsent == [sent]  # the same bytes, the same msg id: stored once at most
    assert again.next_seq == 7  # numbers go on from where they stopped


def test_a_record_cut_short_by_the_kill_ends_the_journal(tmp_path: Path) -> None:
    """A record's length goes in after its bytes: killed in between, it is not there."""
    spool = Spool(tmp_path, low=lambda: 1)
    spool.served(served(1))
    second = spool._at  # where the next record goes
    spool.served(served(2))
    killed(spool)
    (segment,) = tmp_path.glob("*.spool")
    journal = bytearray(segment.read_bytes())
    journal[second : second + 4] = bytes(4)  # its bytes copied, its length not yet
    segment.write_bytes(journal)
    left, unsent = Spool(tmp_path, low=lambda: 1).recover(Served)
    assert [r.request_id for r in left] == ["r1"] and unsent == []


def test_a_full_segment_opens_the_next(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(usage_spool, "SEGMENT_BYTES", 256)  # a mark and a few requests each
    spool = Spool(tmp_path, low=lambda: 1)
    for n in range(20):
        spool.served(served(n))
    killed(spool)
    assert len(list(tmp_path.glob("*.spool"))) > 2
    left, _ = Spool(tmp_path, low=lambda: 1).recover(Served)
    assert [r.request_id for r in left] == [f"r{n}" for n in range(20)]


def test_processes_sharing_a_spool_folder_take_a_slot_each(tmp_path: Path) -> None:
    """A server's workers, each with a gate, are given one USAGE_SPOOL_DIR: each journals in
    a slot of its own, and a restarted one takes a free slot, and what was left there."""
    first, second = Spool(tmp_path, low=lambda: 1), Spool(tmp_path, low=lambda: 1)
    assert (first.folder, second.folder) == (tmp_path, tmp_path / "worker-1")
    second.served(served(7))
    killed(second)
    again = Spool(tmp_path, low=lambda: 1)  # the first still holds its slot
    left, _ = again.recover(Served)
    assert again.folder == tmp_path / "worker-1" and [r.request_id for r in left] == ["r7"]


def test_segments_go_once_the_mark_has_passed_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(usage_spool, "ROTATE_SECONDS", 0.0)  # a new segment for each request
    low = [1]
    spool = Spool(tmp_path, low=lambda: low[0])
    for n in range(3):
        spool.served(served(n))
    assert len(list(tmp_path.glob("*.spool"))) == 3
    low[0] = 3  # requests 1 and 2 are stored
    spool.served(served(3))
    kept = sorted(int(p.stem) for p in tmp_path.glob("*.spool"))
    assert kept == [3, 4], "the segments naming requests 1 and 2 went"
    killed(spool)
    left, _ = Spool(tmp_path, low=lambda: 1).recover(Served)
    assert [r.seq for r in left] == [3, 4]


def test_a_clean_stop_with_everything_stored_leaves_nothing(tmp_path: Path) -> None:
    publisher = UsagePublisher(None, capacity=10, spool=tmp_path)  # type: ignore[arg-type]
    assert publisher.spool is not None
    publisher.spool.served(served(1))
    publisher.spool.close()
    assert list(tmp_path.glob("*.spool")) == []  # nothing buffered, nothing unsent


def test_the_spool_holds_the_route_name_never_the_clients_path(tmp_path: Path) -> None:
    key = generate_key()
    publisher = UsagePublisher(None, capacity=10, spool=tmp_path)  # type: ignore[arg-type]
    pasted = Served("r1", "acc_1", "key_1", "GET", "/v1/{path:path}", f"/v1/jobs/{key}", 404,
                    1.0, "admitted", 0.0)  # fmt: skip
    publisher.emit(pasted)
    journal = b"".join(p.read_bytes() for p in tmp_path.glob("*.spool"))
    assert key.encode() not in journal and b"/v1/jobs/{id}" in journal
    assert publisher._form()[0].payload.count(b'"route":"/v1/jobs/{id}"') == 1
