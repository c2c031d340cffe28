"""Relational schema of the referral service (the Alembic migrations create exactly this)."""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    false,
)

metadata = MetaData()

referrals = Table(
    "referrals",
    metadata,
    Column("referral_id", String(64), primary_key=True),
    Column("case_id", String(128), nullable=False, index=True),
    Column("sender", String(64), nullable=False, index=True),
    Column("receiver", String(64), nullable=False, index=True),
    Column("pending_receiver", String(64), nullable=True, index=True),
    Column("status", String(32), nullable=False),
    Column("version", Integer, nullable=False),
    Column("asked_in", String(16), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    # The whole domain snapshot; the columns above exist for filtering and concurrency checks.
    Column("document", JSON, nullable=False),
    # Binding facts and the sealed contact travel on to the region and notify services.
    Column("facts", JSON, nullable=False),
    Column("contact_key_id", String(64), nullable=True),
    Column("contact_ciphertext", LargeBinary, nullable=True),
    Column("consent_valid_until", DateTime(timezone=True), nullable=True),
    # ",shelter,health,": lets ListReferrals filter by need without reading documents (0002).
    Column("need_domains", String(512), nullable=False, server_default=""),
    Index("ix_referrals_updated_at", "updated_at"),
)

request_keys = Table(
    "request_keys",
    metadata,
    Column("sender", String(64), primary_key=True),
    Column("request_key", String(128), primary_key=True),
    Column("fingerprint", String(64), nullable=False),
    Column("referral_id", String(64), nullable=False),
)

# Events wait here, written in the same transaction as the change they describe.
outbox = Table(
    "outbox",
    metadata,
    Column("position", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("event_id", String(64), nullable=False, unique=True),
    Column("topic", String(255), nullable=False),
    Column("key", String(128), nullable=False),
    Column("value", LargeBinary, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("published_at", DateTime(timezone=True), nullable=True),
    # The change feed of WatchReferrals (0002): which referral, and its snapshot at this version.
    Column("referral_id", String(64), nullable=True),
    Column("event_type", String(64), nullable=True),
    Column("snapshot", JSON, nullable=True),
    # The WatchReferrals cursor on PostgreSQL, in commit order, set by the feed sequencer (0003).
    Column("feed_position", BigInteger, nullable=True),
    # A row the relay could not encode is parked with a reason code, never retried (0006).
    Column("parked_at", DateTime(timezone=True), nullable=True),
    Column("park_reason", String(64), nullable=True),
    Index("ix_outbox_unpublished", "published_at", "position"),
    Index("ix_outbox_key_feed", "key", "feed_position"),
    Index("ix_outbox_feed_position", "feed_position", unique=True),
)

# The agencies each outbox row is relevant to; WatchReferrals reads it by agency after a cursor.
outbox_parties = Table(
    "outbox_parties",
    metadata,
    Column("agency_id", String(64), primary_key=True),
    Column("position", BigInteger().with_variant(Integer, "sqlite"), primary_key=True),
    Column("feed_position", BigInteger, nullable=True),  # copied from outbox by the sequencer (0003)
    Index("ix_outbox_parties_feed", "agency_id", "feed_position"),
)

# Append-only in the spirit of NEN 7513: no code path updates it, database triggers refuse
# UPDATE and DELETE, and only the retention purge may remove entries past retention (0002).
access_log = Table(
    "access_log",
    metadata,
    Column("entry_id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("action", String(64), nullable=False),
    Column("case_id", String(128), nullable=True, index=True),
    Column("referral_id", String(64), nullable=True),
    Column("organisation", String(64), nullable=False),
    Column("user", String(128), nullable=False),
    Column("on_behalf_of", String(128), nullable=False),
    Column("purpose", String(64), nullable=False),
    Column("outcome", String(32), nullable=False),
)

# Only the retention purge writes here, and removes its row before it commits (see 0002).
access_log_purge_horizon = Table(
    "access_log_purge_horizon",
    metadata,
    Column("horizon", DateTime(timezone=True), nullable=False),
)

# The latest consent withdrawal per case (0005): after it, only fresh consent opens a referral.
consent_withdrawals = Table(
    "consent_withdrawals",
    metadata,
    Column("case_id", String(128), primary_key=True),
    Column("withdrawn_at", DateTime(timezone=True), nullable=False),
)

# The agency directory (0007): seeded from the shipped YAML on first start, then changed by
# operators (AgencyAdminService, `mesh agency`). `entry` holds the file's fields; the columns
# exist for uniqueness and for the cheap "did anything change" check of every replica.
agencies = Table(
    "agencies",
    metadata,
    Column("agency_id", String(64), primary_key=True),
    Column("oin", String(20), nullable=False, unique=True),
    Column("suspended", Boolean, nullable=False, server_default=false()),
    Column("version", Integer, nullable=False),
    Column("entry", JSON, nullable=False),
    Column("reason_code", String(64), nullable=True),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

ALL_TABLES = (
    referrals,
    request_keys,
    outbox,
    outbox_parties,
    access_log,
    access_log_purge_horizon,
    consent_withdrawals,
    agencies,
)
