"""activity subjects: the sample and the sample file an activity entry is about, and a sample's log index

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-07 01:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


# Entries written before this revision name their sample and file only in `details`. The file by its
# id; the sample by its sample id as it was then, matched exactly to a sample of the study created no
# later than the entry (so a deleted sample's entries do not go to a later one of the same id). An
# entry of a sample since renamed or deleted keeps no sample_pk: it stays in the study's log only.
_BACKFILL = {
    "postgresql": (
        "UPDATE study_activity SET sample_file_id = CAST(details->>'sample_file_id' AS uuid) "
        "WHERE action IN ('sample_file_imported', 'sample_file_rejected', 'sample_file_deleted') "
        "AND details->>'sample_file_id' IS NOT NULL",
        "UPDATE study_activity AS a SET sample_pk = s.id FROM samples AS s "
        "WHERE a.action IN ('sample_created', 'sample_updated', 'sample_deleted') "
        "AND s.study_id = a.study_id "
        "AND s.sample_id = a.details->>'sample_id' AND s.created_at <= a.at",
    ),
    # SQLite keeps a Uuid as 32 hex digits, without the dashes of the details' text.
    "sqlite": (
        "UPDATE study_activity SET sample_file_id = "
        "replace(json_extract(details, '$.sample_file_id'), '-', '') "
        "WHERE action IN ('sample_file_imported', 'sample_file_rejected', 'sample_file_deleted') "
        "AND json_extract(details, '$.sample_file_id') IS NOT NULL",
        "UPDATE study_activity SET sample_pk = (SELECT s.id FROM samples AS s "
        "WHERE s.study_id = study_activity.study_id "
        "AND s.sample_id = json_extract(study_activity.details, '$.sample_id') "
        "AND s.created_at <= study_activity.at) "
        "WHERE action IN ('sample_created', 'sample_updated', 'sample_deleted')",
    ),
}


def upgrade() -> None:
    with op.batch_alter_table("study_activity", schema=None) as batch_op:
        batch_op.add_column(sa.Column("sample_pk", sa.Uuid(), nullable=True))
        batch_op.add_column(sa.Column("sample_file_id", sa.Uuid(), nullable=True))
    for statement in _BACKFILL.get(op.get_bind().dialect.name, ()):
        op.execute(statement)
    with op.batch_alter_table("study_activity", schema=None) as batch_op:
        batch_op.create_index(
            "ix_study_activity_study_id_sample_pk_at_id", ["study_id", "sample_pk", "at", "id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("study_activity", schema=None) as batch_op:
        batch_op.drop_index("ix_study_activity_study_id_sample_pk_at_id")
        batch_op.drop_column("sample_file_id")
        batch_op.drop_column("sample_pk")
