"""Outbox relay with many replicas: parked rows, and an index for the per-case order check.

A row the relay cannot encode (its envelope does not decode, or Kafka refuses it for good) is
parked: `parked_at` and a reason code, never retried. Relays on PostgreSQL claim rows with
`FOR UPDATE SKIP LOCKED` and publish a case's row only when no older row of the same key is
still unpublished; `ix_outbox_key_feed` answers that question per key.

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("outbox", sa.Column("parked_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("outbox", sa.Column("park_reason", sa.String(64), nullable=True))
    op.create_index("ix_outbox_key_feed", "outbox", ["key", "feed_position"])
    if op.get_bind().dialect.name == "postgresql":
        # The retention sweep finds published and parked rows by age.
        op.execute("CREATE INDEX ix_outbox_published_at ON outbox (published_at) WHERE published_at IS NOT NULL")
        op.execute("CREATE INDEX ix_outbox_parked_at ON outbox (parked_at) WHERE parked_at IS NOT NULL")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP INDEX IF EXISTS ix_outbox_parked_at")
        op.execute("DROP INDEX IF EXISTS ix_outbox_published_at")
    op.drop_index("ix_outbox_key_feed", table_name="outbox")
    op.drop_column("outbox", "park_reason")
    op.drop_column("outbox", "parked_at")
