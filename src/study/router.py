"""Routes of the study module, under /api/v1/studies."""

from typing import Annotated

from fastapi import APIRouter, Body, Query, Response, status

from src.auth.exceptions import EmailNotVerified
from src.constants import API_PREFIX
from src.database import DbSession
from src.dependencies import CurrentUser, IdempotentCreate, IfMatch, Pagination, etag
from src.exceptions import IDEMPOTENCY_ERRORS, PreconditionFailed, problem_responses
from src.responses import json_response
from src.sampleFileUpload import service as sample_file_service
from src.sampleFileUpload.dependencies import FileStorage
from src.schemas import Page, SingleLineText, page_of
from src.study import activity, samples, service
from src.study.constants import SampleSort, SampleStatus, StudySort, StudyStatus
from src.study.dependencies import (
    FieldFilters,
    FieldsPrecompiled,
    OwnedStudy,
    ReadableMember,
    ReadableSample,
    ReadableStudy,
    StudyCreator,
    StudyMemberOf,
    WritableSample,
    WritableStudy,
)
from src.study.exceptions import (
    BODY,
    IN_STUDY,
    ROLE,
    TOKEN_ERRORS,
    VERSIONED,
    WRITE,
    IncompatibleSampleFields,
    InvalidFieldFilter,
    InvalidSampleValues,
    InvalidStatusTransition,
    LastOwner,
    MemberNotFound,
    SampleIdTaken,
    SampleNotFound,
    StudyBusy,
    StudyCodeTaken,
    StudyCreationForbidden,
    StudyNotDeletable,
)
from src.study.models import Sample, Study
from src.study.schemas import (
    FIELD_EXAMPLES,
    ActivityRead,
    MemberRead,
    MemberUpdate,
    SampleCreate,
    SampleFields,
    SampleRead,
    SampleUpdate,
    StatusChange,
    StudyCreate,
    StudyRead,
    StudySummary,
    StudyUpdate,
)
from src.study.service import Member, StudyAccess

router = APIRouter(prefix="/studies", tags=["studies"])
IF_MATCH_NOTE = (
    " Send `If-Match` with the `ETag` you read to apply it only if nobody changed it meanwhile (else 412, "
    "nothing changed); without `If-Match` it applies to the current version. A weak tag (`W/` prefix) never "
    "matches (If-Match compares strongly): 412."
)


def study_read(access: StudyAccess, response: Response, study: Study | None = None) -> StudyRead:
    """The study as the caller sees it, with its version as the ETag."""
    study = study or access.study
    response.headers["ETag"] = etag(study.version)
    return StudyRead.of(study, role=access.role)


def sample_read(sample: Sample, response: Response) -> SampleRead:
    response.headers["ETag"] = etag(sample.version)
    return SampleRead.model_validate(sample)


def member_read(member: Member) -> MemberRead:
    user = member.user
    return MemberRead(
        user_id=user.id,
        email=user.email,
        full_name=user.full_name,
        role=member.role,
        added_at=member.added_at,
    )


# Studies


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=StudyRead,
    summary="Create a study",
    description="Researchers and admins; the study starts as `draft` and you become its owner. "
    "`code` is unique case-insensitively; `sample_fields` is the typed schema of its samples. Where "
    "addresses must be verified (`REQUIRE_EMAIL_VERIFICATION`), an account whose address is not yet "
    "verified gets 403 `EMAIL_NOT_VERIFIED`.",
    responses=problem_responses(
        *BODY, *TOKEN_ERRORS, StudyCreationForbidden, EmailNotVerified, StudyCodeTaken, *IDEMPOTENCY_ERRORS
    ),
)
async def create_study(
    data: StudyCreate,
    user: StudyCreator,
    _: FieldsPrecompiled,
    __: IdempotentCreate,
    db: DbSession,
    response: Response,
) -> StudyRead:
    access = await service.create_study(db, owner=user, data=data)
    response.headers["Location"] = f"{API_PREFIX}/studies/{access.study.id}"
    return study_read(access, response)


@router.get(
    "",
    response_model=Page[StudySummary],
    summary="List your studies",
    description="The studies you are a member of (admins: all), each with the number of its sample "
    "fields (read one study for the fields themselves). `q` matches code or title "
    "(case-insensitive substring); archived studies appear only with `status=archived` or "
    "`include_archived=true`; `sort` orders (prefix `-` for descending).",
    responses=problem_responses(*TOKEN_ERRORS),
)
async def list_studies(
    user: CurrentUser,
    db: DbSession,
    page: Pagination,
    status: StudyStatus | None = None,
    include_archived: bool = False,
    q: Annotated[SingleLineText | None, Query(max_length=200, description="search in code and title")] = None,
    sort: StudySort = StudySort.NEWEST_FIRST,
) -> dict:
    found = await service.list_studies(
        db, user=user, page=page, status=status, include_archived=include_archived, search=q, sort=sort
    )
    items = [
        StudySummary.of(listed.study, role=listed.role, sample_field_count=listed.sample_field_count)
        for listed in found[0]
    ]
    return page_of(items, *found[1:], page)


@router.get(
    "/{study_id}",
    response_model=StudyRead,
    summary="One study",
    description="Any member may read it; the `ETag` header carries its version.",
    responses=problem_responses(*IN_STUDY),
)
async def read_study(access: ReadableStudy, response: Response) -> StudyRead:
    return study_read(access, response)


@router.patch(
    "/{study_id}",
    response_model=StudyRead,
    summary="Change a study's code, title or description",
    description="Editors and owners, while the study is `draft` or `active`. Fields left out stay; "
    "`description: null` clears it." + IF_MATCH_NOTE,
    responses=problem_responses(*BODY, *WRITE, *VERSIONED, StudyCodeTaken),
)
async def update_study(
    data: StudyUpdate, access: WritableStudy, expected_version: IfMatch, db: DbSession, response: Response
) -> StudyRead:
    study = await service.update_study(db, access=access, data=data, expected_version=expected_version)
    return study_read(access, response, study)


@router.delete(
    "/{study_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Delete a draft study",
    description="Owners only, and only while the study is a `draft` without samples; any other study "
    "is archived instead (409 tells you so). Its sample files (rejected ones: a draft has no samples) "
    "go with it, their stored bytes too." + IF_MATCH_NOTE,
    responses=problem_responses(*ROLE, *VERSIONED, StudyNotDeletable, StudyBusy),
)
async def delete_study(
    access: OwnedStudy, expected_version: IfMatch, db: DbSession, storage: FileStorage
) -> None:
    await sample_file_service.delete_study(
        db, study=access.study, expected_version=expected_version, storage=storage
    )


@router.post(
    "/{study_id}/status",
    response_model=StudyRead,
    summary="Move a study through its lifecycle",
    description="Owners only. Allowed: `draft → active`, `active ⇄ locked`, `active|locked → archived`, "
    "`archived → locked`; anything else is 409 naming the allowed ones. Locked and archived studies "
    "are read-only: their details, sample fields and samples cannot change." + IF_MATCH_NOTE,
    responses=problem_responses(*BODY, *ROLE, *VERSIONED, InvalidStatusTransition, StudyBusy),
)
async def change_status(
    data: StatusChange, access: OwnedStudy, expected_version: IfMatch, db: DbSession, response: Response
) -> StudyRead:
    study = await service.change_status(
        db, access=access, status=data.status, expected_version=expected_version
    )
    return study_read(access, response, study)


@router.put(
    "/{study_id}/sample-fields",
    response_model=StudyRead,
    summary="Replace the study's sample fields",
    description="The body is the complete new list. Editors and owners, while the study is `draft` or "
    "`active`. While the study has no samples anything goes; once it has samples, only changes they "
    "all still satisfy (add an optional field, add choices, loosen a bound, edit description or unit); "
    "anything else is 409 listing each incompatible change in `errors`." + IF_MATCH_NOTE,
    responses=problem_responses(*BODY, *WRITE, *VERSIONED, IncompatibleSampleFields),
)
async def replace_sample_fields(
    fields: Annotated[SampleFields, Body(examples=[FIELD_EXAMPLES])],
    access: WritableStudy,
    _: FieldsPrecompiled,
    expected_version: IfMatch,
    db: DbSession,
    response: Response,
) -> StudyRead:
    study = await service.replace_sample_fields(
        db, access=access, fields=fields, expected_version=expected_version
    )
    return study_read(access, response, study)


# Members


@router.get(
    "/{study_id}/members",
    response_model=Page[MemberRead],
    summary="List a study's members",
    description="Any member may see who else is in the study and with which role, oldest first.",
    responses=problem_responses(*IN_STUDY),
)
async def list_members(access: ReadableStudy, page: Pagination, db: DbSession) -> dict:
    members, total, total_is_exact = await service.list_members(db, study=access.study, page=page)
    return page_of([member_read(member) for member in members], total, total_is_exact, page)


@router.get(
    "/{study_id}/members/{user_id}",
    response_model=MemberRead,
    summary="One member",
    description="Any member may see another's role (the `Location` of an added member).",
    responses=problem_responses(*IN_STUDY, MemberNotFound),
)
async def read_member(member: ReadableMember) -> MemberRead:
    return member_read(member)


@router.patch(
    "/{study_id}/members/{user_id}",
    response_model=MemberRead,
    summary="Change a member's role",
    description="Owners only. The last owner cannot be demoted (409).",
    responses=problem_responses(*BODY, *ROLE, MemberNotFound, LastOwner),
)
async def change_member_role(
    data: MemberUpdate, member: StudyMemberOf, access: OwnedStudy, db: DbSession
) -> MemberRead:
    return member_read(await service.change_member_role(db, access=access, member=member, role=data.role))


@router.delete(
    "/{study_id}/members/{user_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Remove a member",
    description="Owners only. The last owner cannot be removed (409).",
    responses=problem_responses(*ROLE, MemberNotFound, LastOwner),
)
async def remove_member(member: StudyMemberOf, access: OwnedStudy, db: DbSession) -> None:
    await service.remove_member(db, access=access, member=member)


# Samples


@router.post(
    "/{study_id}/samples",
    status_code=status.HTTP_201_CREATED,
    response_model=SampleRead,
    summary="Add a sample",
    description="Editors and owners, while the study is `draft` or `active`. `values` are validated "
    "and normalised against the study's sample fields; each refused value is one entry of `errors` "
    '(`loc` `["body", "values", <field>]`, `code` such as `not_an_integer`). `sample_id` is unique '
    "in the study after trimming and case-folding (409). If the sample fields change while the sample "
    "is being saved, nothing is saved (412): read the study again.",
    responses=problem_responses(
        *BODY, *WRITE, InvalidSampleValues, SampleIdTaken, PreconditionFailed, *IDEMPOTENCY_ERRORS
    ),
)
async def create_sample(
    data: SampleCreate, access: WritableStudy, _: IdempotentCreate, db: DbSession, response: Response
) -> SampleRead:
    sample = await samples.create_sample(db, access=access, data=data)
    response.headers["Location"] = f"{API_PREFIX}/studies/{access.study.id}/samples/{sample.id}"
    return sample_read(sample, response)


@router.get(
    "/{study_id}/samples",
    response_model=Page[SampleRead],
    summary="List a study's samples",
    description="Filters: `status`, `q` (prefix of sample_id, case-insensitive) and equality on any "
    "field as `field.<name>=<value>` (e.g. `?field.tissue=blood`; several are combined with AND, at most "
    "20; an unknown field, a value of the wrong type or two different values for one field is 422). "
    "`sort` by `sample_id`, `status`, `created_at` "
    "or `updated_at` (prefix `-` for descending). Without filters `total` is exact, and so it is with one "
    "filter on a `choice` field alone (a maintained count); with other filters it is counted up to 10,000 "
    "(`total_is_exact: false` beyond).",
    responses=problem_responses(*IN_STUDY, InvalidFieldFilter),
)
async def list_samples(
    access: ReadableStudy,
    page: Pagination,
    filters: FieldFilters,
    db: DbSession,
    status: SampleStatus | None = None,
    q: Annotated[SingleLineText | None, Query(max_length=100, description="sample_id prefix")] = None,
    sort: SampleSort = SampleSort.SAMPLE_ID,
) -> Response:
    items, total, total_is_exact = await samples.list_samples(
        db, study=access.study, page=page, status=status, sample_id_prefix=q, field_filters=filters, sort=sort
    )
    # The items are already SampleRead's fields, of its types: serialised once, straight to bytes.
    return json_response(page_of(items, total, total_is_exact, page))


@router.get(
    "/{study_id}/samples/{sample_pk}",
    response_model=SampleRead,
    summary="One sample",
    description="Any member may read it; the `ETag` header carries its version.",
    responses=problem_responses(*IN_STUDY, SampleNotFound),
)
async def read_sample(sample: ReadableSample, response: Response) -> SampleRead:
    return sample_read(sample, response)


@router.patch(
    "/{study_id}/samples/{sample_pk}",
    response_model=SampleRead,
    summary="Change a sample",
    description="Editors and owners, while the study is `draft` or `active`. A merge: keys given in "
    "`values` replace those values, `null` clears an optional one, the rest stay." + IF_MATCH_NOTE,
    responses=problem_responses(
        *BODY, *WRITE, *VERSIONED, SampleNotFound, InvalidSampleValues, SampleIdTaken
    ),
)
async def update_sample(
    data: SampleUpdate,
    sample: WritableSample,
    access: WritableStudy,
    expected_version: IfMatch,
    db: DbSession,
    response: Response,
) -> SampleRead:
    updated = await samples.update_sample(
        db, access=access, sample=sample, data=data, expected_version=expected_version
    )
    return sample_read(updated, response)


@router.delete(
    "/{study_id}/samples/{sample_pk}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Delete a sample",
    description="Editors and owners, while the study is `draft` or `active`." + IF_MATCH_NOTE,
    responses=problem_responses(*WRITE, *VERSIONED, SampleNotFound),
)
async def delete_sample(
    sample: WritableSample, access: WritableStudy, expected_version: IfMatch, db: DbSession
) -> None:
    await samples.delete_sample(db, access=access, sample=sample, expected_version=expected_version)


# Activity


@router.get(
    "/{study_id}/activity",
    response_model=Page[ActivityRead],
    summary="A study's activity log",
    description="Who did what, newest first: study created/updated, status changed, sample fields "
    "changed, members added/changed/removed, samples created/updated/deleted (edits with the old and "
    "new values). Any member may read it.",
    responses=problem_responses(*IN_STUDY),
)
async def list_activity(access: ReadableStudy, page: Pagination, db: DbSession) -> dict:
    entries, total, total_is_exact = await activity.list_activity(db, study=access.study, page=page)
    return page_of([ActivityRead.of(entry) for entry in entries], total, total_is_exact, page)


@router.get(
    "/{study_id}/samples/{sample_pk}/activity",
    response_model=Page[ActivityRead],
    summary="A sample's activity log",
    description="The study's log narrowed to one sample, newest first: its creation and every edit "
    "(old and new values), by whom. Addressed by the sample's `id`, like the sample itself, so a "
    "changed sample id keeps its history. An import is one entry per file, not per sample: the log "
    "also holds the `sample_file_imported` entries of the file whose import created the sample and "
    "of the last file whose import changed it (values or status; not one that found them as they "
    "were). Only the last updating file is kept: an earlier one's import is in the study's log only, "
    "as is one whose file was deleted. Any member may read it; 404 for a sample of another study.",
    responses=problem_responses(*IN_STUDY, SampleNotFound),
)
async def list_sample_activity(
    sample: ReadableSample, access: ReadableStudy, page: Pagination, db: DbSession
) -> dict:
    entries, total, total_is_exact = await activity.list_activity(
        db, study=access.study, page=page, sample=sample
    )
    return page_of([ActivityRead.of(entry) for entry in entries], total, total_is_exact, page)
