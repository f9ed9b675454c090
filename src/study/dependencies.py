"""Which study (and sample, member) the caller means, and may they read, edit or own it.

Every study-scoped route of every module goes through one of these: a non-member gets 404 (the
study's existence is not revealed), a member without the role 403, an admin acts as owner.
"""

import uuid
from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, Request

from src.auth.constants import Role
from src.auth.dependencies import AccessClaimsOf, caller_read_in, remember_caller
from src.auth.models import User
from src.database import DbSession
from src.dependencies import VerifiedUser
from src.study import samples, service
from src.study.constants import FIELD_FILTER_PREFIX, ROLE_RANK, WRITABLE_STATUSES, StudyRole
from src.study.exceptions import (
    MemberNotFound,
    SampleNotFound,
    StudyCreationForbidden,
    StudyNotFound,
    StudyReadOnly,
    StudyRoleRequired,
)
from src.study.models import Sample
from src.study.service import Member, StudyAccess


async def get_study_creator(user: VerifiedUser) -> User:
    if user.role == Role.VIEWER:
        raise StudyCreationForbidden
    return user


StudyCreator = Annotated[User, Depends(get_study_creator)]


async def valid_study_for_member(
    study_id: uuid.UUID, request: Request, claims: AccessClaimsOf, db: DbSession
) -> StudyAccess:
    """The study, if the caller may see it. The caller's session and user are read in the same
    statement as the study and their membership (one round trip), unless a dependency of this
    request read the caller already."""
    caller = caller_read_in(request)
    if caller is None:
        caller, access = await service.read_caller_and_study_access(db, claims=claims, study_id=study_id)
        remember_caller(request, caller)
    else:
        access = await service.get_study_access(db, study_id=study_id, user=caller.user)
    if access is None:
        raise StudyNotFound
    return access


def _requiring(role: StudyRole) -> Callable[..., Awaitable[StudyAccess]]:
    """A dependency: the study, if the caller's role in it is at least `role` (else 403)."""

    async def valid_study_for_role(
        access: Annotated[StudyAccess, Depends(valid_study_for_member)],
    ) -> StudyAccess:
        if ROLE_RANK[access.role] < ROLE_RANK[role]:
            raise StudyRoleRequired
        return access

    return valid_study_for_role


# Reading needs the least role, which every member has: a reader's dependency is the membership
# itself, one level less on every read.
valid_study_for_reader = valid_study_for_member
valid_study_for_editor = _requiring(StudyRole.EDITOR)
valid_study_for_owner = _requiring(StudyRole.OWNER)
ReadableStudy = Annotated[StudyAccess, Depends(valid_study_for_reader)]
EditableStudy = Annotated[StudyAccess, Depends(valid_study_for_editor)]
OwnedStudy = Annotated[StudyAccess, Depends(valid_study_for_owner)]


async def valid_study_for_writing(access: EditableStudy) -> StudyAccess:
    """An editor's study whose data may change now: draft or active (locked and archived are frozen)."""
    if access.study.status not in WRITABLE_STATUSES:
        raise StudyReadOnly
    return access


WritableStudy = Annotated[StudyAccess, Depends(valid_study_for_writing)]


async def _sample_of(access: StudyAccess, sample_pk: uuid.UUID, db: DbSession) -> Sample:
    sample = await samples.get_sample(db, study=access.study, sample_pk=sample_pk)
    if sample is None:
        raise SampleNotFound
    return sample


async def valid_sample_for_reader(sample_pk: uuid.UUID, access: ReadableStudy, db: DbSession) -> Sample:
    return await _sample_of(access, sample_pk, db)


async def valid_sample_for_writing(sample_pk: uuid.UUID, access: WritableStudy, db: DbSession) -> Sample:
    return await _sample_of(access, sample_pk, db)


ReadableSample = Annotated[Sample, Depends(valid_sample_for_reader)]
WritableSample = Annotated[Sample, Depends(valid_sample_for_writing)]


async def _member_of(access: StudyAccess, user_id: uuid.UUID, db: DbSession) -> Member:
    member = await service.get_member(db, study=access.study, user_id=user_id)
    if member is None:
        raise MemberNotFound
    return member


async def valid_member_for_reader(user_id: uuid.UUID, access: ReadableStudy, db: DbSession) -> Member:
    return await _member_of(access, user_id, db)


async def valid_member_for_owner(user_id: uuid.UUID, access: OwnedStudy, db: DbSession) -> Member:
    return await _member_of(access, user_id, db)


ReadableMember = Annotated[Member, Depends(valid_member_for_reader)]
StudyMemberOf = Annotated[Member, Depends(valid_member_for_owner)]


async def sample_fields_compiled_off_the_loop(request: Request) -> None:
    """For a route whose body holds sample fields (the body itself, or its `sample_fields`): their
    patterns are compiled in a worker thread before the body's schema checks them on the loop."""
    try:
        body = await request.json()  # read once: the route's body parameter gets the same parsed JSON
    except ValueError:
        return  # not JSON: the route answers that itself
    await samples.compile_patterns_off_the_loop(body.get("sample_fields") if isinstance(body, dict) else body)


# After the caller's dependency in a route's signature: only a caller allowed to write pays for it.
FieldsPrecompiled = Annotated[None, Depends(sample_fields_compiled_off_the_loop)]


async def field_filters(request: Request) -> list[tuple[str, str]]:
    """The `field.<name>=<value>` query parameters, as (name, value) in the order given."""
    return [
        (key.removeprefix(FIELD_FILTER_PREFIX), value)
        for key, value in request.query_params.multi_items()
        if key.startswith(FIELD_FILTER_PREFIX)
    ]


FieldFilters = Annotated[list[tuple[str, str]], Depends(field_filters)]
