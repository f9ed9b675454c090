"""pending registrations: self-registrations waiting for their mailed link, no account until then

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-07 00:30:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import src.database

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "pending_registrations",
        sa.Column("email", sa.String(length=320), nullable=False),
        sa.Column("full_name", sa.String(length=200), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=True),
        sa.Column("created_at", src.database.UTCDateTime(timezone=True), nullable=False),
        sa.Column("expires_at", src.database.UTCDateTime(timezone=True), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_pending_registrations")),
        sa.UniqueConstraint("email", name=op.f("uq_pending_registrations_email")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_pending_registrations_token_hash")),
    )
    with op.batch_alter_table("pending_registrations", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_pending_registrations_expires_at"), ["expires_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("pending_registrations", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_pending_registrations_expires_at"))
    op.drop_table("pending_registrations")
