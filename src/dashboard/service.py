"""Figures of the dashboard: a fixed number of statements over counters and indexed columns.

Nothing here loops over studies: every query is scoped to the caller's studies by one subquery
(their memberships; no condition at all for an administrator), so the number of statements is the
same for one study or a thousand. The counts of an answer travel in one UNION ALL of grouped
queries, each row tagged with what it counts: one round trip instead of one per figure (a round
trip measured 0.35 ms of a worker on the loaded 2-core machine, besides the database's own work).

Every statement is built once, at import, for each of the few shapes there are (an administrator's or
a member's; a member's newest activity with or without LATERAL), and a request only binds its values:
the caller's id, the study's, the window's first day. Building the statements and their cache keys
per request was 23% of the summary's worker samples under load and 19% of a study's.
"""

from collections import defaultdict
from collections.abc import Iterable, Mapping
from datetime import date
from typing import Any

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    CompoundSelect,
    Select,
    String,
    bindparam,
    case,
    cast,
    func,
    literal,
    select,
    true,
    union_all,
)
from sqlalchemy.ext.asyncio import AsyncSession

from src.auth.constants import Role
from src.auth.models import User
from src.dashboard.constants import RECENT_ACTIVITY_LIMIT, RECENT_UPLOADS_LIMIT, TOP_STUDIES_LIMIT
from src.dashboard.utils import daily_series, first_day, first_week, monday_of, weekly_series
from src.database import utcnow
from src.sampleFileUpload.constants import SampleFileStatus
from src.sampleFileUpload.models import SampleFile, report_count_columns
from src.study import activity as study_activity
from src.study.constants import FIELD_FILLED, FieldType, SampleStatus, StudyStatus
from src.study.models import (
    Study,
    StudyActivity,
    StudyDailySampleCount,
    StudyFieldValueCount,
    StudyMember,
    StudySampleCount,
)

_REPORT_COUNTS = ("rows", "created", "updated", "unchanged", "rejected")

# What a row of the counts query counts (its first column).
_STUDIES, _SAMPLES, _FILES, _DAYS, _USERS, _FIELDS = "studies", "samples", "files", "days", "users", "fields"

Counts = dict[str, list[tuple[str, str, int, int]]]


def _member_study_ids() -> Select:
    """The ids of the studies a member may read: theirs (the caller's id bound as `user_id`)."""
    return select(StudyMember.study_id).where(StudyMember.user_id == bindparam("user_id"))


def _in_scope(column: Any, *, admin: bool) -> ColumnElement[bool]:
    """The caller's studies; for an administrator every row, with no condition the planner must check."""
    return true() if admin else column.in_(_member_study_ids())


def _counted(kind: str, key: Any, count: Any, extra: Any = 0) -> list[ColumnElement[Any]]:
    """The four columns every part of the counts query has: kind, key, count and one more number."""
    return [
        literal(kind, String).label("kind"),
        cast(key, String).label("key"),
        cast(count, BigInteger).label("count"),
        cast(extra, BigInteger).label("extra"),
    ]


async def _counts(session: AsyncSession, statement: CompoundSelect, params: dict[str, Any]) -> Counts:
    """Runs the grouped queries' UNION ALL; their rows by kind as (kind, key, count, extra)."""
    by_kind: Counts = defaultdict(list)
    for kind, key, count, extra in await session.execute(statement, params):
        by_kind[kind].append((kind, key, int(count), int(extra)))
    return by_kind


def _sample_status_part(scope: ColumnElement[bool]) -> Select:
    return (
        select(*_counted(_SAMPLES, StudySampleCount.status, func.sum(StudySampleCount.count)))
        .where(scope)
        .group_by(StudySampleCount.status)
    )


def _created_per_day_part(scope: ColumnElement[bool]) -> Select:
    """Samples created per UTC day since the day bound as `first`, from the maintained per-day
    counters: grouping the samples themselves over the (study_id, created_at) index took 430 ms (a
    member) to 620 ms (an admin) at 1,000,000 samples."""
    return (
        select(*_counted(_DAYS, StudyDailySampleCount.day, func.sum(StudyDailySampleCount.count)))
        .where(scope, StudyDailySampleCount.day >= bindparam("first"))
        .group_by(StudyDailySampleCount.day)
    )


def _files_part(scope: ColumnElement[bool]) -> Select:
    size = func.coalesce(func.sum(SampleFile.size_bytes), 0)
    return (
        select(*_counted(_FILES, SampleFile.status, func.count(), size))
        .where(scope)
        .group_by(SampleFile.status)
    )


def _summary_counts_query(*, admin: bool) -> CompoundSelect:
    parts = [
        select(*_counted(_STUDIES, Study.status, func.count()))
        .where(_in_scope(Study.id, admin=admin))
        .group_by(Study.status),
        _sample_status_part(_in_scope(StudySampleCount.study_id, admin=admin)),
        _files_part(_in_scope(SampleFile.study_id, admin=admin)),
        _created_per_day_part(_in_scope(StudyDailySampleCount.study_id, admin=admin)),
    ]
    if admin:
        active = func.sum(case((User.is_active, 1), else_=0))
        parts.append(select(*_counted(_USERS, User.role, func.count(), active)).group_by(User.role))
    return union_all(*parts)


def _top_studies_query(*, admin: bool) -> Select:
    return (
        select(Study.id, Study.code, Study.title, Study.sample_count)
        .where(_in_scope(Study.id, admin=admin))
        .order_by(Study.sample_count.desc(), Study.code_normalized)
        .limit(TOP_STUDIES_LIMIT)
    )


_NEWEST_FIRST = study_activity.ACTIVITY_NEWEST_FIRST


def _recent_activity_query(scope: ColumnElement[bool]) -> Select:
    """Each entry with its actor, file and study, in the one statement (the page names all three)."""
    return (
        study_activity.activity_query(with_study=True)
        .where(scope)
        .order_by(*_NEWEST_FIRST)
        .limit(RECENT_ACTIVITY_LIMIT)
    )


def _newest_of_each_member_study() -> ColumnElement[bool]:
    """The newest few entries of each of the member's studies (LATERAL: PostgreSQL only)."""
    studies = _member_study_ids().subquery()
    latest = (
        select(StudyActivity.id)
        .where(StudyActivity.study_id == studies.c.study_id)
        .order_by(*_NEWEST_FIRST)
        .limit(RECENT_ACTIVITY_LIMIT)
        .lateral()
    )
    return StudyActivity.id.in_(select(latest.c.id).select_from(studies).join(latest, true()))


# Keyed by "is the caller an administrator".
_SUMMARY_COUNTS = {admin: _summary_counts_query(admin=admin) for admin in (False, True)}
_TOP_STUDIES = {admin: _top_studies_query(admin=admin) for admin in (False, True)}
_EVERYONES_RECENT_ACTIVITY = _recent_activity_query(true())
_MEMBERS_RECENT_ACTIVITY = _recent_activity_query(_in_scope(StudyActivity.study_id, admin=False))
_MEMBERS_RECENT_ACTIVITY_LATERAL = _recent_activity_query(_newest_of_each_member_study())


def _by_key(rows: Iterable[tuple[str, str, int, int]]) -> dict[str, int]:
    return {key: count for _kind, key, count, _extra in rows if count}


def _every(enum: type, counts: Mapping[str, int]) -> dict[str, int]:
    return {member.value: int(counts.get(member.value, 0)) for member in enum}


def _per_day(rows: Iterable[tuple[str, str, int, int]]) -> dict[date, int]:
    # The key is the day as text: ISO on both backends (PostgreSQL's date output, SQLite's storage).
    return {date.fromisoformat(key[:10]): count for key, count in _by_key(rows).items()}


def _file_figures(rows: Iterable[tuple[str, str, int, int]]) -> dict[str, int]:
    by_status = {key: (count, size) for _kind, key, count, size in rows}
    return {
        "total": sum(count for count, _size in by_status.values()),
        "imported": by_status.get(SampleFileStatus.IMPORTED, (0, 0))[0],
        "rejected": by_status.get(SampleFileStatus.REJECTED, (0, 0))[0],
        "total_bytes": sum(size for _count, size in by_status.values()),
    }


async def summary(session: AsyncSession, *, user: User, days: int) -> dict[str, Any]:
    now = utcnow()
    today = now.date()
    first = first_day(today, days)
    admin = user.role == Role.ADMIN
    caller = {} if admin else {"user_id": user.id}
    counts = await _counts(session, _SUMMARY_COUNTS[admin], {**caller, "first": first})
    study_counts = _every(StudyStatus, _by_key(counts[_STUDIES]))
    sample_counts = _every(SampleStatus, _by_key(counts[_SAMPLES]))
    top = await session.execute(_TOP_STUDIES[admin], caller)
    body: dict[str, Any] = {
        "studies": {"total": sum(study_counts.values()), "by_status": study_counts},
        "samples": {"total": sum(sample_counts.values()), "by_status": sample_counts},
        "sample_files": _file_figures(counts[_FILES]),
        "samples_created": daily_series(_per_day(counts[_DAYS]), first=first, last=today),
        "recent_activity": await _recent_activity(session, user=user),
        "top_studies": [row._asdict() for row in top],
        "generated_at": now,
    }
    if admin:
        body["users"] = _user_figures(counts[_USERS])
    return body


async def _recent_activity(session: AsyncSession, *, user: User) -> list[study_activity.ActivityEntry]:
    """The newest entries across the caller's studies. An administrator's walk the (at, id) index
    from the newest. A member's, on PostgreSQL, are the newest few of each of their studies (each an
    index read of (study_id, at, id)) merged: the plain IN query read every entry of those studies
    to sort them (206 ms for a member of a study with 200,000 entries), and walking the (at, id)
    index instead reads everyone's newer entries first (232 ms for a member of quiet studies);
    merged, 0.8-1.4 ms either way (EXPLAIN ANALYZE at the benchmark's size).
    SQLite has no LATERAL; its databases are local ones."""
    if user.role == Role.ADMIN:
        rows = await session.execute(_EVERYONES_RECENT_ACTIVITY)
    else:
        lateral = session.get_bind().dialect.name == "postgresql"
        query = _MEMBERS_RECENT_ACTIVITY_LATERAL if lateral else _MEMBERS_RECENT_ACTIVITY
        rows = await session.execute(query, {"user_id": user.id})
    return study_activity.activity_entries(rows)


def _user_figures(rows: Iterable[tuple[str, str, int, int]]) -> dict[str, Any]:
    by_role = {role: count for _kind, role, count, _active in rows}
    return {
        "total": sum(by_role.values()),
        "active": sum(active for *_, active in rows),
        "by_role": _every(Role, by_role),
    }


# Field names are letters, digits and `_`: the first `:` of a fields row's key ends the name.
_FIELD_SEPARATOR = ":"


def _field_values_part(scope: ColumnElement[bool]) -> Select:
    """Per field the samples with a value; per choice field and choice, the samples with it: the
    study's maintained counters (unpacking every sample's values took 1-2 s for a 200,000-sample
    study). The key is `field:value`, the value FIELD_FILLED for "has a value"."""
    key = StudyFieldValueCount.field + _FIELD_SEPARATOR + StudyFieldValueCount.value
    return select(*_counted(_FIELDS, key, StudyFieldValueCount.count)).where(scope)


# A study's figures: the study bound as `study_id`, the window's first day as `first`.
_STUDY_COUNTS = union_all(
    _sample_status_part(StudySampleCount.study_id == bindparam("study_id")),
    _created_per_day_part(StudyDailySampleCount.study_id == bindparam("study_id")),
    _files_part(SampleFile.study_id == bindparam("study_id")),
    _field_values_part(StudyFieldValueCount.study_id == bindparam("study_id")),
)
_RECENT_UPLOADS = (
    select(
        SampleFile.id,
        SampleFile.filename,
        SampleFile.status,
        SampleFile.mode,
        SampleFile.created_at,
        *report_count_columns(),
    )
    .where(SampleFile.study_id == bindparam("study_id"))
    .order_by(SampleFile.created_at.desc(), SampleFile.id.desc())
    .limit(RECENT_UPLOADS_LIMIT)
)


def _value_counts(
    rows: Iterable[tuple[str, str, int, int]],
) -> tuple[dict[str, int], dict[tuple[str, str], int]]:
    """The fields rows as (filled per field, count per (field, choice))."""
    filled: dict[str, int] = {}
    choices: dict[tuple[str, str], int] = {}
    for _kind, key, count, _extra in rows:
        field, value = key.split(_FIELD_SEPARATOR, 1)
        if value == FIELD_FILLED:
            filled[field] = count
        else:
            choices[field, value] = count
    return filled, choices


async def study_figures(session: AsyncSession, *, study: Study, days: int) -> dict[str, Any]:
    now = utcnow()
    today = now.date()
    first = first_week(today, days)
    counts = await _counts(session, _STUDY_COUNTS, {"study_id": study.id, "first": first})
    recent = await session.execute(_RECENT_UPLOADS, {"study_id": study.id})
    sample_counts = _every(SampleStatus, _by_key(counts[_SAMPLES]))
    files = _file_figures(counts[_FILES])
    filled, choices = _value_counts(counts[_FIELDS])
    total = sum(sample_counts.values())
    return {
        "study_id": study.id,
        "samples": {"total": total, "by_status": sample_counts},
        "samples_created": weekly_series(
            _per_day(counts[_DAYS]), first_week=first, last_week=monday_of(today)
        ),
        "uploads": {
            "imported": files["imported"],
            "rejected": files["rejected"],
            "recent": [
                {
                    "id": row.id,
                    "filename": row.filename,
                    "status": row.status,
                    "mode": row.mode,
                    "created_at": row.created_at,
                    **{key: getattr(row, f"report_{key}") or 0 for key in _REPORT_COUNTS},
                }
                for row in recent
            ],
        },
        "choices": [
            {
                "field": field["name"],
                "counts": {choice: choices.get((field["name"], choice), 0) for choice in field["choices"]},
            }
            for field in study.sample_fields
            if field["type"] == FieldType.CHOICE
        ],
        "completeness": [
            {
                "field": field["name"],
                "filled": filled.get(field["name"], 0),
                "share": filled.get(field["name"], 0) / total if total else 0.0,
            }
            for field in study.sample_fields
        ],
        "generated_at": now,
    }
