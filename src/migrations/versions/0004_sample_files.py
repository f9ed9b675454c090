"""sample files: the sample_files table, and samples.source_file_id pointing at it

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-22 04:20:43.770875
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import src.database

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "sample_files",
        sa.Column("study_id", sa.Uuid(), nullable=False),
        sa.Column("filename", sa.String(length=255), nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("format", sa.String(length=20), nullable=False),
        sa.Column("encoding", sa.String(length=40), nullable=True),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("mode", sa.String(length=20), nullable=False),
        sa.Column("uploaded_by", sa.Uuid(), nullable=True),
        sa.Column("created_at", src.database.UTCDateTime(timezone=True), nullable=False),
        sa.Column("report", sa.JSON(), nullable=False),
        sa.Column("storage_key", sa.String(length=64), nullable=False),
        sa.Column("errors_key", sa.String(length=64), nullable=True),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(
            ["study_id"], ["studies.id"], name=op.f("fk_sample_files_study_id_studies"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["uploaded_by"], ["users.id"], name=op.f("fk_sample_files_uploaded_by_users"), ondelete="SET NULL"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sample_files")),
    )
    with op.batch_alter_table("sample_files", schema=None) as batch_op:
        batch_op.create_index("ix_sample_files_study_id_created_at", ["study_id", "created_at"], unique=False)
        batch_op.create_index(
            "uq_sample_files_study_id_sha256_imported",
            ["study_id", "sha256"],
            unique=True,
            postgresql_where=sa.text("status = 'imported'"),
            sqlite_where=sa.text("status = 'imported'"),
        )

    with op.batch_alter_table("samples", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_samples_source_file_id"), ["source_file_id"], unique=False)
        batch_op.create_foreign_key(
            batch_op.f("fk_samples_source_file_id_sample_files"),
            "sample_files",
            ["source_file_id"],
            ["id"],
            ondelete="SET NULL",
        )


def downgrade() -> None:
    with op.batch_alter_table("samples", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("fk_samples_source_file_id_sample_files"), type_="foreignkey")
        batch_op.drop_index(batch_op.f("ix_samples_source_file_id"))

    with op.batch_alter_table("sample_files", schema=None) as batch_op:
        batch_op.drop_index(
            "uq_sample_files_study_id_sha256_imported",
            postgresql_where=sa.text("status = 'imported'"),
            sqlite_where=sa.text("status = 'imported'"),
        )
        batch_op.drop_index("ix_sample_files_study_id_created_at")

    op.drop_table("sample_files")
