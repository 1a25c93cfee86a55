"""Golden payloads: every shipped event tag stays decodable, with the same meaning, forever."""

from __future__ import annotations

import json
from pathlib import Path

import msgspec
import pytest

from aitbc_contracts import events as e
from aitbc_contracts import messages as m

GOLDEN = json.loads((Path(__file__).parent / "golden" / "events.json").read_text())
# Fields added (with defaults) after the payloads were pinned: an old payload decodes to these.
ADDED_SINCE = {"prev_hash": ""}
TAGS = {cls.__struct_config__.tag: cls for cls in e.AnyEvent.__args__}  # type: ignore[attr-defined]


def test_every_shipped_tag_has_a_golden_payload() -> None:
    assert set(TAGS) == set(GOLDEN)


@pytest.mark.parametrize("tag", sorted(GOLDEN))
def test_golden_payload_decodes_to_its_event_and_back(tag: str) -> None:
    payload = json.dumps(GOLDEN[tag]).encode()
    event = e.decode_event(payload)
    assert type(event) is TAGS[tag]
    assert event.event_id == GOLDEN[tag]["event_id"]
    assert json.loads(e.encode_event(event)) == {**ADDED_SINCE, **GOLDEN[tag]}


def test_unknown_tags_and_missing_fields_are_rejected() -> None:
    with pytest.raises(msgspec.ValidationError):
        e.decode_event(b'{"type": "key.exploded.v1"}')
    with pytest.raises(msgspec.ValidationError):
        e.decode_event(b'{"type": "key.revoked.v1", "event_id": "x"}')


def test_commands_and_replies_round_trip() -> None:
    command = m.RevokeKey(account_id=None, key_id="key_0123456789abcdef", reason="leaked")
    assert m.command_decoder.decode(m.encoder.encode(command)) == command
    rejected = m.Rejected(code=m.Code.NOT_FOUND, message="No such API key")
    assert m.reply_decoder.decode(m.encoder.encode(rejected)) == rejected
    assert m.check_reply_decoder.decode(m.encoder.encode(rejected)) == rejected


def test_a_key_check_is_a_bounded_batch_answered_item_by_item() -> None:
    facts = m.KeyFacts(key_id="key_1", account_id="acc_1", kind="master", plan="pro", revoked=False)
    checked = m.CheckedKeys([facts, m.Rejected(m.Code.INVALID_API_KEY, "unknown API key")])
    assert m.check_reply_decoder.decode(m.encoder.encode(checked)) == checked
    full = m.CheckKeys(["0" * 64] * m.MAX_CHECK_BATCH)
    assert m.check_decoder.decode(m.encoder.encode(full)) == full
    with pytest.raises(msgspec.ValidationError):
        m.check_decoder.decode(m.encoder.encode({"key_hashes": ["0" * 64] * 1001}))
