"""bounded values: activity details written before they were bounded are cut, and stored sample
fields are brought within the limits of text lengths and numeric bounds

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-06 18:00:00.000000

Since this revision an activity entry keeps each text to ACTIVITY_TEXT_MAX_LENGTH characters and its
details to ACTIVITY_DETAILS_MAX_BYTES (study.utils.bounded_details, applied where activity is
written). Entries written before may hold whole 900,000-character values, which the dashboard read
and answered 20 at a time on every poll: they are cut here once, by the same rule, so that reads
never have to. Only rows whose stored JSON is longer than one text may be can change; the others
are not read.

Field definitions stored before may set a text max_length above TEXT_MAX_LENGTH_LIMIT (100,000 was
allowed) or a min/max beyond MAX_SAFE_INTEGER (2**53 was allowed), which the sample validator now
refuses to compile: each such constraint is set to the limit, and the study's version goes up so
that a cached validator is not used for it again. Stored sample values are left as they are (a
write checks only the values it writes). Text fields without a max_length need nothing: they get
TEXT_DEFAULT_MAX_LENGTH when compiled.

The downgrade leaves the data as it is: what was cut is gone.
"""

from collections.abc import Iterator, Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

from src.study.constants import (
    ACTIVITY_TEXT_MAX_LENGTH,
    ACTIVITY_TRUNCATED_KEY,
    MAX_SAFE_INTEGER,
    TEXT_MAX_LENGTH_LIMIT,
)
from src.study.utils import bounded_details

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_BATCH = 500
_activity = sa.table("study_activity", sa.column("id", sa.Uuid()), sa.column("details", sa.JSON()))
_studies = sa.table(
    "studies",
    sa.column("id", sa.Uuid()),
    sa.column("sample_fields", sa.JSON()),
    sa.column("version", sa.Integer()),
)


def upgrade() -> None:
    connection = op.get_bind()
    _cut_activity(connection)
    _bring_fields_within_limits(connection)


def downgrade() -> None:
    """Nothing to undo: what was cut is gone, and values within the limits are valid before too."""


def _batches(connection: sa.Connection, query: sa.Select, id_column: sa.ColumnElement) -> Iterator[list]:
    """The rows of the query a batch at a time, in id order (read again from the last id seen)."""
    last = None
    while True:
        batch = query.order_by(id_column).limit(_BATCH)
        rows = connection.execute(batch if last is None else batch.where(id_column > last)).all()
        if not rows:
            return
        yield rows
        last = rows[-1][0]


def _cut_activity(connection: sa.Connection) -> None:
    # A text over the limit, or details over their bytes, make the stored JSON longer than one text.
    stored_length = sa.func.length(sa.cast(_activity.c.details, sa.Text))
    query = sa.select(_activity.c.id, _activity.c.details).where(stored_length > ACTIVITY_TEXT_MAX_LENGTH)
    for rows in _batches(connection, query, _activity.c.id):
        for entry_id, details in rows:
            if not isinstance(details, dict) or ACTIVITY_TRUNCATED_KEY in details:
                continue  # written bounded already
            bounded = bounded_details(details)
            if bounded != details:
                connection.execute(
                    _activity.update().where(_activity.c.id == entry_id).values(details=bounded)
                )


def _bring_fields_within_limits(connection: sa.Connection) -> None:
    query = sa.select(_studies.c.id, _studies.c.sample_fields)
    for rows in _batches(connection, query, _studies.c.id):
        for study_id, fields in rows:
            within = [_field_within_limits(field) for field in fields]
            if within != fields:
                connection.execute(
                    _studies.update()
                    .where(_studies.c.id == study_id)
                    .values(sample_fields=within, version=_studies.c.version + 1)
                )


def _field_within_limits(field: dict[str, Any]) -> dict[str, Any]:
    within = dict(field)
    max_length = within.get("max_length")
    if isinstance(max_length, int) and max_length > TEXT_MAX_LENGTH_LIMIT:
        within["max_length"] = TEXT_MAX_LENGTH_LIMIT
    for key in ("min", "max"):
        bound = within.get(key)
        if isinstance(bound, int | float) and not isinstance(bound, bool) and abs(bound) > MAX_SAFE_INTEGER:
            within[key] = MAX_SAFE_INTEGER if bound > 0 else -MAX_SAFE_INTEGER
    return within
