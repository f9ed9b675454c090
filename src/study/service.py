"""Business rules of the study module: studies, members, the sample schema, samples, the activity log."""

import functools
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

import anyio
from sqlalchemy import (
    ColumnElement,
    Integer,
    Row,
    Select,
    and_,
    bindparam,
    delete,
    exists,
    func,
    literal,
    or_,
    select,
    type_coerce,
    update,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased, defer

from src.auth.constants import Role
from src.auth.models import User
from src.constants import LockNamespace
from src.database import (
    Base,
    LockBusy,
    NamedLock,
    capped_count,
    capped_total,
    count_up_to,
    escape_like,
    insert_for,
    named_lock,
    utcnow,
)
from src.exceptions import AppError, PreconditionFailed, is_lock_wait_failure
from src.sampleFileUpload.models import SampleFile
from src.schemas import PageParams
from src.study import sample_validation
from src.study.constants import (
    ALLOWED_TRANSITIONS,
    FIELD_FILTER_PREFIX,
    MAX_FIELD_FILTERS,
    SAMPLE_FILE_ID_DETAIL,
    WRITABLE_STATUSES,
    ActivityAction,
    SampleSort,
    SampleStatus,
    StudyRole,
    StudySort,
    StudyStatus,
)
from src.study.exceptions import (
    AlreadyAMember,
    IncompatibleSampleFields,
    InvalidFieldFilter,
    InvalidSampleValues,
    InvalidStatusTransition,
    LastOwner,
    SampleIdTaken,
    SampleNotFound,
    StudyBusy,
    StudyCodeTaken,
    StudyNotDeletable,
    StudyNotFound,
    StudyReadOnly,
)
from src.study.models import (
    Sample,
    Study,
    StudyActivity,
    StudyDailySampleCount,
    StudyFieldValueCount,
    StudyMember,
    StudySampleCount,
)
from src.study.schemas import (
    SampleCreate,
    SampleFieldDefinition,
    SampleUpdate,
    StudyCreate,
    StudyUpdate,
)
from src.study.utils import (
    ValuesChange,
    bounded_details,
    changed_values,
    choice_field_names,
    field_value_deltas,
    normalize_code,
)


@dataclass(frozen=True, slots=True)
class StudyAccess:
    """A study as one caller sees it: the study, the caller and their effective role in it."""

    study: Study
    user: User
    role: StudyRole


@dataclass(frozen=True, slots=True)
class ListedStudy:
    """A study in a list: loaded without its sample fields, which are only counted."""

    study: Study
    role: StudyRole
    sample_field_count: int


@dataclass(frozen=True, slots=True)
class Member:
    user: User
    role: StudyRole
    added_at: datetime


@dataclass(frozen=True, slots=True)
class ActivityEntry:
    activity: StudyActivity
    actor: User | None
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


def activity_query(*, with_study: bool = False) -> Select:
    """Entries with what they name, in the one query of a page (no query per entry): the actor (an
    outer join: None once the account is gone), the file's name now, and, `with_study`, the study."""
    columns: list[Any] = [StudyActivity, User, SampleFile.filename]
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
            row.StudyActivity,
            row.User,
            row.filename,
            (row.study_id, row.study_code, row.study_title) if "study_id" in row._fields else None,
        )
        for row in rows
    ]


async def list_activity(
    session: AsyncSession, *, study: Study, page: PageParams, sample: Sample | None = None
) -> tuple[list[ActivityEntry], int, bool]:
    """Newest first, the study's or one sample's (an index read of (study_id, sample_pk, at, id))."""
    scope = [StudyActivity.study_id == study.id]
    if sample is not None:
        scope.append(StudyActivity.sample_pk == sample.id)
    total, total_is_exact = await count_up_to(session, select(StudyActivity).where(*scope))
    rows = await session.execute(
        activity_query()
        .where(*scope)
        .order_by(*ACTIVITY_NEWEST_FIRST)
        .offset(page.offset)
        .limit(page.page_size)
    )
    return activity_entries(rows), total, total_is_exact


# Versions: every change increments one; a caller who names the version they read (If-Match)
# changes the row only if it is still at that version, checked inside the UPDATE itself so that
# of two concurrent writers with the same version exactly one wins.


def _check_version(row: Study | Sample, expected_version: int | None) -> None:
    if expected_version is not None and expected_version != row.version:
        raise PreconditionFailed


async def _write_versioned(
    session: AsyncSession,
    row: Study | Sample,
    *,
    expected_version: int | None,
    changes: Mapping[str, Any],
    only_if: tuple[ColumnElement[bool], ...] = (),
    while_writable: bool = False,
) -> None:
    """Applies `changes` and the next version to the row, refreshing the loaded object.

    `only_if` adds conditions the row must still meet when it is written; if it does not, nothing
    is written and the caller gets 412 as for a stale version. `while_writable` (a study's data)
    requires the study to be draft or active at the write itself, not only when it was read: a
    status change committed meanwhile makes it 409 STUDY_READ_ONLY.
    """
    _check_version(row, expected_version)
    model, row_id = type(row), row.id
    condition = [model.id == row_id, *only_if]
    if while_writable:
        condition.append(_study_is_writable())
    if expected_version is not None:
        condition.append(model.version == expected_version)
    statement = (
        update(model)
        .where(*condition)
        .values(**changes, version=model.version + 1, updated_at=utcnow())
        .returning(model)
        .execution_options(populate_existing=True, synchronize_session=False)
    )
    if (await session.execute(statement)).scalar_one_or_none() is None:
        await session.rollback()
        raise await _why_not_written(session, model, row_id, while_writable=while_writable)


def _study_is_writable() -> ColumnElement[bool]:
    return Study.status.in_(WRITABLE_STATUSES)


async def _why_not_written(
    session: AsyncSession, model: type[Study | Sample], row_id: uuid.UUID, *, while_writable: bool
) -> AppError:
    """After a versioned write matched no row (and its rollback): gone (404), frozen meanwhile (409)
    or changed (412)."""
    if model is Sample:
        gone = await session.scalar(select(Sample.id).where(Sample.id == row_id)) is None
        return SampleNotFound() if gone else PreconditionFailed()
    status = await session.scalar(select(Study.status).where(Study.id == row_id))
    if status is None:
        return StudyNotFound()
    if while_writable and status not in WRITABLE_STATUSES:
        return StudyReadOnly()
    return PreconditionFailed()


# Access: the study and the caller's membership in one query.


# Built once, values bound per request: every study-scoped request runs it, and building the
# statement and its cache key cost more CPU than running it.
_CALLER_MEMBERSHIP = and_(StudyMember.study_id == Study.id, StudyMember.user_id == bindparam("user_id"))
_STUDY_WITH_ROLE_QUERY = (
    select(Study, StudyMember.role)
    .outerjoin(StudyMember, _CALLER_MEMBERSHIP)
    .where(Study.id == bindparam("study_id"))
)


async def get_study_access(session: AsyncSession, *, study_id: uuid.UUID, user: User) -> StudyAccess | None:
    """The study with the caller's role in it; None when it does not exist or they may not see it."""
    row = (await session.execute(_STUDY_WITH_ROLE_QUERY, {"study_id": study_id, "user_id": user.id})).first()
    if row is None:
        return None
    study, role = row
    return study_access_as(study=study, user=user, role=role)


# Imports hold their study: while one runs, the study's fields, status and existence stay as they are.


def study_import_lock(study_id: uuid.UUID) -> NamedLock:
    return NamedLock.of(LockNamespace.STUDY_IMPORT, study_id.bytes)


@asynccontextmanager
async def holding_study(
    session: AsyncSession, study_id: uuid.UUID, *, for_import: bool
) -> AsyncIterator[None]:
    """An import holds its study alone, for the import's transaction: a second import into it waits
    (at most DATABASE_LOCK_TIMEOUT_SECONDS, then 409 STUDY_BUSY). A change of the study's sample
    fields, status or existence holds it shared: it waits for a running import as long, then 409
    STUDY_BUSY, instead of invalidating a minute of import at its end. Sample writes do not take it:
    they run beside an import (see add_to_sample_count for how the two never deadlock)."""
    try:
        async with named_lock(session, study_import_lock(study_id), shared=not for_import):
            yield
    except LockBusy:
        raise StudyBusy from None


def study_access_as(*, study: Study, user: User, role: StudyRole | None) -> StudyAccess | None:
    """The caller's access from their membership role (None: not a member); admins act as owner."""
    if user.role == Role.ADMIN:
        role = StudyRole.OWNER  # administrators act as owner everywhere
    return StudyAccess(study=study, user=user, role=role) if role is not None else None


# Studies.


def _stored_fields(fields: list[SampleFieldDefinition]) -> list[dict[str, Any]]:
    return [field.model_dump(mode="json") for field in fields]


async def _code_taken(session: AsyncSession, code: str, *, other_than: uuid.UUID | None = None) -> bool:
    query = select(Study.id).where(Study.code_normalized == normalize_code(code))
    if other_than is not None:
        query = query.where(Study.id != other_than)
    return await session.scalar(query) is not None


async def _commit_unless_code_taken(session: AsyncSession, *, code: str) -> None:
    try:
        await session.commit()
    except IntegrityError:
        await session.rollback()
        if await _code_taken(session, code):
            raise StudyCodeTaken from None  # a concurrent request took the code first
        raise


async def create_study(session: AsyncSession, *, owner: User, data: StudyCreate) -> StudyAccess:
    """A draft study; its creator becomes its owner."""
    if await _code_taken(session, data.code):
        raise StudyCodeTaken
    study = Study(
        id=uuid.uuid4(),
        code=data.code,
        code_normalized=normalize_code(data.code),
        title=data.title,
        description=data.description,
        status=StudyStatus.DRAFT,
        sample_fields=_stored_fields(data.sample_fields),
        sample_count=0,
        created_by=owner.id,
        version=1,
    )
    session.add(study)
    session.add(StudyMember(study_id=study.id, user_id=owner.id, role=StudyRole.OWNER))
    record_activity(
        session,
        study_id=study.id,
        actor=owner,
        action=ActivityAction.STUDY_CREATED,
        details={"code": study.code, "title": study.title, "sample_fields": study.sample_fields},
    )
    await _commit_unless_code_taken(session, code=data.code)
    return StudyAccess(study=study, user=owner, role=StudyRole.OWNER)


def _visible_studies(*, admin: bool) -> Select:
    """(study, the caller's role) for every study the caller (bound as `user_id`) may see: their own,
    or all for admins."""
    if admin:
        return select(Study, literal(StudyRole.OWNER.value).label("role"))
    member = and_(StudyMember.study_id == Study.id, StudyMember.user_id == bindparam("user_id"))
    return select(Study, StudyMember.role).join(StudyMember, member)


def _without_sample_fields(query: Select) -> Select:
    """The studies with the number of their sample fields instead of the fields (up to 64 KiB each)."""
    return query.add_columns(func.json_array_length(Study.sample_fields)).options(
        defer(Study.sample_fields, raiseload=True)
    )


_STUDY_SORT_COLUMNS = {
    StudySort.CREATED_AT: Study.created_at.asc(),
    StudySort.NEWEST_FIRST: Study.created_at.desc(),
    StudySort.UPDATED_AT: Study.updated_at.asc(),
    StudySort.RECENTLY_UPDATED: Study.updated_at.desc(),
    StudySort.CODE: Study.code_normalized.asc(),
    StudySort.CODE_DESC: Study.code_normalized.desc(),
    StudySort.TITLE: Study.title.asc(),
    StudySort.TITLE_DESC: Study.title.desc(),
}


@dataclass(frozen=True)
class _StudiesShape:
    """What decides a studies list's statement; the values (caller, status, search text, page) are
    bound per request."""

    admin: bool
    by_status: bool
    include_archived: bool
    searched: bool


@functools.cache
def _studies_query(shape: _StudiesShape) -> Select:
    """The visible studies of one shape, with the status bound as `status` and the search pattern
    as `pattern`. Built once per shape (at most 16): building it and its cache key per request cost
    more CPU than running it."""
    query = _visible_studies(admin=shape.admin)
    if shape.by_status:
        query = query.where(Study.status == bindparam("status"))
    elif not shape.include_archived:
        query = query.where(Study.status != StudyStatus.ARCHIVED)
    if shape.searched:
        pattern = bindparam("pattern")
        query = query.where(
            or_(Study.code.ilike(pattern, escape="\\"), Study.title.ilike(pattern, escape="\\"))
        )
    return query


@functools.cache
def _studies_count_query(shape: _StudiesShape) -> Select:
    return capped_count(_studies_query(shape))


@functools.cache
def _studies_page_query(shape: _StudiesShape, sort: StudySort) -> Select:
    """A page of `_studies_query`, bound as `offset` and `limit`, each row carrying the capped count
    as its last column: the count and the page in one round trip (an uncorrelated scalar subquery,
    which PostgreSQL and SQLite run once per statement)."""
    page = (
        _studies_query(shape)
        .order_by(_STUDY_SORT_COLUMNS[sort], Study.id)
        .offset(bindparam("offset", type_=Integer))
        .limit(bindparam("limit", type_=Integer))
    )
    return _without_sample_fields(page).add_columns(_studies_count_query(shape).scalar_subquery())


async def list_studies(
    session: AsyncSession,
    *,
    user: User,
    page: PageParams,
    status: StudyStatus | None,
    include_archived: bool,
    search: str | None,
    sort: StudySort,
) -> tuple[list[ListedStudy], int, bool]:
    """Archived studies only when asked for (by status or include_archived)."""
    admin = user.role == Role.ADMIN
    shape = _StudiesShape(
        admin=admin, by_status=status is not None, include_archived=include_archived, searched=bool(search)
    )
    values: dict[str, Any] = {} if admin else {"user_id": user.id}
    if status is not None:
        values["status"] = status
    if search:
        values["pattern"] = f"%{escape_like(search)}%"
    page_values = {**values, "offset": page.offset, "limit": page.page_size}
    rows = (await session.execute(_studies_page_query(shape, sort), page_values)).all()
    if rows:
        counted = rows[0][-1]
    elif page.offset == 0:
        counted = 0
    else:  # a page past the end has no row to carry the count
        counted = await session.scalar(_studies_count_query(shape), values) or 0
    total, total_is_exact = capped_total(counted)
    items = [ListedStudy(study, StudyRole(role), field_count) for study, role, field_count, _counted in rows]
    return items, total, total_is_exact


async def update_study(
    session: AsyncSession, *, access: StudyAccess, data: StudyUpdate, expected_version: int | None
) -> Study:
    study = access.study
    _check_version(study, expected_version)
    requested = data.model_dump(exclude_unset=True)
    if "code" in requested:
        requested["code_normalized"] = normalize_code(requested["code"])
    before = {key: getattr(study, key) for key in requested}
    old, new = changed_values(before, requested)
    if not new:
        return study
    if "code" in new and await _code_taken(session, new["code"], other_than=study.id):
        raise StudyCodeTaken
    await _write_versioned(
        session, study, expected_version=expected_version, changes=new, while_writable=True
    )
    old.pop("code_normalized", None)
    new.pop("code_normalized", None)
    record_activity(
        session,
        study_id=study.id,
        actor=access.user,
        action=ActivityAction.STUDY_UPDATED,
        details={"old": old, "new": new},
    )
    await _commit_unless_code_taken(session, code=study.code)
    return study


async def change_status(
    session: AsyncSession, *, access: StudyAccess, status: StudyStatus, expected_version: int | None
) -> Study:
    study = access.study
    _check_version(study, expected_version)
    allowed = ALLOWED_TRANSITIONS[study.status]
    if status not in allowed:
        options = ", ".join(sorted(allowed))
        raise InvalidStatusTransition(f"A {study.status} study can move to: {options}; not to {status}.")
    old_status = study.status
    async with holding_study(session, study.id, for_import=False):
        await _write_versioned(session, study, expected_version=expected_version, changes={"status": status})
        record_activity(
            session,
            study_id=study.id,
            actor=access.user,
            action=ActivityAction.STATUS_CHANGED,
            details={"old": old_status, "new": status},
        )
        await session.commit()
    return study


async def delete_study(session: AsyncSession, *, study: Study, expected_version: int | None) -> None:
    """Only a draft without samples; checked in the DELETE itself, so a sample added meanwhile wins."""
    _check_version(study, expected_version)
    if study.status != StudyStatus.DRAFT or study.sample_count:
        raise StudyNotDeletable
    study_id = study.id
    condition = [Study.id == study_id, Study.status == StudyStatus.DRAFT, Study.sample_count == 0]
    if expected_version is not None:
        condition.append(Study.version == expected_version)
    async with holding_study(session, study_id, for_import=False):
        deleted = await session.execute(delete(Study).where(*condition))
        if deleted.rowcount != 1:
            await session.rollback()
            raise await _why_study_not_deleted(session, study_id)
        await session.commit()


async def _why_study_not_deleted(session: AsyncSession, study_id: uuid.UUID) -> AppError:
    """A sample added or a status changed meanwhile is 409 as if it had been there first."""
    row = (
        await session.execute(select(Study.status, Study.sample_count).where(Study.id == study_id))
    ).first()
    if row is None:
        return StudyNotFound()
    if row.status != StudyStatus.DRAFT or row.sample_count:
        return StudyNotDeletable()
    return PreconditionFailed()


async def replace_sample_fields(
    session: AsyncSession,
    *,
    access: StudyAccess,
    fields: list[SampleFieldDefinition],
    expected_version: int | None,
) -> Study:
    """Anything goes while the study has no samples; after that only changes they all still satisfy."""
    study = access.study
    _check_version(study, expected_version)
    old_fields, new_fields = study.sample_fields, _stored_fields(fields)
    if study.sample_count:
        changes = sample_validation.incompatible_schema_changes(old_fields, new_fields)
        if changes:
            raise IncompatibleSampleFields(
                errors=[{"loc": ["body"], "msg": change, "code": "incompatible_change"} for change in changes]
            )
    if new_fields == old_fields:
        return study
    # Unchecked because the study was empty: it must still be empty when written (a sample added
    # meanwhile holds the row until its commit, then this finds sample_count > 0 and writes nothing).
    still_empty = () if study.sample_count else (Study.sample_count == 0,)
    async with holding_study(session, study.id, for_import=False):
        await _write_versioned(
            session,
            study,
            expected_version=expected_version,
            changes={"sample_fields": new_fields},
            only_if=still_empty,
            while_writable=True,
        )
        record_activity(
            session,
            study_id=study.id,
            actor=access.user,
            action=ActivityAction.SAMPLE_FIELDS_CHANGED,
            details={"old": old_fields, "new": new_fields},
        )
        await session.commit()
    return study


# Members.


def _members_of(study: Study) -> Select:
    return (
        select(StudyMember, User)
        .join(User, User.id == StudyMember.user_id)
        .where(StudyMember.study_id == study.id)
    )


async def list_members(
    session: AsyncSession, *, study: Study, page: PageParams
) -> tuple[list[Member], int, bool]:
    query = _members_of(study)
    total, total_is_exact = await count_up_to(session, query)
    rows = await session.execute(
        query.order_by(StudyMember.created_at, User.email).offset(page.offset).limit(page.page_size)
    )
    return (
        [Member(user=user, role=member.role, added_at=member.created_at) for member, user in rows],
        total,
        total_is_exact,
    )


async def get_member(session: AsyncSession, *, study: Study, user_id: uuid.UUID) -> Member | None:
    row = (await session.execute(_members_of(study).where(StudyMember.user_id == user_id))).first()
    if row is None:
        return None
    member, user = row
    return Member(user=user, role=member.role, added_at=member.created_at)


def _member_details(user: User, **roles: StudyRole) -> dict[str, Any]:
    return {"user_id": str(user.id), "email": user.email, **roles}


async def has_member_with_email(session: AsyncSession, *, study_id: uuid.UUID, email: str) -> bool:
    """Whether a member of the study has the (normalized) address: one statement, whatever the answer."""
    member = exists().where(
        StudyMember.study_id == study_id, StudyMember.user_id == User.id, User.email == email
    )
    return bool(await session.scalar(select(member)))


async def admit_member(session: AsyncSession, *, study_id: uuid.UUID, user: User, role: StudyRole) -> None:
    """Adds the membership to the caller's transaction (an accepted invitation: the only way in);
    AlreadyAMember if the user is one. The caller records the activity and commits."""
    if await session.scalar(
        select(StudyMember.user_id).where(StudyMember.study_id == study_id, StudyMember.user_id == user.id)
    ):
        raise AlreadyAMember
    session.add(StudyMember(study_id=study_id, user_id=user.id, role=role, created_at=utcnow()))


def _another_owner(study_id: uuid.UUID, user_id: uuid.UUID) -> ColumnElement[bool]:
    other = aliased(StudyMember)
    return exists().where(other.study_id == study_id, other.role == StudyRole.OWNER, other.user_id != user_id)


async def _lock_owners(session: AsyncSession, study_id: uuid.UUID) -> None:
    """On PostgreSQL, two owners demoting each other at once serialize here (SQLite serializes writers)."""
    await session.execute(
        select(StudyMember.user_id)
        .where(StudyMember.study_id == study_id, StudyMember.role == StudyRole.OWNER)
        .with_for_update()
    )


async def change_member_role(
    session: AsyncSession, *, access: StudyAccess, member: Member, role: StudyRole
) -> Member:
    study_id = access.study.id
    if role == member.role:
        return member
    this_member = and_(StudyMember.study_id == study_id, StudyMember.user_id == member.user.id)
    statement = update(StudyMember).where(this_member)
    if member.role == StudyRole.OWNER:
        await _lock_owners(session, study_id)
        statement = statement.where(_another_owner(study_id, member.user.id))
    result = await session.execute(statement.values(role=role))
    if result.rowcount != 1:
        await session.rollback()
        raise LastOwner
    record_activity(
        session,
        study_id=study_id,
        actor=access.user,
        action=ActivityAction.MEMBER_CHANGED,
        details=_member_details(member.user, old_role=member.role, new_role=role),
    )
    await session.commit()
    return Member(user=member.user, role=role, added_at=member.added_at)


async def remove_member(session: AsyncSession, *, access: StudyAccess, member: Member) -> None:
    study_id = access.study.id
    statement = delete(StudyMember).where(
        StudyMember.study_id == study_id, StudyMember.user_id == member.user.id
    )
    if member.role == StudyRole.OWNER:
        await _lock_owners(session, study_id)
        statement = statement.where(_another_owner(study_id, member.user.id))
    result = await session.execute(statement)
    if result.rowcount != 1:
        await session.rollback()
        raise LastOwner
    record_activity(
        session,
        study_id=study_id,
        actor=access.user,
        action=ActivityAction.MEMBER_REMOVED,
        details=_member_details(member.user, role=member.role),
    )
    await session.commit()


# Samples.


async def compile_patterns_off_the_loop(fields: object) -> None:
    """Compiles the text patterns of a submitted (still unchecked) schema in a worker thread: each
    may take milliseconds, and the schema's check on the event loop then finds them compiled."""
    await anyio.to_thread.run_sync(sample_validation.compile_schema_patterns, fields)


def validator_of(study: Study) -> sample_validation.SampleValidator:
    """The study's compiled schema, compiled once per study version (every schema change is one)."""
    return sample_validation.cached_validator((study.id, study.version), study.sample_fields)


def _checked_values(study: Study, values: Mapping[str, Any], *, partial: bool) -> dict[str, Any]:
    normalised, issues = validator_of(study).validate(values, partial=partial)
    if issues:
        raise InvalidSampleValues(
            errors=[
                {"loc": ["body", "values", issue.field], "msg": issue.message, "code": issue.code}
                for issue in issues
            ]
        )
    return normalised


async def _sample_id_taken(
    session: AsyncSession, *, study_id: uuid.UUID, normalized: str, other_than: uuid.UUID | None = None
) -> bool:
    query = select(Sample.id).where(Sample.study_id == study_id, Sample.sample_id_normalized == normalized)
    if other_than is not None:
        query = query.where(Sample.id != other_than)
    return await session.scalar(query) is not None


@asynccontextmanager
async def _sample_write(session: AsyncSession) -> AsyncIterator[None]:
    """Around a sample write and its commit: a sample_id taken by a concurrent request is 409
    SAMPLE_ID_TAKEN (the only unique constraint a sample write can break is (study_id,
    sample_id_normalized)); a sample, or a new sample's key, held by an import or another writer
    past the lock timeout is 409 STUDY_BUSY. Either way nothing was written."""
    try:
        yield
    except IntegrityError:
        await session.rollback()
        raise SampleIdTaken from None
    except DBAPIError as error:
        if not is_lock_wait_failure(error):
            raise
        await session.rollback()
        raise StudyBusy from None


async def add_to_sample_count(
    session: AsyncSession, *, study_id: uuid.UUID, delta: int
) -> list[dict[str, Any]]:
    """Keeps the study's maintained sample count; call it in the transaction that adds or removes samples,
    after writing them. Lock order, the same for every writer: the sample rows first, then the
    study's row, then the counter rows in key order. An import writes its samples for minutes and
    takes the study's row only at its end; a writer that took the study's row and then waited for a
    sample the import holds would deadlock with it, so no writer does that.

    Returns the study's sample fields as they are now: the row stays locked until the commit, so a
    caller that validated against these fields knows no schema change can slip in between. The study
    must be draft or active at this moment, whatever it was when read: else the transaction is rolled
    back and StudyReadOnly (409) raised.
    """
    result = await session.execute(
        update(Study)
        .where(Study.id == study_id, _study_is_writable())
        .values(sample_count=Study.sample_count + delta)
        .returning(Study.sample_fields)
        .execution_options(synchronize_session=False)
    )
    fields = result.scalar_one_or_none()
    if fields is None:
        await session.rollback()
        raise StudyReadOnly
    return fields


async def add_to_status_counts(
    session: AsyncSession, *, study_id: uuid.UUID, deltas: Mapping[str, int]
) -> None:
    """Keeps the study's maintained per-status sample counts; call it once per change (a bulk import:
    once per batch) in the transaction that writes the samples, after the study row is locked."""
    await _add_to_counters(
        session,
        StudySampleCount,
        study_id,
        {(SampleStatus(status),): delta for status, delta in deltas.items()},
    )


async def add_to_created_counts(
    session: AsyncSession, *, study_id: uuid.UUID, deltas: Mapping[date, int]
) -> None:
    """Keeps the study's maintained samples-per-creation-day counts (UTC days), like the status counts."""
    await _add_to_counters(
        session, StudyDailySampleCount, study_id, {(day,): delta for day, delta in deltas.items()}
    )


async def add_to_field_value_counts(
    session: AsyncSession, *, study: Study, changes: Iterable[ValuesChange]
) -> None:
    """Keeps the study's maintained per-field counts (filled, per choice), like the status counts:
    `changes` are (old values, new values) of the samples written, None for a sample created or
    deleted; the study's fields must be the ones the values were checked against (the row is locked)."""
    await _add_to_counters(
        session, StudyFieldValueCount, study.id, field_value_deltas(study.sample_fields, changes)
    )


@dataclass(slots=True)
class CountChanges:
    """How a bulk write moves the study's maintained counts, gathered over the whole write and applied
    once at its end (apply_count_changes): an import then holds the study's row and its counter rows
    for its commit only, not for its minutes of writing samples, and sample edits run beside it."""

    samples: int = 0
    statuses: Counter[str] = field(default_factory=Counter)
    created: Counter[date] = field(default_factory=Counter)
    field_values: Counter[tuple[str, str]] = field(default_factory=Counter)

    def add_values_changes(self, study: Study, changes: Iterable[ValuesChange]) -> None:
        self.field_values.update(field_value_deltas(study.sample_fields, changes))


async def apply_count_changes(
    session: AsyncSession, *, study_id: uuid.UUID, changes: CountChanges
) -> list[dict[str, Any]]:
    """The gathered changes applied, the study's row first then its counters (add_to_sample_count
    says why that order); returns the study's sample fields as they are now, StudyReadOnly when the
    study is no longer draft or active."""
    fields = await add_to_sample_count(session, study_id=study_id, delta=changes.samples)
    await add_to_status_counts(session, study_id=study_id, deltas=changes.statuses)
    await add_to_created_counts(session, study_id=study_id, deltas=changes.created)
    await _add_to_counters(session, StudyFieldValueCount, study_id, changes.field_values)
    return fields


async def _add_to_counters(
    session: AsyncSession, model: type[Base], study_id: uuid.UUID, deltas: Mapping[tuple[Any, ...], int]
) -> None:
    """Adds each delta to its counter row (study_id, *key) of `model`'s table, creating the rows missing:
    one multi-row upsert, so concurrent writers of one study (sample edits only share-lock it) cannot
    both insert a row; the rows go in key order, so two writers lock them in the same order."""
    table = model.__table__
    keys = [column.name for column in table.primary_key.columns if column.name != "study_id"]
    rows = [
        {"study_id": study_id, **dict(zip(keys, key, strict=True)), "count": delta}
        for key, delta in sorted(deltas.items())
        if delta
    ]
    if not rows:
        return
    statement = insert_for(session, table)
    await session.execute(
        statement.values(rows).on_conflict_do_update(
            index_elements=["study_id", *keys], set_={"count": table.c["count"] + statement.excluded["count"]}
        )
    )


async def _lock_writable_study(session: AsyncSession, study: Study) -> None:
    """For a sample edit: the study row share-locked until the commit (PostgreSQL; SQLite serializes
    writers), still draft or active (else 409) and with the fields the values were checked against."""
    current = (
        await session.execute(
            select(Study.status, Study.sample_fields).where(Study.id == study.id).with_for_update(read=True)
        )
    ).first()
    if current is None or current.status not in WRITABLE_STATUSES:
        await session.rollback()
        raise StudyReadOnly
    await _confirm_fields(session, study, current.sample_fields)


async def _confirm_fields(session: AsyncSession, study: Study, current_fields: list[dict[str, Any]]) -> None:
    """The values were validated against the fields loaded with the study; they must still be the fields."""
    if current_fields != study.sample_fields:
        await session.rollback()
        raise PreconditionFailed(
            "The study's sample fields changed while this was being saved; nothing was changed."
        )


async def create_sample(session: AsyncSession, *, access: StudyAccess, data: SampleCreate) -> Sample:
    study = access.study
    values = _checked_values(study, data.values, partial=False)
    normalized = sample_validation.normalize_sample_id(data.sample_id)
    if await _sample_id_taken(session, study_id=study.id, normalized=normalized):
        raise SampleIdTaken
    now = utcnow()
    sample = Sample(
        id=uuid.uuid4(),
        study_id=study.id,
        sample_id=data.sample_id,
        sample_id_normalized=normalized,
        status=data.status,
        values=values,
        created_by=access.user.id,
        created_at=now,
        updated_at=now,
        version=1,
    )
    async with _sample_write(session):
        session.add(sample)
        await session.flush()  # the new sample's key before the study's row (add_to_sample_count)
        await _confirm_fields(session, study, await add_to_sample_count(session, study_id=study.id, delta=1))
        await add_to_status_counts(session, study_id=study.id, deltas={data.status: 1})
        await add_to_created_counts(session, study_id=study.id, deltas={now.date(): 1})
        await add_to_field_value_counts(session, study=study, changes=[(None, values)])
        record_activity(
            session,
            study_id=study.id,
            actor=access.user,
            action=ActivityAction.SAMPLE_CREATED,
            sample_pk=sample.id,
            details={"sample_id": sample.sample_id, "status": sample.status, "values": values},
        )
        await session.commit()
    return sample


async def get_sample(session: AsyncSession, *, study: Study, sample_pk: uuid.UUID) -> Sample | None:
    return await session.scalar(select(Sample).where(Sample.id == sample_pk, Sample.study_id == study.id))


async def _locked_sample(session: AsyncSession, sample: Sample) -> Sample:
    """The sample as committed now, locked until the commit (PostgreSQL): a merge starts from it, so a
    concurrent edit of another key is kept, not reverted. 404 if it was deleted meanwhile."""
    current = await session.scalar(
        select(Sample)
        .where(Sample.id == sample.id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    if current is None:
        await session.rollback()
        raise SampleNotFound
    return current


def _merged_values(study: Study, sample: Sample, patch: Mapping[str, Any]) -> dict[str, Any]:
    """The stored values with the patch applied: given keys replace, null clears, the rest stay."""
    merged = {**sample.values, **_checked_values(study, patch, partial=True)}
    return {name: value for name, value in merged.items() if value is not None}


async def update_sample(
    session: AsyncSession,
    *,
    access: StudyAccess,
    sample: Sample,
    data: SampleUpdate,
    expected_version: int | None,
) -> Sample:
    async with _sample_write(session):
        sample = await _locked_sample(session, sample)  # the sample before the study (add_to_sample_count)
        await _lock_writable_study(session, access.study)
        _check_version(sample, expected_version)
        requested = data.model_dump(exclude_unset=True, exclude={"values"})
        if data.values is not None:
            requested["values"] = _merged_values(access.study, sample, data.values)
        if "sample_id" in requested:
            requested["sample_id_normalized"] = sample_validation.normalize_sample_id(requested["sample_id"])
            if await _sample_id_taken(
                session,
                study_id=sample.study_id,
                normalized=requested["sample_id_normalized"],
                other_than=sample.id,
            ):
                raise SampleIdTaken
        before = {key: getattr(sample, key) for key in requested}
        old, new = changed_values(before, requested)
        if not new:
            return sample
        await _write_versioned(session, sample, expected_version=expected_version, changes=new)
        if "status" in new:
            await add_to_status_counts(
                session, study_id=sample.study_id, deltas={old["status"]: -1, new["status"]: 1}
            )
        if "values" in new:
            await add_to_field_value_counts(
                session, study=access.study, changes=[(old["values"], new["values"])]
            )
        record_activity(
            session,
            study_id=sample.study_id,
            actor=access.user,
            action=ActivityAction.SAMPLE_UPDATED,
            sample_pk=sample.id,
            details={"sample_id": sample.sample_id, **_change_details(old, new)},
        )
        await session.commit()
    return sample


def _change_details(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """Old and new of what changed; for values, only the fields that changed."""
    old.pop("sample_id_normalized", None)
    new.pop("sample_id_normalized", None)
    if "values" in new:
        old["values"], new["values"] = changed_values(old["values"] or {}, new["values"])
    return {"old": old, "new": new}


async def delete_sample(
    session: AsyncSession, *, access: StudyAccess, sample: Sample, expected_version: int | None
) -> None:
    _check_version(sample, expected_version)
    sample_id = sample.id
    condition = [Sample.id == sample_id]
    if expected_version is not None:
        condition.append(Sample.version == expected_version)
    async with _sample_write(session):
        # What the row held when deleted, not when read: an edit committed in between is counted off
        # too. The sample before the study's row (add_to_sample_count).
        gone = (
            await session.execute(
                delete(Sample).where(*condition).returning(Sample.sample_id, Sample.status, Sample.values)
            )
        ).first()
        if gone is None:
            await session.rollback()
            raise await _why_not_written(session, Sample, sample_id, while_writable=False)
        await add_to_sample_count(session, study_id=sample.study_id, delta=-1)
        await add_to_status_counts(session, study_id=sample.study_id, deltas={gone.status: -1})
        await add_to_created_counts(session, study_id=sample.study_id, deltas={sample.created_at.date(): -1})
        await add_to_field_value_counts(session, study=access.study, changes=[(gone.values, None)])
        record_activity(
            session,
            study_id=sample.study_id,
            actor=access.user,
            action=ActivityAction.SAMPLE_DELETED,
            sample_pk=sample.id,
            details={"sample_id": gone.sample_id, "status": gone.status, "values": gone.values},
        )
        await session.commit()


_SAMPLE_SORT_COLUMNS = {
    SampleSort.SAMPLE_ID: Sample.sample_id_normalized.asc(),
    SampleSort.SAMPLE_ID_DESC: Sample.sample_id_normalized.desc(),
    SampleSort.STATUS: Sample.status.asc(),
    SampleSort.STATUS_DESC: Sample.status.desc(),
    SampleSort.CREATED_AT: Sample.created_at.asc(),
    SampleSort.NEWEST_FIRST: Sample.created_at.desc(),
    SampleSort.UPDATED_AT: Sample.updated_at.asc(),
    SampleSort.RECENTLY_UPDATED: Sample.updated_at.desc(),
}


def field_filter_values(*, study: Study, filters: list[tuple[str, str]]) -> dict[str, object]:
    """`field.<name>=<value>` filters as {field name: the stored JSON value it must equal}.
    Unknown names and bad values are 422."""
    if len(filters) > MAX_FIELD_FILTERS:
        raise InvalidFieldFilter(f"At most {MAX_FIELD_FILTERS} `field.<name>` filters.")
    validator = validator_of(study)
    wanted: dict[str, object] = {}
    errors: list[dict[str, Any]] = []
    for parameter, raw in filters:
        loc = ["query", f"{FIELD_FILTER_PREFIX}{parameter}"]
        try:
            value = validator.coerce_filter_value(parameter, raw)
        except ValueError as error:
            errors.append({"loc": loc, "msg": str(error), "code": "invalid_filter"})
            continue
        name = validator.field_named(parameter)
        # The same field twice is one condition; two different values of it could match nothing.
        if wanted.setdefault(name, value) != value:
            errors.append(
                {"loc": loc, "msg": f"{name} is filtered on with two values", "code": "invalid_filter"}
            )
    if errors:
        raise InvalidFieldFilter(errors=errors)
    return wanted


def _value_equals(session: AsyncSession, name: str, value: object) -> ColumnElement[bool]:
    """A field filter as a condition on `values`: JSONB containment on PostgreSQL (answered by the
    GIN index), json_extract on SQLite."""
    if session.get_bind().dialect.name == "postgresql":
        # type_coerce, not CAST: the column already is JSONB, and a bare `values @>` uses the GIN index.
        return type_coerce(Sample.values, JSONB).contains({name: value})
    # Field names are letters, digits and `_` (checked when the schema is set): safe in a JSON path.
    return func.json_extract(Sample.values, f"$.{name}") == value


def _is_one_choice(study: Study, wanted: Mapping[str, object]) -> bool:
    return len(wanted) == 1 and next(iter(wanted)) in choice_field_names(study.sample_fields)


# Built once: a filtered samples page asks it on every request.
_SAMPLES_WITH_CHOICE = select(StudyFieldValueCount.count).where(
    StudyFieldValueCount.study_id == bindparam("study_id"),
    StudyFieldValueCount.field == bindparam("field"),
    StudyFieldValueCount.value == bindparam("value"),
)


async def _samples_with_choice(
    session: AsyncSession, *, study_id: uuid.UUID, name: str, choice: object
) -> int:
    """The study's samples whose choice field `name` holds `choice`: its maintained counter, exact
    and one row (counting them reads every match, ~40,000 rows of the big study to stop at the cap)."""
    params = {"study_id": study_id, "field": name, "value": str(choice)}
    return await session.scalar(_SAMPLES_WITH_CHOICE, params) or 0


# What a samples page shows of each sample, in the order of its JSON (the router's SampleRead):
# read as plain rows, not ORM objects, since a page only serialises them (a tenth of its CPU went on
# building 50 objects nothing changes).
LISTED_SAMPLE_COLUMNS = (
    Sample.id,
    Sample.study_id,
    Sample.sample_id,
    Sample.status,
    Sample.values,
    Sample.source_file_id,
    Sample.created_by,
    Sample.created_at,
    Sample.updated_at,
    Sample.version,
)


async def list_samples(
    session: AsyncSession,
    *,
    study: Study,
    page: PageParams,
    status: SampleStatus | None,
    sample_id_prefix: str | None,
    field_filters: list[tuple[str, str]],
    sort: SampleSort,
) -> tuple[Sequence[Row[Any]], int, bool]:
    """A page of samples as rows of LISTED_SAMPLE_COLUMNS. Unfiltered, the total is the study's
    maintained count, and so is it filtered on one choice field alone (its maintained per-choice
    count); otherwise it is counted up to the cap."""
    wanted = field_filter_values(study=study, filters=field_filters)
    conditions = [_value_equals(session, name, value) for name, value in wanted.items()]
    if status is not None:
        conditions.append(Sample.status == status)
    if sample_id_prefix:
        prefix = escape_like(sample_validation.normalize_sample_id(sample_id_prefix))
        conditions.append(Sample.sample_id_normalized.like(f"{prefix}%", escape="\\"))
    query = select(*LISTED_SAMPLE_COLUMNS).where(Sample.study_id == study.id, *conditions)
    if not conditions:
        total, total_is_exact = study.sample_count, True
    elif len(conditions) == 1 and _is_one_choice(study, wanted):
        ((name, choice),) = wanted.items()
        total, total_is_exact = (
            await _samples_with_choice(session, study_id=study.id, name=name, choice=choice),
            True,
        )
    else:
        total, total_is_exact = await count_up_to(session, query)
    result = await session.execute(
        query.order_by(_SAMPLE_SORT_COLUMNS[sort], Sample.id).offset(page.offset).limit(page.page_size)
    )
    return result.all(), total, total_is_exact
