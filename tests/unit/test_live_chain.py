"""The live readers' verification (aitbc_contracts.live_chain): what each message of the key
event stream gets, and that no forgery, wherever it lands, makes a reader refuse a genuine
event after it or lose its place for good."""

from __future__ import annotations

from datetime import UTC, datetime

from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import REGISTRY

from aitbc_contracts.events import AnyEvent, KeyRevoked
from aitbc_contracts.live_chain import REMEMBERED, LiveChain
from aitbc_runtime.key_events import KeyEventReader
from tests.key_messages import Chained, Message, headers, with_headers

T0 = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def event(n: int, reason: str = "") -> AnyEvent:
    return KeyRevoked(
        event_id=f"e{n}{reason}",
        stream_id="key_1",
        version=n,
        account_id="acc_1",
        occurred_at=T0,
        key_id="key_1",
        reason=reason,
    )


def genuine(n: int, older_than_the_chain: int = 0) -> tuple[Chained, list[Message]]:
    """n events as published; the one at position `older_than_the_chain` has no prev_hash."""
    log = Chained()
    return log, [log.message(event(i), i == older_than_the_chain) for i in range(1, n + 1)]


def kinds(chain: LiveChain, messages: list[Message]) -> list[str]:
    out = []
    for data, found in messages:
        verdict = chain.take(data, found)
        out.append(verdict.kind if verdict.kind in ("apply", "skip") else verdict.problem)
    return out


def test_a_log_read_from_its_first_event_is_taken_in_order_and_redeliveries_are_skipped() -> None:
    log, messages = genuine(4)
    chain = LiveChain.from_genesis()
    assert kinds(chain, [*messages[:3], messages[1], messages[2], messages[3]]) == [
        "apply", "apply", "apply", "skip", "skip", "apply",
    ]  # fmt: skip
    assert (chain.position, chain.head) == (4, log.head)


def test_a_reader_anchors_at_the_first_sealed_message_and_refuses_what_it_cannot_check() -> None:
    log, messages = genuine(6, older_than_the_chain=4)
    chain = LiveChain()
    assert kinds(chain, [(b"{}", {}), messages[3], messages[4], messages[5]]) == [
        "inserted", "unverifiable", "apply", "apply",
    ]  # fmt: skip
    assert (chain.position, chain.head) == (6, log.head)


def test_an_event_older_than_the_chain_is_taken_where_it_continues_it() -> None:
    _, messages = genuine(3, older_than_the_chain=2)
    chain = LiveChain.from_genesis()
    assert kinds(chain, messages) == [
        "apply", "apply", "apply",
    ]  # fmt: skip


def test_what_is_not_a_sealed_event_is_refused_and_changes_nothing() -> None:
    _, messages = genuine(3)
    chain = LiveChain.from_genesis()
    kinds(chain, messages[:2])
    wrong_hash = with_headers(messages[2], Aitbc_Hash="0" * 64)
    no_hash = with_headers(messages[2], Aitbc_Hash="")
    garbled_position = with_headers(messages[2], Aitbc_Position="x")
    zero = with_headers(messages[2], Aitbc_Position="0")
    not_json = (b"not json", headers(3, "0" * 64))
    forged_hash_elsewhere = with_headers(wrong_hash, Aitbc_Position="9")
    assert kinds(
        chain, [wrong_hash, no_hash, garbled_position, zero, not_json, forged_hash_elsewhere]
    ) == ["altered", "inserted", "inserted", "inserted", "inserted", "altered"]
    assert chain.position == 2
    assert kinds(chain, [messages[2]]) == ["apply"]


def test_a_forgery_continuing_the_chain_is_taken_until_the_genuine_event_forks_from_it() -> None:
    log, messages = genuine(2)
    chain = LiveChain.from_genesis()
    kinds(chain, messages)
    forged = log.forged_next(event(3, "forged"))
    assert kinds(chain, [forged]) == ["apply"]  # no key: nobody can tell, until...
    real = log.message(event(3))
    verdict = chain.take(*real)
    assert (verdict.kind, verdict.problem, verdict.position) == ("resync", "reordered", 3)
    assert kinds(chain, [log.message(event(4))]) == ["apply"]


def test_a_sealed_event_at_a_wrong_position_costs_resyncs_never_a_genuine_event() -> None:
    log, messages = genuine(5)
    chain = LiveChain.from_genesis()
    kinds(chain, messages[:2])
    copy_far_ahead = with_headers(messages[1], Aitbc_Position="40")
    copy_behind = with_headers(messages[1], Aitbc_Position="1")
    assert kinds(chain, [copy_far_ahead, messages[2], copy_behind, messages[3], messages[4]]) == [
        "removed",  # positions 3..39 missing, says the copy: views reset, anchored there
        "reordered",  # the genuine 3 is behind that anchor, with another hash: anchored again
        "reordered",  # the copy at 1: another hash than the anchor remembers
        "removed",  # the genuine 4 is not next to that copy at 1: anchored at 4
        "apply",
    ]
    assert (chain.position, chain.head) == (5, log.head)


def test_a_reader_remembers_a_bounded_number_of_positions() -> None:
    log = Chained()
    chain = LiveChain.from_genesis()
    for n in range(1, REMEMBERED + 10):
        assert chain.take(*log.message(event(n))).kind == "apply"
    assert len(chain._hashes) == REMEMBERED


def test_a_read_of_some_subjects_checks_each_event_alone_and_its_order() -> None:
    _, messages = genuine(6, older_than_the_chain=5)
    chain = LiveChain.from_genesis(subset=True)
    altered = with_headers(messages[5], Aitbc_Hash="1" * 64)
    assert kinds(chain, [messages[1], messages[3], messages[3], messages[2], messages[4]]) == [
        "apply", "apply", "skip", "reordered", "apply",
    ]  # fmt: skip
    assert kinds(chain, [altered, messages[5]]) == ["altered", "apply"]


# --- any forgeries, anywhere ---------------------------------------------------------------

FORGERIES = st.sampled_from(["empty", "wrong-hash", "copy-elsewhere", "continues", "other-past"])


def forgery(kind: str, log: Chained, past: list[Message], offset: int) -> Message:
    if kind == "empty":
        return b"{}", {}
    if kind == "wrong-hash":
        return with_headers(log.forged_next(event(99, "x")), Aitbc_Hash="2" * 64)
    if kind == "copy-elsewhere" and past:
        return with_headers(past[offset % len(past)], Aitbc_Position=str(log.position + offset))
    if kind == "other-past" and past:
        return Chained(max(0, log.position - offset), "3" * 64).message(event(98, "y"))
    return log.forged_next(event(97, "z"))


@settings(max_examples=300, deadline=None, derandomize=True)
@given(st.lists(st.tuples(st.booleans(), FORGERIES, st.integers(0, 4)), max_size=40))
def test_no_forgery_makes_a_reader_refuse_a_genuine_event_or_lose_the_head(
    steps: list[tuple[bool, str, int]],
) -> None:
    log, chain, past = Chained(), LiveChain(), []
    for is_genuine, kind, offset in steps:
        if is_genuine:
            past.append(log.message(event(log.position + 1)))
            assert chain.take(*past[-1]).kind in ("apply", "resync")
        else:
            chain.take(*forgery(kind, log, past, offset))
    past.append(log.message(event(log.position + 1)))
    assert chain.take(*past[-1]).kind in ("apply", "resync")
    assert (chain.position, chain.head) == (log.position, log.head)


# --- the reader: what views get --------------------------------------------------------------


class Recorder:
    def __init__(self) -> None:
        self.positions: list[int] = []
        self.resets = 0

    def process(self, event: AnyEvent, position: int) -> None:
        self.positions.append(position)

    def reset(self) -> None:
        self.resets += 1


def test_the_reader_applies_what_continues_counts_refusals_and_resets_views_on_a_fork() -> None:
    view = Recorder()
    reader = KeyEventReader(None, [view], "test-reader")  # type: ignore[arg-type]  # not started
    metric = ("aitbc_key_events_refused_total", {"reader": "test-reader"})
    counted = REGISTRY.get_sample_value(*metric) or 0.0
    log = Chained()
    for n in (1, 2):
        reader.receive(*log.message(event(n)))
    reader.receive(b"{}", None)
    reader.receive(*with_headers(log.forged_next(event(3, "x")), Aitbc_Hash="0" * 64))
    reader.receive(*log.forged_next(event(3, "forged")))
    assert view.positions == [1, 2, 3] and view.resets == 0
    real = log.message(event(3))
    reader.receive(*real)  # position 3 again, another event: a fork
    reader.receive(*real)  # a redelivery of it: quiet
    reader.receive(*log.message(event(4)))
    assert view.positions == [1, 2, 3, 4] and view.resets == 1
    assert reader.refused == {"inserted": 1, "altered": 1}
    assert REGISTRY.get_sample_value(*metric) == counted + 2  # by reader, for /metrics
    assert reader.resyncs == {"reordered": 1}
    reader.reset()  # a reconnect: anchored again at the next sealed message
    reader.receive(*log.message(event(5)))
    assert view.positions[-1] == 5 and view.resets == 2


def test_a_sealed_event_after_another_history_is_a_break() -> None:
    log, messages = genuine(2)
    chain = LiveChain.from_genesis()
    kinds(chain, messages)
    elsewhere = Chained(2, "3" * 64).message(event(3, "other"))
    assert kinds(chain, [elsewhere, log.message(event(3))]) == ["inserted", "reordered"]
    assert kinds(chain, [log.message(event(4))]) == ["apply"]
