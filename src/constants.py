"""Error codes and limits shared by every module."""

from enum import IntEnum, StrEnum


class Environment(StrEnum):
    DEVELOPMENT = "development"
    TEST = "test"
    STAGING = "staging"
    PRODUCTION = "production"

    @property
    def allows_sample_secret(self) -> bool:
        return self in (Environment.DEVELOPMENT, Environment.TEST)

    @property
    def logs_mail(self) -> bool:
        """Without SMTP_URL, whether mail is written to the log (links and tokens included)."""
        return self in (Environment.DEVELOPMENT, Environment.TEST)


class ErrorCode(StrEnum):
    NOT_AUTHENTICATED = "NOT_AUTHENTICATED"
    FORBIDDEN = "FORBIDDEN"
    CONFLICT = "CONFLICT"
    RATE_LIMITED = "RATE_LIMITED"
    SERVICE_UNAVAILABLE = "SERVICE_UNAVAILABLE"
    CORS_REJECTED = "CORS_REJECTED"
    VALIDATION_ERROR = "VALIDATION_ERROR"
    MALFORMED_BODY = "MALFORMED_BODY"
    BODY_TOO_COMPLEX = "BODY_TOO_COMPLEX"
    PAYLOAD_TOO_LARGE = "PAYLOAD_TOO_LARGE"
    NOT_FOUND = "NOT_FOUND"
    METHOD_NOT_ALLOWED = "METHOD_NOT_ALLOWED"
    HTTP_ERROR = "HTTP_ERROR"
    INTERNAL_ERROR = "INTERNAL_ERROR"
    DATABASE_UNAVAILABLE = "DATABASE_UNAVAILABLE"
    INSUFFICIENT_STORAGE = "INSUFFICIENT_STORAGE"
    STORAGE_UNAVAILABLE = "STORAGE_UNAVAILABLE"
    PRECONDITION_FAILED = "PRECONDITION_FAILED"
    INVALID_IF_MATCH = "INVALID_IF_MATCH"
    RESOURCE_BUSY = "RESOURCE_BUSY"
    REQUEST_TIMED_OUT = "REQUEST_TIMED_OUT"
    IDEMPOTENCY_KEY_REUSED = "IDEMPOTENCY_KEY_REUSED"
    IDEMPOTENT_REQUEST_IN_PROGRESS = "IDEMPOTENT_REQUEST_IN_PROGRESS"
    IDEMPOTENT_REQUEST_APPLIED = "IDEMPOTENT_REQUEST_APPLIED"


class LockNamespace(IntEnum):
    """The first half of a named lock's key (src/database.py NamedLock): what kind of thing is locked."""

    STUDY_IMPORT = 1  # a study an import is writing into (src/study/service.py holding_study)
    USER_IMPORTS = 2  # one of a user's concurrent import slots (src/sampleFileUpload/service.py)


# Idempotency-Key: how long a key's first answer is kept for retries, the longest key, and the
# largest answer kept (an upload's report can be hundreds of KB; a larger one is not replayed).
IDEMPOTENCY_KEY_LIFETIME_HOURS = 24
IDEMPOTENCY_KEY_MAX_LENGTH = 255
IDEMPOTENCY_MAX_STORED_BODY_BYTES = 2 * 1024 * 1024

API_PREFIX = "/api/v1"
MAX_PAGE_SIZE = 100
# If-Match / If-None-Match: one or a few entity tags such as "3".
MAX_ETAG_HEADER_LENGTH = 1024
DEFAULT_PAGE_SIZE = 20

# What one request body may hold; nginx refuses larger bodies first (client_max_body_size 1m).
MAX_BODY_BYTES = 1024 * 1024
MAX_JSON_DEPTH = 32
# Counted as bytes anywhere in the body, strings included (`[` and `{`; `,` for values): a
# cheap over-estimate that bounds what json.loads builds before it runs.
MAX_JSON_CONTAINERS = 10_000
MAX_JSON_VALUES = 50_000
MAX_JSON_OBJECT_KEYS = 1_000
MAX_JSON_ARRAY_ITEMS = 10_000
# A refused request lists at most this many errors (with the total), so its answer stays small.
MAX_PROBLEM_ERRORS = 50
# ... and each entry's texts are cut short, and the list stops at a byte budget, so that whatever
# the request held (a 900 KB unknown key is echoed in `loc`) a refusal answers in under 16 KB.
MAX_ERROR_TEXT = 200
MAX_ERROR_LOC_PARTS = 10
MAX_PROBLEM_ERRORS_BYTES = 12 * 1024
# Filtered totals are counted exactly up to here; above it a list says `total_is_exact: false`.
COUNT_CAP = 10_000

# The job queue's queues (src/job_queue.py): what keeps the database small runs apart from imports.
MAINTENANCE_QUEUE = "maintenance"
