"""The benchmark's data set, generated inside PostgreSQL (INSERT ... SELECT generate_series).

200 users, 1,000 studies with 5 members each, 1,000,000 samples spread unevenly (the first study
holds 20% of them: 200,000 of a million), and activity entries (a few per study, and one per
sample in the big study). Rows are made by the database
itself, so seeding a million samples takes seconds to a minute, not hours. The benchmark's own
user (registered through the API first, so it has a real password hash) is member #0 and owns the
big study.
"""

import json
import time
import uuid
from dataclasses import dataclass

import psycopg

USERS = 200
STUDIES = 1_000
MEMBERS_PER_STUDY = 5
BIG_STUDY_SHARE = 0.2
MEMBER_STRIDE = 37  # co-prime with USERS: each study's 5 members are 5 different users

SAMPLE_FIELDS = [
    {"name": "tissue", "type": "choice", "required": True, "choices": ["blood", "plasma", "serum", "urine"]},
    {"name": "volume", "type": "number", "required": True, "unit": "mL", "min": 0},
    {"name": "age", "type": "integer", "required": False, "min": 0, "max": 130},
    {"name": "collected_on", "type": "date", "required": True},
    {"name": "collected_at", "type": "datetime", "required": False},
    {"name": "fasting", "type": "boolean", "required": False},
    {"name": "site", "type": "text", "required": True, "max_length": 64},
    {"name": "visit", "type": "integer", "required": False, "min": 1},
    {"name": "freezer", "type": "text", "required": False, "max_length": 16},
    {"name": "notes", "type": "text", "required": False},
]

# One sample's values, computed from its number g: every field of SAMPLE_FIELDS, valid for it.
_SAMPLE_VALUES_SQL = """jsonb_build_object(
    'tissue', (ARRAY['blood','plasma','serum','urine'])[1 + g %% 4],
    'volume', round((g %% 500) / 10.0, 1),
    'age', g %% 100,
    'collected_on', to_char(DATE '2025-01-01' + (g %% 365), 'YYYY-MM-DD'),
    'collected_at', to_char(TIMESTAMP '2025-01-01' + g * INTERVAL '1 minute', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'),
    'fasting', g %% 2 = 0,
    'site', 'SITE-' || (g %% 20),
    'visit', 1 + g %% 6,
    'freezer', 'F' || (g %% 8))"""


@dataclass(frozen=True, slots=True)
class SeededData:
    big_study_id: uuid.UUID
    samples: int
    seconds: float


def seeded_emails(count: int) -> list[str]:
    """Emails of seeded users (all with the benchmark user's password)."""
    return [f"seed{n}@example.org" for n in range(1, min(count, USERS - 1) + 1)]


def sample_counts(total: int, studies: int) -> list[int]:
    """The first study gets BIG_STUDY_SHARE; the rest falls off with rank (a long tail, as in life)."""
    big = int(total * BIG_STUDY_SHARE)
    weights = [1 / (rank**0.8) for rank in range(1, studies)]
    scale = (total - big) / sum(weights)
    counts = [big] + [int(weight * scale) for weight in weights]
    counts[1] += total - sum(counts)  # rounding leftovers
    return counts


def seed(database_url: str, *, owner_email: str, samples: int) -> SeededData:
    """Fills a migrated, empty database (but for the owner's account) with the benchmark's data set."""
    started = time.perf_counter()
    with psycopg.connect(database_url.replace("postgresql+psycopg", "postgresql")) as connection:
        owner_id = _seed_users(connection, owner_email=owner_email)
        study_ids = _seed_studies(connection, owner_id=owner_id)
        _seed_members(connection, owner_id=owner_id, big_study_id=study_ids[0])
        for study_id, count in zip(study_ids, sample_counts(samples, len(study_ids)), strict=True):
            _seed_samples(connection, study_id=study_id, count=count, owner_id=owner_id)
        _seed_field_counts(connection)
        _seed_activity(connection, owner_id=owner_id, big_study_id=study_ids[0])
        connection.commit()
        connection.execute("ANALYZE")
    return SeededData(big_study_id=study_ids[0], samples=samples, seconds=time.perf_counter() - started)


def _seed_users(connection: psycopg.Connection, *, owner_email: str) -> uuid.UUID:
    owner_id, password_hash = connection.execute(
        "SELECT id, password_hash FROM users WHERE email = %s", (owner_email,)
    ).fetchone()
    connection.execute(
        """INSERT INTO users (id, email, full_name, password_hash, role, is_active, created_at, updated_at)
           SELECT gen_random_uuid(), 'seed' || g || '@example.org', 'Seed User ' || g, %s,
                  'researcher', true, now() + g * INTERVAL '1 second', now()
           FROM generate_series(1, %s) g""",
        (password_hash, USERS - 1),
    )
    return owner_id


def _seed_studies(connection: psycopg.Connection, *, owner_id: uuid.UUID) -> list[uuid.UUID]:
    rows = connection.execute(
        """INSERT INTO studies (id, code, code_normalized, title, description, status, sample_fields,
                               sample_count, created_by, version, created_at, updated_at)
           SELECT gen_random_uuid(), 'BENCH-' || lpad(g::text, 4, '0'), 'BENCH-' || lpad(g::text, 4, '0'),
                  'Benchmark study ' || g, NULL,
                  CASE WHEN g %% 25 = 0 THEN 'archived' WHEN g %% 10 = 0 THEN 'locked' ELSE 'active' END,
                  %s::json, 0, %s, 1, now() - g * INTERVAL '1 hour', now()
           FROM generate_series(1, %s) g
           RETURNING id, code""",
        (json.dumps(SAMPLE_FIELDS), owner_id, STUDIES),
    ).fetchall()
    return [study_id for study_id, _code in sorted(rows, key=lambda row: row[1])]


def _seed_members(connection: psycopg.Connection, *, owner_id: uuid.UUID, big_study_id: uuid.UUID) -> None:
    connection.execute(
        """WITH people AS (SELECT id, row_number() OVER (ORDER BY created_at, id) - 1 AS n FROM users),
                numbered AS (SELECT id, row_number() OVER (ORDER BY code) AS g FROM studies)
           INSERT INTO study_members (study_id, user_id, role, created_at)
           SELECT numbered.id, people.id,
                  CASE WHEN k = 0 THEN 'owner' WHEN k < 3 THEN 'editor' ELSE 'viewer' END, now()
           FROM numbered CROSS JOIN generate_series(0, %s) k
           JOIN people ON people.n = (numbered.g + k * %s) %% %s""",
        (MEMBERS_PER_STUDY - 1, MEMBER_STRIDE, USERS),
    )
    connection.execute(
        """INSERT INTO study_members (study_id, user_id, role, created_at) VALUES (%s, %s, 'owner', now())
           ON CONFLICT (study_id, user_id) DO UPDATE SET role = 'owner'""",
        (big_study_id, owner_id),
    )


def _seed_samples(
    connection: psycopg.Connection, *, study_id: uuid.UUID, count: int, owner_id: uuid.UUID
) -> None:
    if count <= 0:
        return
    connection.execute(
        f"""INSERT INTO samples (id, study_id, sample_id, sample_id_normalized, status, values,
                                source_file_id, created_by, version, created_at, updated_at)
            SELECT gen_random_uuid(), %s, 'S-' || lpad(g::text, 7, '0'), 's-' || lpad(g::text, 7, '0'),
                   (ARRAY['registered','received','stored','consumed','discarded'])[1 + g %% 5],
                   {_SAMPLE_VALUES_SQL}, NULL, %s, 1,
                   now() - (g %% 100000) * INTERVAL '1 minute', now()
            FROM generate_series(1, %s) g""",  # noqa: S608 (a constant expression, no input)
        (study_id, owner_id, count),
    )
    connection.execute("UPDATE studies SET sample_count = %s WHERE id = %s", (count, study_id))
    # The per-status and per-day counters that sample writes maintain (migration 0005 backfills them so).
    connection.execute(
        """INSERT INTO study_sample_counts (study_id, status, count)
           SELECT study_id, status, count(*) FROM samples WHERE study_id = %s GROUP BY study_id, status""",
        (study_id,),
    )
    connection.execute(
        """INSERT INTO study_daily_sample_counts (study_id, day, count)
           SELECT study_id, date(created_at AT TIME ZONE 'UTC'), count(*) FROM samples WHERE study_id = %s
           GROUP BY study_id, date(created_at AT TIME ZONE 'UTC')""",
        (study_id,),
    )


def _seed_field_counts(connection: psycopg.Connection) -> None:
    """The per-field counters that sample writes maintain (migration 0006 backfills them so): per
    field the samples with a value (value ''), per choice field and choice the samples with it."""
    connection.execute(
        """INSERT INTO study_field_value_counts (study_id, field, value, count)
           SELECT samples.study_id, item.key, '', count(*)
           FROM samples CROSS JOIN LATERAL jsonb_each(samples.values) AS item
           WHERE jsonb_typeof(item.value) <> 'null'
           GROUP BY samples.study_id, item.key
           UNION ALL
           SELECT samples.study_id, definition ->> 'name', samples.values ->> (definition ->> 'name'),
                  count(*)
           FROM samples JOIN studies ON studies.id = samples.study_id
           CROSS JOIN LATERAL json_array_elements(studies.sample_fields) AS definition
           WHERE definition ->> 'type' = 'choice' AND samples.values ->> (definition ->> 'name') IS NOT NULL
           GROUP BY samples.study_id, definition ->> 'name', samples.values ->> (definition ->> 'name')"""
    )


def _seed_activity(connection: psycopg.Connection, *, owner_id: uuid.UUID, big_study_id: uuid.UUID) -> None:
    """A few entries per study, and the big study's log as sample writes leave it: one entry per
    sample created (the dashboard's newest-activity query must not read a study's whole log)."""
    connection.execute(
        """INSERT INTO study_activity (id, study_id, action, actor_id, at, details)
           SELECT gen_random_uuid(), studies.id,
                  (ARRAY['study_created','member_added','status_changed','sample_created'])[1 + k],
                  %s, studies.created_at + k * INTERVAL '1 minute', '{}'::json
           FROM studies CROSS JOIN generate_series(0, 3) k""",
        (owner_id,),
    )
    connection.execute(
        """INSERT INTO study_activity (id, study_id, action, actor_id, at, details)
           SELECT gen_random_uuid(), %s, 'sample_created', %s, samples.created_at,
                  json_build_object('sample_id', samples.sample_id)
           FROM samples WHERE samples.study_id = %s""",
        (big_study_id, owner_id, big_study_id),
    )
