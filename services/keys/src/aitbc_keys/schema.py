"""The keys database tables (SQLAlchemy Core): the event log and the read models derived from it."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Dialect

metadata = sa.MetaData()


class UTCDateTime(sa.TypeDecorator[datetime]):
    """Aware UTC datetimes in, aware UTC datetimes out, on SQLite and PostgreSQL alike.

    SQLite stores no offset and hands back naive values; PostgreSQL hands back the session's
    zone. Normalising both ways makes a stored value compare equal to what was appended.
    """

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetimes are ambiguous: pass an aware UTC datetime")
        return value.astimezone(UTC)

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)  # type: ignore[no-any-return]
        return value.astimezone(UTC)  # type: ignore[no-any-return]


class Words(sa.TypeDecorator[tuple[str, ...]]):
    """A tuple of words (scopes, CIDRs: none holds a space) as one space-separated text."""

    impl = sa.Text
    cache_ok = True

    def process_bind_param(self, value: tuple[str, ...] | None, dialect: Dialect) -> str:
        return " ".join(value or ())

    def process_result_value(self, value: Any, dialect: Dialect) -> tuple[str, ...]:
        return tuple(str(value or "").split())


# BIGINT on PostgreSQL; INTEGER on SQLite, where only "INTEGER PRIMARY KEY" aliases the rowid.
Position = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

events = sa.Table(
    "events",
    metadata,
    # Positions are assigned by the store under its write lock (max + 1), not by a sequence:
    # sequences leave gaps on rollback and hand out numbers in start order, not commit order.
    sa.Column("position", Position, primary_key=True, autoincrement=False),
    sa.Column("event_id", sa.String(64), nullable=False, unique=True),
    sa.Column("stream_id", sa.String(64), nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("account_id", sa.String(64), nullable=False, index=True),
    sa.Column("type", sa.String(64), nullable=False),
    sa.Column("occurred_at", UTCDateTime, nullable=False),
    sa.Column("data", sa.Text, nullable=False),  # the canonical bytes: hashed, published verbatim
    sa.Column("chain_hash", sa.String(64), nullable=False),  # aitbc_contracts.chain.link
    sa.UniqueConstraint("stream_id", "version", name="uq_events_stream_version"),
)

accounts = sa.Table(
    "accounts",
    metadata,
    sa.Column("account_id", sa.String(64), primary_key=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("plan", sa.String(20), nullable=False),
    sa.Column("master_key_id", sa.String(64), nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    # False: the master key manages keys and calls no forwarded route (AccountState's field).
    sa.Column("master_key_data_plane", sa.Boolean, nullable=False, server_default=sa.true()),
)

api_keys = sa.Table(
    "api_keys",
    metadata,
    sa.Column("key_id", sa.String(64), primary_key=True),
    sa.Column("account_id", sa.String(64), nullable=False, index=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("kind", sa.String(20), nullable=False),
    sa.Column("hint", sa.String(64), nullable=False),
    sa.Column("status", sa.String(20), nullable=False),  # active | revoked
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("expires_at", UTCDateTime, nullable=True),
    sa.Column("revoked_at", UTCDateTime, nullable=True),
    sa.Column("regenerated_at", UTCDateTime, nullable=True),
    sa.Column("rate_limit", sa.Integer, nullable=True),
    # Its restrictions (KeyState's fields): none by default
    sa.Column("scopes", Words, nullable=False, server_default=""),
    sa.Column("allowed_ips", Words, nullable=False, server_default=""),
    sa.Column("shadow", sa.Boolean, nullable=False, server_default=sa.false()),
)

key_secrets = sa.Table(
    "key_secrets",
    metadata,
    sa.Column("secret_hash", sa.String(64), primary_key=True),
    sa.Column("key_id", sa.String(64), nullable=False, index=True),
    # NULL: the key's current secret; set: a replaced secret, valid until its grace period ends.
    sa.Column("valid_until", UTCDateTime, nullable=True),
)

# Signed checkpoints of the log (aitbc_keys.checkpoints): not a read model, never rebuilt.
checkpoints = sa.Table(
    "checkpoints",
    metadata,
    # Numbered by the signer, max + 1: two keys services racing for the same number leave one.
    sa.Column("number", Position, primary_key=True, autoincrement=False),
    sa.Column("position", Position, nullable=False),
    sa.Column("chain_hash", sa.String(64), nullable=False),
    sa.Column("data", sa.Text, nullable=False),  # the checkpoint as published, signature included
)

READ_MODELS = (key_secrets, api_keys, accounts)
