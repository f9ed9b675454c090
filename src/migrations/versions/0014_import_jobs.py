"""import jobs: a sample file's record carries its import from upload to the end

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-06 23:50:00.000000

An upload is stored and recorded `queued`, then imported by a job (in the API process, or by the
job queue's workers): the record keeps what the job needs (the upload's reading options), where it
is (`rows_read`, `rows_total`, `started_at`, `finished_at`), why it failed (`failure`, a problem),
whether its cancel was asked (`cancel_requested`), which claim of it runs the import (`claim`:
only that run may write the outcome), and, for an upload that would have changed
nothing, the earlier import it repeats (`duplicate_of`). Status is now one of queued, importing,
imported, rejected, failed, cancelled; the records before this revision (imported or rejected)
stay valid, finished when they were made.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import src.database

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_UNFINISHED = "status IN ('queued', 'importing')"


def upgrade() -> None:
    with op.batch_alter_table("sample_files", schema=None) as batch_op:
        batch_op.add_column(sa.Column("import_options", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("rows_read", sa.Integer(), server_default="0", nullable=False))
        batch_op.add_column(sa.Column("rows_total", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("started_at", src.database.UTCDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("finished_at", src.database.UTCDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("failure", sa.JSON(), nullable=True))
        batch_op.add_column(
            sa.Column("cancel_requested", sa.Boolean(), server_default=sa.false(), nullable=False)
        )
        batch_op.add_column(sa.Column("duplicate_of", sa.Uuid(), nullable=True))
        batch_op.add_column(sa.Column("claim", sa.Integer(), server_default="0", nullable=False))
        # The sweep for imports a stopped API process left unfinished, and a user's place in the queue.
        batch_op.create_index(
            "ix_sample_files_unfinished_created_at",
            ["created_at"],
            postgresql_where=sa.text(_UNFINISHED),
            sqlite_where=sa.text(_UNFINISHED),
        )
        batch_op.create_index(
            "ix_sample_files_uploaded_by_unfinished",
            ["uploaded_by"],
            postgresql_where=sa.text(_UNFINISHED),
            sqlite_where=sa.text(_UNFINISHED),
        )
    # Each dialect's way to read the report's row count (literal SQL: nothing here is input).
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "UPDATE sample_files SET finished_at = created_at, started_at = created_at, "
            "rows_read = COALESCE((report->>'rows')::integer, 0), rows_total = (report->>'rows')::integer"
        )
    else:
        op.execute(
            "UPDATE sample_files SET finished_at = created_at, started_at = created_at, "
            "rows_read = COALESCE(json_extract(report, '$.rows'), 0), rows_total = json_extract(report, '$.rows')"
        )


def downgrade() -> None:
    # Records of imports that never finished have nothing the old schema can say of them.
    op.execute("DELETE FROM sample_files WHERE status NOT IN ('imported', 'rejected')")
    with op.batch_alter_table("sample_files", schema=None) as batch_op:
        batch_op.drop_index("ix_sample_files_uploaded_by_unfinished")
        batch_op.drop_index("ix_sample_files_unfinished_created_at")
        for column in (
            "claim",
            "duplicate_of",
            "cancel_requested",
            "failure",
            "finished_at",
            "started_at",
            "rows_total",
            "rows_read",
            "import_options",
        ):
            batch_op.drop_column(column)
