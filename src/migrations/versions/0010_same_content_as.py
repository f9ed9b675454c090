"""same content as: a sample file may repeat the content of an earlier import of its study

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-06 19:00:00.000000

Since this revision an upload whose content was imported into the study before is a duplicate only
if importing it again would change nothing; otherwise it is imported like any other file and its
record names the earlier one in `same_content_as`. The unique index on (study_id, sha256) of
imported files is narrowed to the first import of each content (`same_content_as IS NULL`), and a
plain index on (study_id, sha256) finds the earlier imports of a content.

The downgrade fails while a content is imported twice into a study (the old unique index would not
hold): delete the later records first.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_UNIQUE = "uq_sample_files_study_id_sha256_imported"
_FIRST_IMPORT = "status = 'imported' AND same_content_as IS NULL"
_IMPORTED = "status = 'imported'"


def upgrade() -> None:
    with op.batch_alter_table("sample_files", schema=None) as batch_op:
        batch_op.add_column(sa.Column("same_content_as", sa.Uuid(), nullable=True))
        batch_op.drop_index(_UNIQUE)
        batch_op.create_index(
            _UNIQUE,
            ["study_id", "sha256"],
            unique=True,
            postgresql_where=sa.text(_FIRST_IMPORT),
            sqlite_where=sa.text(_FIRST_IMPORT),
        )
        batch_op.create_index("ix_sample_files_study_id_sha256", ["study_id", "sha256"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("sample_files", schema=None) as batch_op:
        batch_op.drop_index("ix_sample_files_study_id_sha256")
        batch_op.drop_index(_UNIQUE)
        batch_op.create_index(
            _UNIQUE,
            ["study_id", "sha256"],
            unique=True,
            postgresql_where=sa.text(_IMPORTED),
            sqlite_where=sa.text(_IMPORTED),
        )
        batch_op.drop_column("same_content_as")
