"""The audit commands' pure parts: what a key was at a time, filters, arguments, ack subjects."""

from __future__ import annotations

import argparse
import io
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

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
from aitbc_contracts.keys import fold
from aitbc_contracts.messages import OPERATOR, AnyCommand, RebuildProjections, Rebuilt, Reply
from aitbc_runtime.bus_access import BusAccess

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
    assert history.key_at(events, T0) is None  # not created yet
    created = history.key_at(events, T0 + MINUTE)
    assert created is not None
    assert (created.key.status(T0 + MINUTE), created.plan, created.key.created_by) == (
        "active",
        "free",
        "key_m",
    )
    later = history.key_at(events, T0 + 4 * MINUTE + timedelta(seconds=30))
    assert later is not None
    assert (later.plan, later.key.regenerations, later.key.hint, later.events) == (
        "pro",
        2,
        "aitbc_3333",
        3,
    )
    assert later.key.previous_valid_until == T0 + 5 * MINUTE and later.key.revoked_at is None
    gone = history.key_at(events, T0 + 5 * MINUTE)
    assert gone is not None
    assert (gone.key.status(T0 + 5 * MINUTE), gone.key.revoked_by, gone.key.reason) == (
        "revoked",
        OPERATOR,
        "leak",
    )
    unrevoked = history.key_at(events[:-1], T0 + 11 * MINUTE)
    assert unrevoked is not None and unrevoked.key.status(T0 + 11 * MINUTE) == "expired"


def test_the_audit_view_is_the_one_fold_of_the_events_up_to_the_time_asked() -> None:
    events = a_history()
    key_events = [event for event in events if event.stream_id == "key_1"]
    for at in (event.occurred_at for event in key_events):
        shown = history.key_at(events, at)
        assert shown is not None
        assert shown.key == fold(event for event in key_events if event.occurred_at <= at)


# What `keys show` printed before it took its fold from aitbc_contracts.keys: pinned byte for
# byte, text and --json, at times that cover every field (grace, plan change, revoked, expired).
SHOWN = json.loads((Path(__file__).parent / "golden" / "keys_show.json").read_text())
SHOW_AT = {
    "created": (T0 + MINUTE, True),
    "in grace": (T0 + 2 * MINUTE + timedelta(seconds=30), True),
    "plan changed": (T0 + 4 * MINUTE + timedelta(seconds=30), True),
    "revoked": (T0 + 5 * MINUTE, True),
    "expired": (T0 + 20 * MINUTE, False),
}


@pytest.mark.parametrize("case", SHOWN)
async def test_keys_show_prints_what_it_always_printed(
    case: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    at, revoked = SHOW_AT[case.removesuffix(" --json")]
    events = a_history() if revoked else a_history()[:-1]

    async def read_history(access: BusAccess, wait: float, key_id: str, err: Any) -> list[AnyEvent]:
        return events

    monkeypatch.setattr(history, "read_history", read_history)
    args = argparse.Namespace(
        key_id="key_1",
        at=at,
        json=case.endswith("--json"),
        bus=BusAccess("-"),
        timeout=1.0,
        err=None,
    )
    out = io.StringIO()
    assert await history.show_key(args, send=None, out=out) == 0  # type: ignore[arg-type]
    assert out.getvalue() == SHOWN[case]


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


@pytest.mark.parametrize(
    "url",
    [
        "garbage",  # no URL at all
        "foo://db/keys",  # no such database
        "postgresql://u:p@127.0.0.1:1/keys",  # nothing listens there
        "postgresql://u:p@nohost.invalid/keys",  # no such host
    ],
)
def test_events_verify_with_a_database_it_cannot_use_is_one_line(
    url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATA_DIR", str(tmp_path))  # no checkpoint key
    out, err = io.StringIO(), io.StringIO()
    code = run(["events", "verify", "--database-url", url], out=out, err=err)
    assert code == 1
    assert err.getvalue().startswith("aitbc: error: ")
    assert len(err.getvalue().splitlines()) == 1
    assert out.getvalue() == ""
