"""Change feed for WatchReferrals, list filters, and an append-only access log.

- outbox: referral_id, event_type and the referral snapshot at that version, so the
  change stream can serve a change exactly as it was committed; outbox_parties names the
  agencies each change is relevant to (the stream reads it by agency, after a cursor).
- referrals.need_domains: ",shelter,health," so ListReferrals can filter by need.
- access_log: triggers refuse every UPDATE, and every DELETE except the retention purge
  (storage.purge_expired_access_entries), which names its horizon in access_log_purge_horizon
  inside its own transaction; rows younger than 365 days can never be deleted.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_AUTO_ID = sa.BigInteger().with_variant(sa.Integer, "sqlite")

_PG_FUNCTION = """
CREATE OR REPLACE FUNCTION access_log_append_only() RETURNS trigger AS $$
BEGIN
    IF TG_OP = 'DELETE'
       AND OLD.at < now() - interval '365 days'
       AND EXISTS (SELECT 1 FROM access_log_purge_horizon h WHERE OLD.at < h.horizon) THEN
        RETURN OLD;
    END IF;
    RAISE EXCEPTION 'access_log is append-only: % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$ LANGUAGE plpgsql
"""


def upgrade() -> None:
    dialect = op.get_bind().dialect.name
    op.add_column("outbox", sa.Column("referral_id", sa.String(64), nullable=True))
    op.add_column("outbox", sa.Column("event_type", sa.String(64), nullable=True))
    op.add_column("outbox", sa.Column("snapshot", sa.JSON, nullable=True))
    op.create_table(
        "outbox_parties",
        sa.Column("agency_id", sa.String(64), primary_key=True),
        sa.Column("position", _AUTO_ID, primary_key=True),
    )
    op.add_column("referrals", sa.Column("need_domains", sa.String(512), nullable=False, server_default=""))
    op.create_index("ix_referrals_updated_at", "referrals", ["updated_at"])
    op.create_table(
        "access_log_purge_horizon",
        sa.Column("horizon", sa.DateTime(timezone=True), nullable=False),
    )
    if dialect == "postgresql":
        op.execute(_PG_FUNCTION)
        op.execute(
            "CREATE TRIGGER access_log_no_update BEFORE UPDATE OR DELETE ON access_log "
            "FOR EACH ROW EXECUTE FUNCTION access_log_append_only()"
        )
        op.execute(
            "CREATE TRIGGER access_log_no_truncate BEFORE TRUNCATE ON access_log "
            "FOR EACH STATEMENT EXECUTE FUNCTION access_log_append_only()"
        )
    elif dialect == "sqlite":
        op.execute(
            "CREATE TRIGGER access_log_no_update BEFORE UPDATE ON access_log "
            "BEGIN SELECT RAISE(ABORT, 'access_log is append-only: UPDATE refused'); END"
        )
        op.execute(
            "CREATE TRIGGER access_log_no_delete BEFORE DELETE ON access_log "
            "WHEN NOT (OLD.at < strftime('%Y-%m-%d %H:%M:%f', 'now', '-365 days') "
            "AND EXISTS (SELECT 1 FROM access_log_purge_horizon h WHERE OLD.at < h.horizon)) "
            "BEGIN SELECT RAISE(ABORT, 'access_log is append-only: DELETE refused'); END"
        )


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    if dialect == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS access_log_no_truncate ON access_log")
        op.execute("DROP TRIGGER IF EXISTS access_log_no_update ON access_log")
        op.execute("DROP FUNCTION IF EXISTS access_log_append_only()")
    elif dialect == "sqlite":
        op.execute("DROP TRIGGER IF EXISTS access_log_no_delete")
        op.execute("DROP TRIGGER IF EXISTS access_log_no_update")
    op.drop_table("access_log_purge_horizon")
    op.drop_index("ix_referrals_updated_at", table_name="referrals")
    op.drop_column("referrals", "need_domains")
    op.drop_table("outbox_parties")
    op.drop_column("outbox", "snapshot")
    op.drop_column("outbox", "event_type")
    op.drop_column("outbox", "referral_id")
