"""job queue: procrastinate's tables, types and functions (PostgreSQL only)

The schema is the one bundled with the pinned procrastinate (requirements.txt), applied as it
ships. Upgrading procrastinate later means a new migration of ours that runs the files of
`procrastinate/sql/migrations/` between the two versions, in order (their names say which). SQLite
has no job queue: on it this migration does nothing.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-06 21:00:00.000000
"""

from collections.abc import Sequence

from alembic import op
from procrastinate.schema import SchemaManager

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

QUEUE_TABLES = (
    "procrastinate_events",
    "procrastinate_periodic_defers",
    "procrastinate_jobs",
    "procrastinate_workers",
)
QUEUE_TYPES = ("procrastinate_job_to_defer_v1", "procrastinate_job_event_type", "procrastinate_job_status")
# Every function of the schema (there are many, and versions add some): by its name's prefix.
DROP_QUEUE_FUNCTIONS = r"""
DO $$
DECLARE
    queue_function regprocedure;
BEGIN
    FOR queue_function IN
        SELECT p.oid::regprocedure FROM pg_proc p
        WHERE p.proname LIKE 'procrastinate\_%' AND p.pronamespace = current_schema()::regnamespace
    LOOP
        EXECUTE 'DROP FUNCTION ' || queue_function || ' CASCADE';
    END LOOP;
END
$$;
"""


def _on_postgresql() -> bool:
    return op.get_bind().dialect.name == "postgresql"


def upgrade() -> None:
    if _on_postgresql():
        # As procrastinate's own `schema --apply` does: the file in one go, its `%` signs doubled
        # (the driver reads the statement as a template even without parameters).
        op.get_bind().exec_driver_sql(SchemaManager.get_schema().replace("%", "%%"))


def downgrade() -> None:
    if not _on_postgresql():
        return
    for table in QUEUE_TABLES:
        op.execute(f"DROP TABLE IF EXISTS {table} CASCADE")
    op.get_bind().exec_driver_sql(DROP_QUEUE_FUNCTIONS.replace("%", "%%"))
    for queue_type in QUEUE_TYPES:
        op.execute(f"DROP TYPE IF EXISTS {queue_type}")
