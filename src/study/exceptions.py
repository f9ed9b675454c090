"""Errors of the study module."""

from src.auth.exceptions import AuthenticationRequired, InvalidToken, SessionRevoked, TokenExpired
from src.exceptions import (
    BodyTooComplex,
    Conflict,
    InvalidIfMatch,
    MalformedBody,
    NotFound,
    PermissionDenied,
    PreconditionFailed,
    ResourceBusy,
    UnprocessableEntity,
    ValidationFailed,
)
from src.study.constants import ErrorCode


class StudyNotFound(NotFound):
    code = ErrorCode.STUDY_NOT_FOUND
    detail = "No such study (or you are not a member of it)."


class StudyCodeTaken(Conflict):
    code = ErrorCode.STUDY_CODE_TAKEN
    detail = "Another study already has this code (codes are compared case-insensitively)."


class StudyCreationForbidden(PermissionDenied):
    code = ErrorCode.STUDY_CREATION_FORBIDDEN
    detail = "Viewers cannot create studies; ask an administrator for the researcher role."


class StudyRoleRequired(PermissionDenied):
    code = ErrorCode.STUDY_ROLE_REQUIRED
    detail = "Your role in this study does not allow this."


class StudyReadOnly(Conflict):
    code = ErrorCode.STUDY_READ_ONLY
    detail = "The study is locked or archived: its details, sample fields and samples cannot change."


class StudyNotDeletable(Conflict):
    code = ErrorCode.STUDY_NOT_DELETABLE
    detail = "Only a draft study without samples can be deleted; archive this one instead."


class StudyBusy(ResourceBusy):
    """An import holds the study (or another writer the same samples) past the lock timeout."""

    code = ErrorCode.STUDY_BUSY
    detail = (
        "A sample file is being imported into this study (or someone is changing the same samples): "
        "nothing was changed. Try again in a few seconds."
    )


class InvalidStatusTransition(Conflict):
    code = ErrorCode.INVALID_STATUS_TRANSITION
    detail = "The study cannot move to that status from its current one."


class MemberNotFound(NotFound):
    code = ErrorCode.MEMBER_NOT_FOUND
    detail = "This user is not a member of the study."


class AlreadyAMember(Conflict):
    code = ErrorCode.ALREADY_A_MEMBER
    detail = "This user is already a member of the study; change their role instead."


class LastOwner(Conflict):
    code = ErrorCode.LAST_OWNER
    detail = "A study must keep at least one owner; make someone else owner first."


class IncompatibleSampleFields(Conflict):
    code = ErrorCode.INCOMPATIBLE_SAMPLE_FIELDS
    detail = "The study has samples, and these changes could make them invalid; see `errors`."


class SampleNotFound(NotFound):
    code = ErrorCode.SAMPLE_NOT_FOUND
    detail = "No such sample in this study."


class SampleIdTaken(Conflict):
    code = ErrorCode.SAMPLE_ID_TAKEN
    detail = "The study already has a sample with this sample_id (compared trimmed and case-insensitively)."


class InvalidSampleValues(UnprocessableEntity):
    code = ErrorCode.INVALID_SAMPLE_VALUES
    detail = "Some values do not fit the study's sample fields; see `errors`."


class InvalidFieldFilter(UnprocessableEntity):
    code = ErrorCode.INVALID_FIELD_FILTER
    detail = "A `field.<name>` filter names no field of this study or has a value of the wrong type."


# What the routes answer, for their OpenAPI documents (the sample-file and dashboard routes too).
TOKEN_ERRORS = (AuthenticationRequired, InvalidToken, TokenExpired, SessionRevoked, ValidationFailed)
# Any route under /studies/{study_id}: the study must exist and the caller be one of its members.
IN_STUDY = (*TOKEN_ERRORS, StudyNotFound)
ROLE = (*IN_STUDY, StudyRoleRequired)
WRITE = (*ROLE, StudyReadOnly, StudyBusy)
VERSIONED = (InvalidIfMatch, PreconditionFailed)
# Routes that read a JSON body: one that is not JSON, or past the structural limits, is refused first.
BODY = (MalformedBody, BodyTooComplex)
