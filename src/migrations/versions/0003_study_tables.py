"""study: studies, their members, samples and the activity log

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22 03:43:25.416005
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import src.database

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "studies",
        sa.Column("code", sa.String(length=32), nullable=False),
        sa.Column("code_normalized", sa.String(length=32), nullable=False),
        sa.Column("title", sa.String(length=200), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column(
            "status",
            sa.Enum(
                "draft",
                "active",
                "locked",
                "archived",
                name="study_status",
                native_enum=False,
                create_constraint=True,
                length=20,
            ),
            nullable=False,
        ),
        sa.Column("sample_fields", sa.JSON(), nullable=False),
        sa.Column("sample_count", sa.Integer(), nullable=False),
        sa.Column("created_by", sa.Uuid(), nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("created_at", src.database.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", src.database.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["created_by"], ["users.id"], name=op.f("fk_studies_created_by_users"), ondelete="SET NULL"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_studies")),
        sa.UniqueConstraint("code_normalized", name=op.f("uq_studies_code_normalized")),
    )
    with op.batch_alter_table("studies", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_studies_created_at"), ["created_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_studies_status"), ["status"], unique=False)

    op.create_table(
        "samples",
        sa.Column("study_id", sa.Uuid(), nullable=False),
        sa.Column("sample_id", sa.String(length=100), nullable=False),
        sa.Column("sample_id_normalized", sa.String(length=100), nullable=False),
        sa.Column(
            "status",
            sa.Enum(
                "registered",
                "received",
                "stored",
                "consumed",
                "discarded",
                name="sample_status",
                native_enum=False,
                create_constraint=True,
                length=20,
            ),
            nullable=False,
        ),
        sa.Column("values", sa.JSON().with_variant(postgresql.JSONB(), "postgresql"), nullable=False),
        sa.Column("source_file_id", sa.Uuid(), nullable=True),
        sa.Column("created_by", sa.Uuid(), nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("created_at", src.database.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", src.database.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["created_by"], ["users.id"], name=op.f("fk_samples_created_by_users"), ondelete="SET NULL"
        ),
        sa.ForeignKeyConstraint(
            ["study_id"], ["studies.id"], name=op.f("fk_samples_study_id_studies"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_samples")),
        sa.UniqueConstraint(
            "study_id", "sample_id_normalized", name="uq_samples_study_id_sample_id_normalized"
        ),
    )
    with op.batch_alter_table("samples", schema=None) as batch_op:
        batch_op.create_index("ix_samples_study_id_created_at", ["study_id", "created_at"], unique=False)
        batch_op.create_index("ix_samples_study_id_status", ["study_id", "status"], unique=False)
        batch_op.create_index("ix_samples_study_id_updated_at", ["study_id", "updated_at"], unique=False)
    # PostgreSQL only: the GIN index answers `values @> {...}` field filters, the pattern-ops one
    # sample_id prefixes; SQLite has neither kind of index.
    if op.get_bind().dialect.name == "postgresql":
        op.create_index("ix_samples_values", "samples", ["values"], unique=False, postgresql_using="gin")
        op.create_index(
            "ix_samples_study_id_sample_id_prefix",
            "samples",
            ["study_id", "sample_id_normalized"],
            unique=False,
            postgresql_ops={"sample_id_normalized": "text_pattern_ops"},
        )

    op.create_table(
        "study_activity",
        sa.Column("study_id", sa.Uuid(), nullable=False),
        sa.Column("action", sa.String(length=40), nullable=False),
        sa.Column("actor_id", sa.Uuid(), nullable=True),
        sa.Column("at", src.database.UTCDateTime(timezone=True), nullable=False),
        sa.Column("details", sa.JSON(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(
            ["actor_id"], ["users.id"], name=op.f("fk_study_activity_actor_id_users"), ondelete="SET NULL"
        ),
        sa.ForeignKeyConstraint(
            ["study_id"], ["studies.id"], name=op.f("fk_study_activity_study_id_studies"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_study_activity")),
    )
    with op.batch_alter_table("study_activity", schema=None) as batch_op:
        batch_op.create_index("ix_study_activity_study_id_at_id", ["study_id", "at", "id"], unique=False)

    op.create_table(
        "study_members",
        sa.Column("study_id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column(
            "role",
            sa.Enum(
                "owner",
                "editor",
                "viewer",
                name="study_role",
                native_enum=False,
                create_constraint=True,
                length=20,
            ),
            nullable=False,
        ),
        sa.Column("created_at", src.database.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["study_id"], ["studies.id"], name=op.f("fk_study_members_study_id_studies"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_study_members_user_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("study_id", "user_id", name=op.f("pk_study_members")),
    )
    with op.batch_alter_table("study_members", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_study_members_user_id"), ["user_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("study_members", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_study_members_user_id"))

    op.drop_table("study_members")
    with op.batch_alter_table("study_activity", schema=None) as batch_op:
        batch_op.drop_index("ix_study_activity_study_id_at_id")

    op.drop_table("study_activity")
    if op.get_bind().dialect.name == "postgresql":
        op.drop_index("ix_samples_study_id_sample_id_prefix", table_name="samples")
        op.drop_index("ix_samples_values", table_name="samples", postgresql_using="gin")
    with op.batch_alter_table("samples", schema=None) as batch_op:
        batch_op.drop_index("ix_samples_study_id_updated_at")
        batch_op.drop_index("ix_samples_study_id_status")
        batch_op.drop_index("ix_samples_study_id_created_at")

    op.drop_table("samples")
    with op.batch_alter_table("studies", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_studies_status"))
        batch_op.drop_index(batch_op.f("ix_studies_created_at"))

    op.drop_table("studies")
