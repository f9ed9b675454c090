"""Error codes and limits shared by every module."""

from enum import StrEnum


class Environment(StrEnum):
    DEVELOPMENT = "development"
    TEST = "test"
    STAGING = "staging"
    PRODUCTION = "production"

    @property
    def allows_sample_secret(self) -> bool:
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
    NOT_FOUND = "NOT_FOUND"
    METHOD_NOT_ALLOWED = "METHOD_NOT_ALLOWED"
    HTTP_ERROR = "HTTP_ERROR"
    INTERNAL_ERROR = "INTERNAL_ERROR"
    DATABASE_UNAVAILABLE = "DATABASE_UNAVAILABLE"
    PRECONDITION_FAILED = "PRECONDITION_FAILED"
    INVALID_IF_MATCH = "INVALID_IF_MATCH"


API_PREFIX = "/api/v1"
MAX_PAGE_SIZE = 100
DEFAULT_PAGE_SIZE = 20
# Filtered totals are counted exactly up to here; above it a list says `total_is_exact: false`.
COUNT_CAP = 10_000
