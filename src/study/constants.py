"""Error codes, lifecycle states, roles, sample field types and limits of the study module."""

from enum import StrEnum


class ErrorCode(StrEnum):
    STUDY_NOT_FOUND = "STUDY_NOT_FOUND"
    STUDY_CODE_TAKEN = "STUDY_CODE_TAKEN"
    STUDY_CREATION_FORBIDDEN = "STUDY_CREATION_FORBIDDEN"
    STUDY_ROLE_REQUIRED = "STUDY_ROLE_REQUIRED"
    STUDY_READ_ONLY = "STUDY_READ_ONLY"
    STUDY_NOT_DELETABLE = "STUDY_NOT_DELETABLE"
    INVALID_STATUS_TRANSITION = "INVALID_STATUS_TRANSITION"
    MEMBER_NOT_FOUND = "MEMBER_NOT_FOUND"
    ALREADY_A_MEMBER = "ALREADY_A_MEMBER"
    LAST_OWNER = "LAST_OWNER"
    INCOMPATIBLE_SAMPLE_FIELDS = "INCOMPATIBLE_SAMPLE_FIELDS"
    SAMPLE_NOT_FOUND = "SAMPLE_NOT_FOUND"
    SAMPLE_ID_TAKEN = "SAMPLE_ID_TAKEN"
    INVALID_SAMPLE_VALUES = "INVALID_SAMPLE_VALUES"
    INVALID_FIELD_FILTER = "INVALID_FIELD_FILTER"
    STUDY_BUSY = "STUDY_BUSY"


class StudyStatus(StrEnum):
    DRAFT = "draft"
    ACTIVE = "active"
    LOCKED = "locked"
    ARCHIVED = "archived"


class StudyRole(StrEnum):
    OWNER = "owner"
    EDITOR = "editor"
    VIEWER = "viewer"


class SampleStatus(StrEnum):
    REGISTERED = "registered"
    RECEIVED = "received"
    STORED = "stored"
    CONSUMED = "consumed"
    DISCARDED = "discarded"


class FieldType(StrEnum):
    TEXT = "text"
    INTEGER = "integer"
    NUMBER = "number"
    BOOLEAN = "boolean"
    DATE = "date"
    DATETIME = "datetime"
    CHOICE = "choice"


class ValueErrorCode(StrEnum):
    """Why one value of a sample was refused; stable strings shared with file-import reports."""

    REQUIRED = "required"
    UNKNOWN_FIELD = "unknown_field"
    NOT_TEXT = "not_text"
    NOT_AN_INTEGER = "not_an_integer"
    NOT_A_NUMBER = "not_a_number"
    NOT_A_BOOLEAN = "not_a_boolean"
    NOT_A_DATE = "not_a_date"
    NOT_A_DATETIME = "not_a_datetime"
    BELOW_MIN = "below_min"
    ABOVE_MAX = "above_max"
    NOT_A_CHOICE = "not_a_choice"
    PATTERN_MISMATCH = "pattern_mismatch"
    TOO_LONG = "too_long"
    INVALID_TEXT = "invalid_text"


# The researcher's own fields may not take these names: they are columns of every sample.
RESERVED_FIELD_NAMES = frozenset({"sample_id", "status"})


# The lifecycle: where each state may go next.
ALLOWED_TRANSITIONS: dict[StudyStatus, frozenset[StudyStatus]] = {
    StudyStatus.DRAFT: frozenset({StudyStatus.ACTIVE}),
    StudyStatus.ACTIVE: frozenset({StudyStatus.LOCKED, StudyStatus.ARCHIVED}),
    StudyStatus.LOCKED: frozenset({StudyStatus.ACTIVE, StudyStatus.ARCHIVED}),
    StudyStatus.ARCHIVED: frozenset({StudyStatus.LOCKED}),
}
# Details, the sample schema and samples change only in these states; locked and archived are frozen.
WRITABLE_STATUSES = frozenset({StudyStatus.DRAFT, StudyStatus.ACTIVE})

# What each study role may do includes what the roles below it may do.
ROLE_RANK = {StudyRole.VIEWER: 1, StudyRole.EDITOR: 2, StudyRole.OWNER: 3}


class StudySort(StrEnum):
    CREATED_AT = "created_at"
    NEWEST_FIRST = "-created_at"
    UPDATED_AT = "updated_at"
    RECENTLY_UPDATED = "-updated_at"
    CODE = "code"
    CODE_DESC = "-code"
    TITLE = "title"
    TITLE_DESC = "-title"


class SampleSort(StrEnum):
    SAMPLE_ID = "sample_id"
    SAMPLE_ID_DESC = "-sample_id"
    STATUS = "status"
    STATUS_DESC = "-status"
    CREATED_AT = "created_at"
    NEWEST_FIRST = "-created_at"
    UPDATED_AT = "updated_at"
    RECENTLY_UPDATED = "-updated_at"


# The details key by which an entry names its sample file (the sample-file module's entries).
SAMPLE_FILE_ID_DETAIL = "sample_file_id"


class ActivityAction(StrEnum):
    STUDY_CREATED = "study_created"
    STUDY_UPDATED = "study_updated"
    STATUS_CHANGED = "status_changed"
    SAMPLE_FIELDS_CHANGED = "sample_fields_changed"
    MEMBER_ADDED = "member_added"  # before invitations (issue 21): kept for the entries written then
    MEMBER_INVITED = "member_invited"  # invited, the invitation renewed or resent
    INVITATION_ACCEPTED = "invitation_accepted"  # the invitee joined
    INVITATION_DECLINED = "invitation_declined"
    INVITATION_REVOKED = "invitation_revoked"
    MEMBER_CHANGED = "member_changed"
    MEMBER_REMOVED = "member_removed"
    SAMPLE_CREATED = "sample_created"
    SAMPLE_UPDATED = "sample_updated"
    SAMPLE_DELETED = "sample_deleted"
    SAMPLE_FILE_IMPORTED = "sample_file_imported"
    SAMPLE_FILE_REJECTED = "sample_file_rejected"
    SAMPLE_FILE_DELETED = "sample_file_deleted"


# Query parameters `field.<name>=<value>` filter samples by one of the study's fields.
FIELD_FILTER_PREFIX = "field."
# More would be a slow query (or, on SQLite, an expression tree too deep) for no use.
MAX_FIELD_FILTERS = 20

CODE_PATTERN = r"^[A-Za-z0-9-]{2,32}$"
CODE_MAX_LENGTH = 32
TITLE_MAX_LENGTH = 200
DESCRIPTION_MAX_LENGTH = 10_000
SAMPLE_ID_MAX_LENGTH = 100
FIELD_NAME_PATTERN = r"^[A-Za-z][A-Za-z0-9_]{0,63}$"
FIELD_NAME_MAX_LENGTH = 64  # what FIELD_NAME_PATTERN allows
MAX_SAMPLE_FIELDS = 200
MAX_CHOICES = 1_000
# A whole schema: what a study stores, answers and caches stays small.
MAX_TOTAL_CHOICES = 2_000
MAX_SCHEMA_JSON = 65_536
CHOICE_MAX_LENGTH = 200
# The `value` of a field's "has a value" counter (StudyFieldValueCount); a choice is never empty.
FIELD_FILLED = ""
UNIT_MAX_LENGTH = 50
FIELD_DESCRIPTION_MAX_LENGTH = 1_000
# A text field without a max_length of its own holds this many characters; one may set up to the limit.
TEXT_DEFAULT_MAX_LENGTH = 1_000
TEXT_MAX_LENGTH_LIMIT = 10_000
# The largest integer a browser's JSON reads exactly (Number.MAX_SAFE_INTEGER): integer values, and
# the bounds of integer and number fields, stay within plus or minus this.
MAX_SAFE_INTEGER = 2**53 - 1
PATTERN_MAX_LENGTH = 500
ACTIVITY_ACTION_MAX_LENGTH = 40
# An activity entry keeps each text of its details to this many characters (the last one then "…"),
# and its details to this many bytes of JSON (UTF-8): with the rest of an entry (at most ~0.5 KB),
# the dashboard's 20 newest take at most ~41 KB whatever was written. `truncated` in the details lists
# the JSON Pointer of what was cut.
ACTIVITY_TEXT_MAX_LENGTH = 200
ACTIVITY_DETAILS_MAX_BYTES = 1_536
ACTIVITY_TRUNCATED_KEY = "truncated"
ACTIVITY_CUT_MARK = "\u2026"
