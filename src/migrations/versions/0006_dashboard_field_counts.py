"""dashboard field counts: per field of each study, the samples with a value and, for a choice field,
the samples with each choice, maintained by every sample write; an index for the newest activity

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-22 06:45:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The samples already stored, counted once here (the app maintains the rows from now on). `value`
# '' is "has a value" (a JSON null is none); a choice is never empty, so the two kinds cannot clash.
# Which fields are choice fields comes from the study's own sample_fields.
_POSTGRESQL_BACKFILL = """
INSERT INTO study_field_value_counts (study_id, field, value, count)
SELECT samples.study_id, item.key, '', count(*)
FROM samples CROSS JOIN LATERAL jsonb_each(samples."values") AS item
WHERE jsonb_typeof(item.value) <> 'null'
GROUP BY samples.study_id, item.key
UNION ALL
SELECT samples.study_id, definition ->> 'name', samples."values" ->> (definition ->> 'name'), count(*)
FROM samples
JOIN studies ON studies.id = samples.study_id
CROSS JOIN LATERAL json_array_elements(studies.sample_fields) AS definition
WHERE definition ->> 'type' = 'choice' AND samples."values" ->> (definition ->> 'name') IS NOT NULL
GROUP BY samples.study_id, definition ->> 'name', samples."values" ->> (definition ->> 'name')
"""

# Field names are letters, digits and `_` (checked when a schema is set): safe in a JSON path.
_SQLITE_BACKFILL = """
INSERT INTO study_field_value_counts (study_id, field, value, count)
SELECT samples.study_id, item.key, '', count(*)
FROM samples, json_each(samples."values") AS item
WHERE item.type <> 'null'
GROUP BY samples.study_id, item.key
UNION ALL
SELECT samples.study_id, json_extract(definition.value, '$.name'),
       json_extract(samples."values", '$.' || json_extract(definition.value, '$.name')) AS choice,
       count(*)
FROM samples
JOIN studies ON studies.id = samples.study_id, json_each(studies.sample_fields) AS definition
WHERE json_extract(definition.value, '$.type') = 'choice' AND choice IS NOT NULL
GROUP BY samples.study_id, json_extract(definition.value, '$.name'), choice
"""


def upgrade() -> None:
    op.create_table(
        "study_field_value_counts",
        sa.Column("study_id", sa.Uuid(), nullable=False),
        sa.Column("field", sa.String(length=64), nullable=False),
        sa.Column("value", sa.String(length=200), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["study_id"],
            ["studies.id"],
            name=op.f("fk_study_field_value_counts_study_id_studies"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("study_id", "field", "value", name=op.f("pk_study_field_value_counts")),
    )
    postgresql = op.get_bind().dialect.name == "postgresql"
    op.execute(_POSTGRESQL_BACKFILL if postgresql else _SQLITE_BACKFILL)
    # The dashboard's newest activity across every study (an administrator's), read from the top.
    op.create_index("ix_study_activity_at_id", "study_activity", ["at", "id"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_study_activity_at_id", table_name="study_activity")
    op.drop_table("study_field_value_counts")
