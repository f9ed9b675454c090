"""Business rules of the study module: studies, members, the sample schema, samples, the activity log."""

import functools
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Integer,
    Select,
    and_,
    bindparam,
    delete,
    exists,
    func,
    literal,
    or_,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased, defer

from src.auth.constants import Role
from src.auth.jwt import AccessClaims
from src.auth.models import User
from src.auth.service import CALLER_QUERY, Authenticated, read_caller
from src.constants import LockNamespace
from src.database import (
    LockBusy,
    NamedLock,
    capped_count,
    capped_total,
    count_up_to,
    escape_like,
    named_lock,
    utcnow,
)
from src.exceptions import AppError, PreconditionFailed
from src.schemas import PageParams
from src.study import sample_schema
from src.study.activity import record_activity
from src.study.constants import (
    ALLOWED_TRANSITIONS,
    ActivityAction,
    StudyRole,
    StudySort,
    StudyStatus,
)
from src.study.exceptions import (
    AlreadyAMember,
    IncompatibleSampleFields,
    InvalidStatusTransition,
    LastOwner,
    StudyBusy,
    StudyCodeTaken,
    StudyNotDeletable,
    StudyNotFound,
)
from src.study.models import (
    Study,
    StudyMember,
)
from src.study.schemas import (
    SampleFieldDefinition,
    StudyCreate,
    StudyUpdate,
)
from src.study.utils import (
    changed_values,
    normalize_code,
)
from src.study.versions import check_version, write_versioned


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


# Access: the study and the caller's membership in one query.


# Built once, values bound per request: every study-scoped request runs it, and building the
# statement and its cache key cost more CPU than running it.
_CALLER_MEMBERSHIP = and_(StudyMember.study_id == Study.id, StudyMember.user_id == bindparam("user_id"))
_STUDY_WITH_ROLE_QUERY = (
    select(Study, StudyMember.role)
    .outerjoin(StudyMember, _CALLER_MEMBERSHIP)
    .where(Study.id == bindparam("study_id"))
)


# The caller (session and user) and the study with the caller's role in it, in one round trip: the
# first statement of nearly every study-scoped request. The study and the role are NULL when the
# study does not exist or the caller is not a member; the caller's row is there if their session is.
_CALLER_WITH_STUDY_QUERY = (
    CALLER_QUERY.add_columns(Study, StudyMember.role)
    .outerjoin(Study, Study.id == bindparam("study_id"))
    .outerjoin(StudyMember, and_(StudyMember.study_id == Study.id, StudyMember.user_id == User.id))
)


async def read_caller_and_study_access(
    session: AsyncSession, *, claims: AccessClaims, study_id: uuid.UUID
) -> tuple[Authenticated, StudyAccess | None]:
    """The caller behind the claims (SessionRevoked as `read_caller`) and their access to the study
    (None: it does not exist or they may not see it), read together."""
    caller, row = await read_caller(
        session, claims=claims, query=_CALLER_WITH_STUDY_QUERY, values={"study_id": study_id}
    )
    study, role = row[2], row[3]
    access = None if study is None else study_access_as(study=study, user=caller.user, role=role)
    return caller, access


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
    check_version(study, expected_version)
    requested = data.model_dump(exclude_unset=True)
    if "code" in requested:
        requested["code_normalized"] = normalize_code(requested["code"])
    before = {key: getattr(study, key) for key in requested}
    old, new = changed_values(before, requested)
    if not new:
        return study
    if "code" in new and await _code_taken(session, new["code"], other_than=study.id):
        raise StudyCodeTaken
    await write_versioned(session, study, expected_version=expected_version, changes=new, while_writable=True)
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
    check_version(study, expected_version)
    allowed = ALLOWED_TRANSITIONS[study.status]
    if status not in allowed:
        options = ", ".join(sorted(allowed))
        raise InvalidStatusTransition(f"A {study.status} study can move to: {options}; not to {status}.")
    old_status = study.status
    async with holding_study(session, study.id, for_import=False):
        await write_versioned(session, study, expected_version=expected_version, changes={"status": status})
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
    check_version(study, expected_version)
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
    check_version(study, expected_version)
    old_fields, new_fields = study.sample_fields, _stored_fields(fields)
    if study.sample_count:
        changes = sample_schema.incompatible_schema_changes(old_fields, new_fields)
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
        await write_versioned(
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
