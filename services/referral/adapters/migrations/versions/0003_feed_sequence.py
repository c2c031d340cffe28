"""Change-feed positions assigned in commit order by a sequencer, not by a lock on every writer.

Until 0002 an outbox row's `position` was the WatchReferrals cursor, and on PostgreSQL every
writer took one advisory lock from its outbox insert to its commit so positions became
visible in order. That lock made all writes commit one at a time.

Now writers insert their outbox rows without any lock (`position` is only the row's id), and
`feed_position` is handed out afterwards, in batches, by one sequencer at a time (storage.
ReferralStore.sequence_feed: the relay and each stream reader call it). A sequencer run only
numbers rows that were already committed, and runs follow one another, so a reader that has
seen feed position N never later finds a new row at or below N. outbox_parties carries the
same number so a stream reads one agency's changes by an index range.

SQLite has one writer at a time, so there `position` is already in commit order and stays the
cursor; the columns exist for one schema, and are filled for rows that predate this revision.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    dialect = op.get_bind().dialect.name
    op.add_column("outbox", sa.Column("feed_position", sa.BigInteger, nullable=True))
    op.add_column("outbox_parties", sa.Column("feed_position", sa.BigInteger, nullable=True))
    # Rows written before this revision were committed in position order already.
    op.execute("UPDATE outbox SET feed_position = position")
    op.execute("UPDATE outbox_parties SET feed_position = position")
    op.create_index("ix_outbox_feed_position", "outbox", ["feed_position"], unique=True)
    op.create_index("ix_outbox_parties_feed", "outbox_parties", ["agency_id", "feed_position"])
    if dialect == "postgresql":
        # What the sequencer looks for, and what the relay publishes next, stay small indexes.
        op.execute("CREATE INDEX ix_outbox_unsequenced ON outbox (position) WHERE feed_position IS NULL")
        op.execute("CREATE INDEX ix_outbox_unpublished_feed ON outbox (feed_position) WHERE published_at IS NULL")


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    if dialect == "postgresql":
        op.execute("DROP INDEX IF EXISTS ix_outbox_unpublished_feed")
        op.execute("DROP INDEX IF EXISTS ix_outbox_unsequenced")
    op.drop_index("ix_outbox_parties_feed", table_name="outbox_parties")
    op.drop_index("ix_outbox_feed_position", table_name="outbox")
    op.drop_column("outbox_parties", "feed_position")
    op.drop_column("outbox", "feed_position")
