"""Consent end as a column, so the expiry sweep finds open referrals by index.

Revision ID: 0004
Revises: 0003
"""

from datetime import datetime

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("referrals") as batch:
        batch.add_column(sa.Column("consent_valid_until", sa.DateTime(timezone=True), nullable=True))
    op.create_index("ix_referrals_consent_valid_until", "referrals", ["status", "consent_valid_until"])
    referrals = sa.table(
        "referrals",
        sa.column("referral_id", sa.String),
        sa.column("document", sa.JSON),
        sa.column("consent_valid_until", sa.DateTime(timezone=True)),
    )
    connection = op.get_bind()
    for referral_id, document in connection.execute(sa.select(referrals.c.referral_id, referrals.c.document)).all():
        valid_until = (document or {}).get("consent", {}).get("valid_until")
        if valid_until:
            connection.execute(
                referrals.update()
                .where(referrals.c.referral_id == referral_id)
                .values(consent_valid_until=datetime.fromisoformat(valid_until))
            )


def downgrade() -> None:
    op.drop_index("ix_referrals_consent_valid_until", table_name="referrals")
    with op.batch_alter_table("referrals") as batch:
        batch.drop_column("consent_valid_until")
