"""a sample's log by file: the index of the activity entries that name a file, and
samples.updated_by_file_id (the last sample file whose import changed the sample)

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-07 04:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0017"
down_revision: str | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Both indexes hold only the rows that name a file: the few entries of the log that do, and the
# samples an import updated.
_ENTRY_NAMES_A_FILE = "sample_file_id IS NOT NULL"
_UPDATED_BY_A_FILE = "updated_by_file_id IS NOT NULL"


def upgrade() -> None:
    with op.batch_alter_table("study_activity", schema=None) as batch_op:
        # A file's entries: a sample's log shows the imports of the files that created and last updated it.
        batch_op.create_index(
            "ix_study_activity_study_id_sample_file_id",
            ["study_id", "sample_file_id"],
            unique=False,
            postgresql_where=sa.text(_ENTRY_NAMES_A_FILE),
            sqlite_where=sa.text(_ENTRY_NAMES_A_FILE),
        )
    with op.batch_alter_table("samples", schema=None) as batch_op:
        # Nullable without a default: on PostgreSQL adding it rewrites no row.
        batch_op.add_column(sa.Column("updated_by_file_id", sa.Uuid(), nullable=True))
        batch_op.create_foreign_key(
            batch_op.f("fk_samples_updated_by_file_id_sample_files"),
            "sample_files",
            ["updated_by_file_id"],
            ["id"],
            ondelete="SET NULL",
        )
        # Deleting a file sets its samples' column to NULL: an index lookup, not a scan of every sample.
        batch_op.create_index(
            "ix_samples_updated_by_file_id",
            ["updated_by_file_id"],
            unique=False,
            postgresql_where=sa.text(_UPDATED_BY_A_FILE),
            sqlite_where=sa.text(_UPDATED_BY_A_FILE),
        )


def downgrade() -> None:
    with op.batch_alter_table("samples", schema=None) as batch_op:
        batch_op.drop_index("ix_samples_updated_by_file_id")
        batch_op.drop_constraint(batch_op.f("fk_samples_updated_by_file_id_sample_files"), type_="foreignkey")
        batch_op.drop_column("updated_by_file_id")
    with op.batch_alter_table("study_activity", schema=None) as batch_op:
        batch_op.drop_index("ix_study_activity_study_id_sample_file_id")
