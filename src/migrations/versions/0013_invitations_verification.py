"""invitations and verified addresses: study invitations by mail, and when a user's address was verified

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-06 21:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import src.database

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

PENDING = sa.text("status = 'pending'")


def upgrade() -> None:
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("email_verified_at", src.database.UTCDateTime(timezone=True), nullable=True)
        )
    # Accounts made before verification existed keep working as they did: their address counts as
    # verified from their creation.
    op.execute("UPDATE users SET email_verified_at = created_at")

    op.create_table(
        "study_invitations",
        sa.Column("study_id", sa.Uuid(), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=False),
        sa.Column(
            "role",
            sa.Enum(
                "owner",
                "editor",
                "viewer",
                name="invitation_role",
                native_enum=False,
                create_constraint=True,
                length=20,
            ),
            nullable=False,
        ),
        sa.Column("invited_by", sa.Uuid(), nullable=True),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=True),
        sa.Column("mail_id", sa.Uuid(), nullable=True),
        sa.Column("created_at", src.database.UTCDateTime(timezone=True), nullable=False),
        sa.Column("expires_at", src.database.UTCDateTime(timezone=True), nullable=False),
        sa.Column("responded_at", src.database.UTCDateTime(timezone=True), nullable=True),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(
            ["invited_by"],
            ["users.id"],
            name=op.f("fk_study_invitations_invited_by_users"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["study_id"],
            ["studies.id"],
            name=op.f("fk_study_invitations_study_id_studies"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_study_invitations")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_study_invitations_token_hash")),
    )
    with op.batch_alter_table("study_invitations", schema=None) as batch_op:
        batch_op.create_index("ix_study_invitations_email_status", ["email", "status"], unique=False)
        batch_op.create_index(
            "uq_study_invitations_study_id_email_pending",
            ["study_id", "email"],
            unique=True,
            postgresql_where=PENDING,
            sqlite_where=PENDING,
        )


def downgrade() -> None:
    with op.batch_alter_table("study_invitations", schema=None) as batch_op:
        batch_op.drop_index("uq_study_invitations_study_id_email_pending")
        batch_op.drop_index("ix_study_invitations_email_status")
    op.drop_table("study_invitations")
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.drop_column("email_verified_at")
