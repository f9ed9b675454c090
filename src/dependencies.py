"""Dependencies shared across modules: who is calling, which page of a list, which version to change."""

import re
from collections import Counter
from typing import Annotated

from fastapi import Depends, Header, Query, Request

from src import idempotency
from src.auth.dependencies import AdminUser, CurrentUser, VerifiedUser
from src.constants import DEFAULT_PAGE_SIZE, IDEMPOTENCY_KEY_MAX_LENGTH, MAX_ETAG_HEADER_LENGTH, MAX_PAGE_SIZE
from src.database import DbSession
from src.exceptions import InvalidIfMatch, PreconditionFailed, ValidationFailed
from src.schemas import DocumentedPattern, PageParams
from src.url_encoded import undecodable_names

# The caller, typed: every module's routes take `user: CurrentUser` or `admin: AdminUser`.
__all__ = [
    "AdminUser",
    "CurrentUser",
    "IdempotencyKey",
    "IdempotentCreate",
    "IfMatch",
    "IfNoneMatch",
    "PageParams",
    "Pagination",
    "VerifiedUser",
    "check_query_string",
    "etag_matches",
    "if_match_version",
    "page_params",
]

# The ETag of a versioned resource is its version in quotes. If-Match compares strongly (RFC 9110
# 13.1.1): a weak tag, W/"3", never matches, so a write sent with one fails its precondition (412).
_VERSION_TAG = re.compile(r'^(W/)?"(\d{1,18})"$')
# For the document, the If-Match that can succeed: `*` or one strong tag (an HTTP header value has
# no surrounding spaces), or empty, which the server never sees (an empty header is dropped on the
# way, as if left out). A weak tag is read, but never matches (412); anything else is a 400.
IF_MATCH_PATTERN = r'^(?:\*|"[0-9]{1,18}")?$'


async def page_params(
    page: Annotated[int, Query(ge=1, le=1_000_000, description="1-based page number")] = 1,
    page_size: Annotated[
        int, Query(ge=1, le=MAX_PAGE_SIZE, description=f"items per page, at most {MAX_PAGE_SIZE}")
    ] = DEFAULT_PAGE_SIZE,
) -> PageParams:
    return PageParams(page=page, page_size=page_size)


Pagination = Annotated[PageParams, Depends(page_params)]


def _query_error(name: str, msg: str, code: str) -> dict[str, object]:
    return {"loc": ["query", name], "msg": msg, "code": code}


async def check_query_string(request: Request) -> None:
    """Every route's query: UTF-8 once percent-decoded, and no name given twice.

    `?page=1&page=2` is ambiguous, and FastAPI would quietly take the last: no route takes a list in
    its query, so a repeated name is a 422 rather than a guess at what the caller meant.
    """
    if not request.scope["query_string"]:
        return  # most requests have none: nothing to parse
    errors = [
        _query_error(name, "is not UTF-8 text", "invalid_utf8")
        for name in undecodable_names(request.scope["query_string"])
    ]
    counts = Counter(name for name, _ in request.query_params.multi_items())
    repeated = sorted(name for name, count in counts.items() if count > 1)
    errors += [_query_error(name, "may be given only once", "repeated") for name in repeated]
    if errors:
        raise ValidationFailed(errors=errors)


def etag(version: int) -> str:
    return f'"{version}"'


async def if_match_version(
    if_match: Annotated[
        Annotated[str, DocumentedPattern(IF_MATCH_PATTERN)] | None,
        Header(
            max_length=MAX_ETAG_HEADER_LENGTH,
            description='The `ETag` you read (e.g. `"3"`): the change applies only if the resource is '
            "still at that version, else 412 and nothing changes. A weak tag (`W/` prefix) never matches "
            "(If-Match compares strongly): 412. Left out (or `*`), the change applies to whatever version "
            "is current.",
        ),
    ] = None,
) -> int | None:
    """The version the caller expects the resource to be at, or None when they did not say."""
    if if_match is None or if_match.strip() == "*":
        return None
    match = _VERSION_TAG.match(if_match.strip())
    if match is None:
        raise InvalidIfMatch
    weak, version = match.groups()
    if weak:
        raise PreconditionFailed(
            "If-Match compares strongly: a weak tag (W/) never matches; nothing was changed."
        )
    return int(version)


IfMatch = Annotated[int | None, Depends(if_match_version)]

IfNoneMatch = Annotated[
    str | None,
    Header(
        max_length=MAX_ETAG_HEADER_LENGTH,
        description="the `ETag` of the copy you hold: 304 with no body while it is still current",
    ),
]


def etag_matches(if_none_match: str | None, tag: str) -> bool:
    """If-None-Match compares weakly (RFC 9110 13.1.2): `*`, or any listed tag with or without W/."""
    if if_none_match is None:
        return False
    candidates = [candidate.strip() for candidate in if_none_match.split(",")]
    return "*" in candidates or tag in (candidate.removeprefix("W/") for candidate in candidates)


# Idempotency-Key: visible ASCII, in the draft's quotes (a Structured Field string) or bare.
_KEY_TOKEN = rf"[\x21\x23-\x7e]{{1,{IDEMPOTENCY_KEY_MAX_LENGTH}}}"
IDEMPOTENCY_KEY_PATTERN = rf'^(?:"{_KEY_TOKEN}"|{_KEY_TOKEN})$'
IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        pattern=IDEMPOTENCY_KEY_PATTERN,
        max_length=IDEMPOTENCY_KEY_MAX_LENGTH + 2,
        description="Makes a retry safe: a unique value (a UUID) per request. A retry with the same key and "
        "the same request gets the first answer again (`Idempotent-Replayed: true`) without doing the work "
        "twice, for 24 hours; the same key with another request is 422 `IDEMPOTENCY_KEY_REUSED`; while the "
        "first is still running, 409 `IDEMPOTENT_REQUEST_IN_PROGRESS` with Retry-After.",
        examples=['"8e03978e-40d5-43e8-bc93-6894a57f9324"'],
    ),
]


def idempotency_key_value(header: str | None) -> str | None:
    """The key itself: the draft sends it as a quoted string, many clients bare; both are the same key."""
    return header[1:-1] if header and len(header) > 1 and header[0] == header[-1] == '"' else header


async def idempotent_create(
    request: Request, user: CurrentUser, db: DbSession, idempotency_key: IdempotencyKey = None
) -> None:
    """A POST that creates something, sent with Idempotency-Key: taken for this request, or answered
    as its first request was (src.idempotency). Its JSON body is part of what a retry must repeat."""
    key = idempotency_key_value(idempotency_key)
    if key is None:
        return
    fingerprint = idempotency.fingerprint_of(
        request.method, request.url.path, await request.body(), json_body=True
    )
    await idempotency.begin(user_id=user.id, key=key, fingerprint=fingerprint, session_info=db.info)


IdempotentCreate = Annotated[None, Depends(idempotent_create)]
