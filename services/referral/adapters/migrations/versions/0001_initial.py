"""Referrals, idempotency keys, outbox and access log.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

_AUTO_ID = sa.BigInteger().with_variant(sa.Integer, "sqlite")


def upgrade() -> None:
    op.create_table(
        "referrals",
        sa.Column("referral_id", sa.String(64), primary_key=True),
        sa.Column("case_id", sa.String(128), nullable=False, index=True),
        sa.Column("sender", sa.String(64), nullable=False, index=True),
        sa.Column("receiver", sa.String(64), nullable=False, index=True),
        sa.Column("pending_receiver", sa.String(64), nullable=True, index=True),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("asked_in", sa.String(16), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("document", sa.JSON, nullable=False),
        sa.Column("facts", sa.JSON, nullable=False),
        sa.Column("contact_key_id", sa.String(64), nullable=True),
        sa.Column("contact_ciphertext", sa.LargeBinary, nullable=True),
    )
    op.create_table(
        "request_keys",
        sa.Column("sender", sa.String(64), primary_key=True),
        sa.Column("request_key", sa.String(128), primary_key=True),
        sa.Column("fingerprint", sa.String(64), nullable=False),
        sa.Column("referral_id", sa.String(64), nullable=False),
    )
    op.create_table(
        "outbox",
        sa.Column("position", _AUTO_ID, primary_key=True, autoincrement=True),
        sa.Column("event_id", sa.String(64), nullable=False, unique=True),
        sa.Column("topic", sa.String(255), nullable=False),
        sa.Column("key", sa.String(128), nullable=False),
        sa.Column("value", sa.LargeBinary, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("published_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index("ix_outbox_unpublished", "outbox", ["published_at", "position"])
    op.create_table(
        "access_log",
        sa.Column("entry_id", _AUTO_ID, primary_key=True, autoincrement=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("case_id", sa.String(128), nullable=True, index=True),
        sa.Column("referral_id", sa.String(64), nullable=True),
        sa.Column("organisation", sa.String(64), nullable=False),
        sa.Column("user", sa.String(128), nullable=False),
        sa.Column("on_behalf_of", sa.String(128), nullable=False),
        sa.Column("purpose", sa.String(64), nullable=False),
        sa.Column("outcome", sa.String(32), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("access_log")
    op.drop_index("ix_outbox_unpublished", table_name="outbox")
    op.drop_table("outbox")
    op.drop_table("request_keys")
    op.drop_table("referrals")
