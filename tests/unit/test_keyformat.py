"""The key format: what the edge can reject without asking anyone."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from aitbc_contracts.keyformat import (
    KEY_LENGTH,
    generate_key,
    hash_key,
    hint,
    is_key_id,
    is_well_formed,
    new_account_id,
    new_key_id,
)


def test_generated_keys_are_well_formed_and_distinct() -> None:
    keys = {generate_key() for _ in range(1000)}
    assert len(keys) == 1000
    assert all(is_well_formed(k) and k.startswith("aitbc_") and len(k) == KEY_LENGTH for k in keys)


def test_any_single_character_change_breaks_the_checksum() -> None:
    key = generate_key()
    for i in range(len("aitbc_"), len(key)):
        for replacement in "0aZ":
            if key[i] != replacement:
                assert not is_well_formed(key[:i] + replacement + key[i + 1 :])


def test_hash_and_hint() -> None:
    key = generate_key()
    assert len(hash_key(key)) == 64 and hash_key(key) != hash_key(generate_key())
    assert key.startswith(hint(key)) and len(hint(key)) == 10


@given(st.text(max_size=80))
def test_arbitrary_text_is_never_taken_for_a_key(text: str) -> None:
    assert not is_well_formed(text) or (text.isascii() and len(text) == KEY_LENGTH)


def test_ids() -> None:
    assert is_key_id(new_key_id()) and not is_key_id(new_account_id())
    assert not is_key_id("key_" + "g" * 16) and not is_key_id("key_0123")
