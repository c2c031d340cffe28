"""The client's consent withdrawals per case, so a case takes no new referral until fresh
consent, even when no referral of the case was open at the moment of the withdrawal.

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "consent_withdrawals",
        sa.Column("case_id", sa.String(128), primary_key=True),
        sa.Column("withdrawn_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("consent_withdrawals")
