"""samples index for import: the GIN index of `values` with jsonb_path_ops

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-22 07:20:00.000000

`field.X=` filters are `values @> {...}`, the only operator jsonb_path_ops supports and the only one
any query uses. Its index is a third smaller and cheaper to write: measured inserting 100,000
samples into a copy of `samples` (load ~6 on 2 cores), 6.6 s with the default GIN opclass, 4.0 s
with jsonb_path_ops, 2.6 s without a GIN index, 0.4 s with no index at all.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return  # SQLite has no GIN index
    op.drop_index("ix_samples_values", table_name="samples", postgresql_using="gin")
    op.create_index(
        "ix_samples_values",
        "samples",
        ["values"],
        unique=False,
        postgresql_using="gin",
        postgresql_ops={"values": "jsonb_path_ops"},
    )


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.drop_index("ix_samples_values", table_name="samples", postgresql_using="gin")
    op.create_index("ix_samples_values", "samples", ["values"], unique=False, postgresql_using="gin")
