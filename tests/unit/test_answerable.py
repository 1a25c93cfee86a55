"""Responders answer inboxes only (aitbc_runtime.bus.answerable): anything else is dropped,
counted, and logged once per kind, however many come."""

from __future__ import annotations

import logging

import pytest

from aitbc_runtime import bus
from aitbc_runtime.bus import RefusedReplies, answerable


@pytest.fixture(autouse=True)
def fresh(monkeypatch: pytest.MonkeyPatch) -> RefusedReplies:
    refused = RefusedReplies()
    monkeypatch.setattr(bus, "refused_replies", refused)
    return refused


def test_an_inbox_is_answered_and_a_publish_is_not_a_request(fresh: RefusedReplies) -> None:
    assert answerable("_INBOX.UABCDEFGHIJKLMNOP.x1.y2", "aitbc.keys.check")
    assert answerable("_R_.yW4tIU.O9mpWt", "aitbc.keys.check")  # from another account
    assert answerable("", "aitbc.usage.settle.1")
    assert answerable(None)
    assert fresh.count == 0


@pytest.mark.parametrize(
    "reply",
    [
        "aitbc.keys.events.acc_0000000000000000.key_0000000000000000",
        "$JS.API.STREAM.PURGE.AITBC_USAGE",
        "_INBOX",  # the root itself is no inbox
        "_INBOXES.x",
        "_R_",
        "$KV.aitbc_usage_counters.p1",
    ],
)
def test_any_other_reply_subject_is_refused(fresh: RefusedReplies, reply: str) -> None:
    assert not answerable(reply, "aitbc.keys.check")
    assert fresh.count == 1


def test_a_flood_is_logged_once_per_kind_and_counted_in_full(
    fresh: RefusedReplies, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, "aitbc.bus"):
        for number in range(1000):
            answerable(f"aitbc.keys.events.acc_{number}.x", "aitbc.keys.check")
            answerable(f"$JS.API.STREAM.PURGE.S{number}", "aitbc.usage.decide.1")
    assert fresh.count == 2000
    assert len(caplog.records) == 2


def test_the_kinds_it_remembers_are_bounded(
    fresh: RefusedReplies, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, "aitbc.bus"):
        for number in range(RefusedReplies.MAX_KINDS + 500):
            answerable(f"x{number}.y.z", "aitbc.keys.check")
    assert len(caplog.records) == RefusedReplies.MAX_KINDS
    assert fresh.count == RefusedReplies.MAX_KINDS + 500
