"""The activity log of a study: every change is one entry, written by the commit of the change."""

import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Row,
    Select,
    select,
    union_all,
)
from sqlalchemy.ext.asyncio import AsyncSession

from src.auth.models import User
from src.database import (
    count_up_to,
    utcnow,
)
from src.sampleFileUpload.models import SampleFile
from src.schemas import PageParams
from src.study.constants import (
    SAMPLE_FILE_ID_DETAIL,
    ActivityAction,
)
from src.study.models import (
    Sample,
    Study,
    StudyActivity,
)
from src.study.utils import (
    bounded_details,
)


@dataclass(frozen=True, slots=True)
class Actor:
    id: uuid.UUID
    email: str
    full_name: str | None


@dataclass(frozen=True, slots=True)
class ActivityEntry:
    # The entry's own columns (`ENTRY_COLUMNS`: id, action, at, details, sample_pk, sample_file_id).
    activity: Row
    actor: Actor | None
    # The file's name now; None when the entry names no file or its record is gone.
    filename: str | None = None
    # (id, code, title) of the entry's study, where entries of several studies are listed together.
    study: tuple[uuid.UUID, str, str] | None = None


# The activity log: every change is one entry, added to the session of the change itself.


def record_activity(
    session: AsyncSession,
    *,
    study_id: uuid.UUID,
    actor: User | None,
    action: ActivityAction,
    details: Mapping[str, Any],
    sample_pk: uuid.UUID | None = None,
) -> None:
    """Adds an entry to the study's log; it is written by the commit of the change it describes.

    Every module writes activity here, so this is where its details are bounded (texts cut, the
    whole kept small, what was cut listed): what the log and the dashboard answer stays small
    whatever values the change carried. `sample_pk` puts the entry in that sample's own log; a
    `sample_file_id` in the details (the sample-file module's entries) is kept in its own column too,
    so the log names the file by a join."""
    session.add(
        StudyActivity(
            study_id=study_id,
            action=action,
            actor_id=actor.id if actor is not None else None,
            at=utcnow(),
            details=bounded_details(details),
            sample_pk=sample_pk,
            sample_file_id=_file_id_of(details),
        )
    )


def _file_id_of(details: Mapping[str, Any]) -> uuid.UUID | None:
    """The sample file the details name, if any; a value that is no id names none (the log then
    shows the details alone) rather than failing the change being recorded."""
    try:
        return uuid.UUID(str(details[SAMPLE_FILE_ID_DETAIL]))
    except (KeyError, ValueError):
        return None


ACTIVITY_NEWEST_FIRST = (StudyActivity.at.desc(), StudyActivity.id.desc())


# What a page shows of an entry and of its actor: columns, not ORM objects (building an entry and its
# user as identity-mapped objects cost the dashboard summary about a third of its CPU).
ENTRY_COLUMNS = (
    StudyActivity.id,
    StudyActivity.action,
    StudyActivity.at,
    StudyActivity.details,
    StudyActivity.sample_pk,
    StudyActivity.sample_file_id,
)
_ACTOR_COLUMNS = (
    User.id.label("actor_user_id"),
    User.email.label("actor_email"),
    User.full_name.label("actor_full_name"),
)


def activity_query(*, with_study: bool = False) -> Select:
    """Entries with what they name, in the one query of a page (no query per entry): the actor (an
    outer join: None once the account is gone), the file's name now, and, `with_study`, the study."""
    columns: list[Any] = [*ENTRY_COLUMNS, *_ACTOR_COLUMNS, SampleFile.filename]
    if with_study:
        columns += [
            Study.id.label("study_id"),
            Study.code.label("study_code"),
            Study.title.label("study_title"),
        ]
    query = (
        select(*columns)
        .outerjoin(User, User.id == StudyActivity.actor_id)
        .outerjoin(SampleFile, SampleFile.id == StudyActivity.sample_file_id)
    )
    if with_study:
        query = query.join(Study, Study.id == StudyActivity.study_id)
    return query


def activity_entries(rows: Iterable[Row]) -> list[ActivityEntry]:
    """activity_query's rows as entries."""
    return [
        ActivityEntry(
            row,
            _actor_of(row),
            row.filename,
            (row.study_id, row.study_code, row.study_title) if "study_id" in row._fields else None,
        )
        for row in rows
    ]


def _actor_of(row: Row) -> Actor | None:
    if row.actor_user_id is None:
        return None
    return Actor(row.actor_user_id, row.actor_email, row.actor_full_name)


async def list_activity(
    session: AsyncSession, *, study: Study, page: PageParams, sample: Sample | None = None
) -> tuple[list[ActivityEntry], int, bool]:
    """Newest first, the study's or one sample's (sample_entries)."""
    scope = StudyActivity.study_id == study.id if sample is None else sample_entries(study, sample)
    total, total_is_exact = await count_up_to(session, select(StudyActivity).where(scope))
    rows = await session.execute(
        activity_query()
        .where(scope)
        .order_by(*ACTIVITY_NEWEST_FIRST)
        .offset(page.offset)
        .limit(page.page_size)
    )
    return activity_entries(rows), total, total_is_exact


def sample_entries(study: Study, sample: Sample) -> ColumnElement[bool]:
    """A sample's own log: its entries (an index read of (study_id, sample_pk, at, id)) and the import
    entries of the file that created it and of the last file whose import changed it (imports are
    logged once per file, not per sample: an index read of (study_id, sample_file_id)). Only the last
    updating file is kept on the sample, so an earlier one's import is in the study's log only. The
    two are a union of ids, not an OR: with an OR, SQLite reads the study's whole log by
    (study_id, at, id) instead."""
    own = StudyActivity.sample_pk == sample.id
    files = list(dict.fromkeys(f for f in (sample.source_file_id, sample.updated_by_file_id) if f))
    if not files:
        return (StudyActivity.study_id == study.id) & own
    imports = StudyActivity.sample_file_id.in_(files) & (
        StudyActivity.action == ActivityAction.SAMPLE_FILE_IMPORTED
    )
    ids = union_all(
        select(StudyActivity.id).where(StudyActivity.study_id == study.id, own),
        select(StudyActivity.id).where(StudyActivity.study_id == study.id, imports),
    )
    return StudyActivity.id.in_(ids)
