"""study sample counts: samples per status and per creation day of each study, maintained by every
sample write

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-22 05:30:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SAMPLE_STATUSES = ("registered", "received", "stored", "consumed", "discarded")


def upgrade() -> None:
    op.create_table(
        "study_sample_counts",
        sa.Column("study_id", sa.Uuid(), nullable=False),
        sa.Column(
            "status",
            sa.Enum(
                *SAMPLE_STATUSES,
                name="sample_count_status",
                native_enum=False,
                create_constraint=True,
                length=20,
            ),
            nullable=False,
        ),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["study_id"],
            ["studies.id"],
            name=op.f("fk_study_sample_counts_study_id_studies"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("study_id", "status", name=op.f("pk_study_sample_counts")),
    )
    # The samples already stored: counted once here, maintained by every write from now on.
    op.execute(
        "INSERT INTO study_sample_counts (study_id, status, count) "
        "SELECT study_id, status, count(*) FROM samples GROUP BY study_id, status"
    )

    op.create_table(
        "study_daily_sample_counts",
        sa.Column("study_id", sa.Uuid(), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["study_id"],
            ["studies.id"],
            name=op.f("fk_study_daily_sample_counts_study_id_studies"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("study_id", "day", name=op.f("pk_study_daily_sample_counts")),
    )
    # Days are UTC days; SQLite stores UTC timestamps as text, whose date() is that day.
    utc_day = (
        "date(created_at AT TIME ZONE 'UTC')"
        if op.get_bind().dialect.name == "postgresql"
        else "date(created_at)"
    )
    backfill = f"SELECT study_id, {utc_day}, count(*) FROM samples GROUP BY study_id, {utc_day}"  # noqa: S608
    op.execute(f"INSERT INTO study_daily_sample_counts (study_id, day, count) {backfill}")


def downgrade() -> None:
    op.drop_table("study_daily_sample_counts")
    op.drop_table("study_sample_counts")
