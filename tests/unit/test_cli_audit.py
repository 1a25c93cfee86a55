"""The audit commands' pure parts: what a key was at a time, filters, arguments, ack subjects."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta

import pytest

from aitbc_cli import history, stream
from aitbc_cli.main import build_parser, run
from aitbc_contracts.events import (
    AccountCreated,
    AnyEvent,
    KeyCreated,
    KeyRegenerated,
    KeyRevoked,
    PlanChanged,
)
from aitbc_contracts.messages import OPERATOR, AnyCommand, RebuildProjections, Rebuilt, Reply

T0 = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
MINUTE = timedelta(minutes=1)
BASE = {"account_id": "acc_1", "request_id": "r"}


def a_history() -> list[AnyEvent]:
    """Account created (free) at T0, key at +1, regenerated at +2 and +4, plan pro at +3,
    revoked at +5."""
    key = {**BASE, "stream_id": "key_1", "key_id": "key_1"}
    return [
        AccountCreated(
            event_id="a1",
            stream_id="acc_1",
            version=1,
            occurred_at=T0,
            name="",
            plan="free",
            **BASE,
        ),
        PlanChanged(
            event_id="a2",
            stream_id="acc_1",
            version=2,
            occurred_at=T0 + 3 * MINUTE,
            plan="pro",
            previous_plan="free",
            actor=OPERATOR,
            **BASE,
        ),
        KeyCreated(
            event_id="k1",
            version=1,
            occurred_at=T0 + MINUTE,
            name="ci",
            kind="standard",
            secret_hash="a" * 64,
            hint="aitbc_aaaa",
            expires_at=T0 + 10 * MINUTE,
            actor="key_m",
            **key,
        ),
        *(
            KeyRegenerated(
                event_id=f"k{n}",
                version=n,
                occurred_at=T0 + at * MINUTE,
                secret_hash=str(n) * 64,
                hint=f"aitbc_{n}{n}{n}{n}",
                previous_hash="a" * 64,
                previous_valid_until=T0 + (at + 1) * MINUTE,
                actor="key_m",
                **key,
            )
            for n, at in ((2, 2), (3, 4))
        ),
        KeyRevoked(
            event_id="k4",
            version=4,
            occurred_at=T0 + 5 * MINUTE,
            reason="leak",
            actor=OPERATOR,
            **key,
        ),
    ]


def test_a_key_is_folded_up_to_the_time_asked() -> None:
    events = a_history()
    assert history.fold(events, T0) is None  # not created yet
    created = history.fold(events, T0 + MINUTE)
    assert created is not None
    assert (created.status(T0 + MINUTE), created.plan, created.created_by) == (
        "active",
        "free",
        "key_m",
    )
    later = history.fold(events, T0 + 4 * MINUTE + timedelta(seconds=30))
    assert later is not None
    assert (later.plan, later.regenerations, later.hint, later.events) == (
        "pro",
        2,
        "aitbc_3333",
        3,
    )
    assert later.previous_valid_until == T0 + 5 * MINUTE and later.revoked_at is None
    gone = history.fold(events, T0 + 5 * MINUTE)
    assert gone is not None
    assert (gone.status(T0 + 5 * MINUTE), gone.revoked_by, gone.reason) == (
        "revoked",
        OPERATOR,
        "leak",
    )
    unrevoked = history.fold(events[:-1], T0 + 11 * MINUTE)
    assert unrevoked is not None and unrevoked.status(T0 + 11 * MINUTE) == "expired"


def test_filters_put_ids_into_subject_tokens() -> None:
    assert stream.event_filter() == "aitbc.keys.events.*.*"
    assert stream.event_filter("acc_1") == "aitbc.keys.events.acc_1.*"
    assert stream.event_filter(key_id="key_1") == "aitbc.keys.events.*.key_1"


def test_ack_subjects_of_both_formats_give_sequences_and_pending() -> None:
    assert stream._ack_fields("$JS.ACK.S.c.1.42.7.1700000000.3") == (42, 7, 3)
    assert stream._ack_fields("$JS.ACK.dom.acc.S.c.1.42.7.1700000000.3.tok") == (42, 7, 3)


@pytest.mark.parametrize(
    "argv",
    [
        ["events", "replay", "--key", "key_*"],  # a wildcard would widen the filter
        ["events", "replay", "--account", "acc_1.>"],
        ["events", "replay", "--since", "yesterday"],
        ["events", "replay", "--format", "csv"],
        ["keys", "show", "not-a-key"],
    ],
)
def test_bad_arguments_are_refused_before_anything_runs(argv: list[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        build_parser().parse_args(argv)
    assert exit_.value.code == 2


def test_times_without_a_zone_are_utc() -> None:
    args = build_parser().parse_args(
        ["events", "replay", "--since", "2026-01-02", "--until", "2026-01-02T05:00:00+02:00"]
    )
    assert args.since == datetime(2026, 1, 2, tzinfo=UTC)
    assert args.until == datetime(2026, 1, 2, 3, tzinfo=UTC)


def test_projections_rebuild_asks_the_keys_service_as_the_operator() -> None:
    sent: list[AnyCommand] = []

    async def send(command: AnyCommand) -> Reply:
        sent.append(command)
        return Rebuilt(events=12)

    out = io.StringIO()
    assert run(["projections", "rebuild"], send=send, out=out) == 0
    assert sent == [RebuildProjections(actor=OPERATOR)]
    assert out.getvalue() == "rebuilt the keys read models from 12 events\n"
