"""auth: login throttles per scope (account, client address, session)

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22 04:00:00.000000

The primary key grows from the email hash to (email hash, scope). The rows are counts of the
last LOGIN_LOCKOUT_MINUTES, kept per email only, which the new scopes cannot be told from, so
both directions start counting afresh rather than guess a scope for them.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute(sa.text("DELETE FROM login_throttles"))
    with op.batch_alter_table("login_throttles", schema=None) as batch_op:
        batch_op.add_column(sa.Column("scope", sa.String(length=72), nullable=False))
        batch_op.drop_constraint("pk_login_throttles", type_="primary")
        batch_op.create_primary_key("pk_login_throttles", ["email_hash", "scope"])


def downgrade() -> None:
    op.execute(sa.text("DELETE FROM login_throttles"))
    with op.batch_alter_table("login_throttles", schema=None) as batch_op:
        batch_op.drop_constraint("pk_login_throttles", type_="primary")
        batch_op.drop_column("scope")
        batch_op.create_primary_key("pk_login_throttles", ["email_hash"])
