"""The keys service's in-memory facts: the same answers the read models give, from events."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from aitbc_contracts.events import (
    AccountCreated,
    KeyCreated,
    KeyRegenerated,
    KeyRestricted,
    KeyRevoked,
    PlanChanged,
)
from aitbc_keys.facts import FactsIndex

T0 = datetime(2026, 11, 29, 12, tzinfo=UTC)
BASE = {"account_id": "acc_1", "occurred_at": T0, "event_id": "e"}


def created(version: int = 1, secret: str = "h1", **extra: object) -> KeyCreated:
    return KeyCreated(
        stream_id="key_1", version=version, key_id="key_1", name="k", kind="standard",
        secret_hash=secret, hint="aitbc_abcd", **BASE, **extra,  # type: ignore[arg-type]
    )  # fmt: skip


def index_of(*events: object) -> FactsIndex:
    index = FactsIndex()
    index.process(AccountCreated(stream_id="acc_1", version=1, name="", plan="free", **BASE))  # type: ignore[arg-type]
    for event in events:
        index.process(event)  # type: ignore[arg-type]
    return index


def test_a_created_key_is_known_with_its_plan_and_limit() -> None:
    facts = index_of(created(rate_limit=5)).facts("h1", T0)
    assert facts is not None and (facts.plan, facts.rate_limit, facts.revoked) == ("free", 5, False)
    assert index_of(created()).facts("unknown", T0) is None  # unknown: ask the database


def test_revocation_and_plan_changes_apply() -> None:
    index = index_of(created(), KeyRevoked(stream_id="key_1", version=2, key_id="key_1", **BASE))  # type: ignore[arg-type]
    changed = PlanChanged(stream_id="acc_1", version=2, plan="pro", previous_plan="free", **BASE)  # type: ignore[arg-type]
    index.process(changed)
    facts = index.facts("h1", T0)
    assert facts is not None and facts.revoked and facts.plan == "pro"


def test_a_keys_restrictions_are_in_its_facts() -> None:
    restricted = KeyRestricted(
        stream_id="key_1", version=2, key_id="key_1", scopes=("jobs:read",),
        allowed_ips=("10.0.0.0/8",), shadow=True, **BASE,  # type: ignore[arg-type]
    )  # fmt: skip
    facts = index_of(created(), restricted).facts("h1", T0)
    assert facts is not None
    assert (facts.scopes, facts.allowed_ips, facts.shadow) == (
        ("jobs:read",),
        ("10.0.0.0/8",),
        True,
    )
    plain = index_of(created()).facts("h1", T0)
    assert plain is not None and (plain.scopes, plain.allowed_ips, plain.shadow) == ((), (), False)


def test_regeneration_with_and_without_grace() -> None:
    def regenerated(until: datetime | None) -> KeyRegenerated:
        return KeyRegenerated(
            stream_id="key_1", version=2, key_id="key_1", secret_hash="h2", hint="aitbc_wxyz",
            previous_hash="h1", previous_valid_until=until, **BASE,  # type: ignore[arg-type]
        )  # fmt: skip

    no_grace = index_of(created(), regenerated(None))
    assert no_grace.facts("h1", T0) is None and no_grace.facts("h2", T0) is not None
    grace = index_of(created(), regenerated(T0 + timedelta(minutes=5)))
    assert grace.facts("h1", T0) is not None
    assert grace.facts("h1", T0 + timedelta(minutes=6)) is None


def test_an_event_applied_twice_or_late_changes_nothing() -> None:
    revoked = KeyRevoked(stream_id="key_1", version=2, key_id="key_1", **BASE)  # type: ignore[arg-type]
    index = index_of(created(), revoked)
    index.process(created())  # the stream delivers what this process already applied
    facts = index.facts("h1", T0)
    assert facts is not None and facts.revoked


def test_a_key_changed_elsewhere_is_the_databases_to_say_until_the_change_is_here() -> None:
    revoked = KeyRevoked(stream_id="key_1", version=2, key_id="key_1", **BASE)  # type: ignore[arg-type]
    index = index_of(created())
    index.behind({"key_1": 2, "key_unknown": 1})  # another process revoked it; and a new key
    assert index.facts("h1", T0) is None  # not "active" from before the revocation
    index.process(revoked)  # the stream brings it
    facts = index.facts("h1", T0)
    assert facts is not None and facts.revoked


def test_an_accounts_change_elsewhere_holds_up_every_key_of_it() -> None:
    index = index_of(created())
    index.behind({"acc_1": 2})
    assert index.facts("h1", T0) is None
    index.process(
        PlanChanged(stream_id="acc_1", version=2, plan="pro", previous_plan="free", **BASE)
    )  # type: ignore[arg-type]
    facts = index.facts("h1", T0)
    assert facts is not None and facts.plan == "pro"


def test_news_of_what_the_index_has_already_changes_nothing() -> None:
    revoked = KeyRevoked(stream_id="key_1", version=2, key_id="key_1", **BASE)  # type: ignore[arg-type]
    index = index_of(created(), revoked)
    index.behind({"key_1": 2, "acc_1": 1})  # the stream was quicker than the news
    facts = index.facts("h1", T0)
    assert facts is not None and facts.revoked


def test_a_reloaded_index_keeps_only_the_marks_it_has_not_reached() -> None:
    index = index_of(created())
    index.behind({"key_1": 3})
    fresh = index_of(created(), KeyRevoked(stream_id="key_1", version=2, key_id="key_1", **BASE))  # type: ignore[arg-type]
    index.replace_with(fresh)  # loaded at version 2: version 3 is still to come
    assert index.facts("h1", T0) is None
    caught_up = index_of(
        created(),
        KeyRevoked(stream_id="key_1", version=2, key_id="key_1", **BASE),  # type: ignore[arg-type]
        KeyRevoked(stream_id="key_1", version=3, key_id="key_1", reason="again", **BASE),  # type: ignore[arg-type]
    )
    index.replace_with(caught_up)
    assert index.facts("h1", T0) is not None


def test_a_change_an_emptied_index_could_not_apply_holds_up_an_older_state() -> None:
    """After a reset, this process commits a change to a stream the index no longer holds; the
    key event stream, lagging, then brings the stream back as it was before that change. Until
    it brings the change too, the key's facts are the database's, never the older ones."""
    revoke = KeyRevoked(stream_id="key_1", version=2, key_id="key_1", **BASE)  # type: ignore[arg-type]
    index = index_of(created())
    index.reset()
    index.process(revoke)  # this process's commit: nothing here to apply it to
    index.process(AccountCreated(stream_id="acc_1", version=1, name="", plan="free", **BASE))  # type: ignore[arg-type]
    index.process(created())  # the stream, catching up
    assert index.facts("h1", T0) is None  # not the unrevoked key: ask the database
    index.process(revoke)  # the stream brings the change
    facts = index.facts("h1", T0)
    assert facts is not None and facts.revoked


def test_news_of_a_stream_the_index_does_not_hold_holds_it_up_once_it_comes() -> None:
    index = index_of()
    index.behind({"key_1": 2})  # committed elsewhere while this index did not hold key_1
    index.process(created())  # the stream brings key_1 at version 1
    assert index.facts("h1", T0) is None
    index.process(KeyRevoked(stream_id="key_1", version=2, key_id="key_1", **BASE))  # type: ignore[arg-type]
    facts = index.facts("h1", T0)
    assert facts is not None and facts.revoked
