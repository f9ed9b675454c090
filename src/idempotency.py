"""Idempotency-Key (IETF httpapi draft): a POST that creates something can be retried safely.

The first request with a key (per user) is recorded as `started` in a short transaction of its
own, before its work; the request's own commit marks it `committed` in the same transaction as
the write (so a write and its mark are never apart); once answered, its status, a few headers and
its body are kept (`completed`) for KEY_LIFETIME. A retry with the same key and the same request
gets that answer again, marked `Idempotent-Replayed: true`, without the work being done again. The
same key with another request is 422; while the first is still running, 409 with Retry-After. A
first request that wrote nothing and failed on the server's side (5xx) gives its key back, so the
retry runs. One that died before committing leaves `started` behind: after the request deadline it
is stale, and a retry takes it over. One that committed but whose answer could not be kept (the
process died in between) answers 409 IDEMPOTENT_REQUEST_APPLIED: read the resource instead.
"""

import contextlib
import hashlib
import json
import uuid
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, Integer, LargeBinary, String, delete, event, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, Session, mapped_column

from src.config import settings
from src.constants import IDEMPOTENCY_KEY_LIFETIME_HOURS, IDEMPOTENCY_MAX_STORED_BODY_BYTES
from src.database import Base, SessionFactory, UUIDPrimaryKey, insert_for, utcnow
from src.exceptions import (
    IdempotencyKeyReused,
    IdempotentReplay,
    IdempotentRequestApplied,
    IdempotentRequestInProgress,
)

KEY_LIFETIME = timedelta(hours=IDEMPOTENCY_KEY_LIFETIME_HOURS)
# Headers of the first answer that a replay repeats (the body says the rest).
REPLAYED_HEADERS = ("content-type", "location", "etag")
STARTED, COMMITTED, COMPLETED = "started", "committed", "completed"


class IdempotencyRecord(UUIDPrimaryKey, Base):
    __tablename__ = "idempotency_keys"
    __table_args__ = (
        Index("uq_idempotency_keys_user_id_key", "user_id", "key", unique=True),
        Index("ix_idempotency_keys_expires_at", "expires_at"),
    )

    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    key: Mapped[str] = mapped_column(String(255))
    # SHA-256 of what makes the request itself: method, path and body (see fingerprint_of).
    fingerprint: Mapped[str] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(20))
    response_status: Mapped[int | None] = mapped_column(Integer)
    response_headers: Mapped[dict[str, str] | None] = mapped_column(JSON)
    response_body: Mapped[bytes | None] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime] = mapped_column()


@dataclass(slots=True)
class KeyInUse:
    """The key this request holds, and whether its write has been committed."""

    record_id: uuid.UUID
    committed: bool = False


@dataclass(slots=True)
class IdempotencyState:
    """One request's part in this: set by the middleware, filled in once a key is taken."""

    held: KeyInUse | None = None


_state: ContextVar[IdempotencyState | None] = ContextVar("idempotency", default=None)


def enter_request() -> tuple[IdempotencyState, object]:
    state = IdempotencyState()
    return state, _state.set(state)


def leave_request(token: object) -> None:
    _state.reset(token)  # type: ignore[arg-type]


def fingerprint_of(method: str, path: str, body: bytes, *, json_body: bool) -> str:
    """The request as a retry must repeat it. A JSON body is compared as data (key order and
    spacing aside), anything else byte for byte; an upload passes its file's hash and fields."""
    if json_body and body:
        # Not JSON after all: compared as bytes (the route refuses it anyway).
        with contextlib.suppress(ValueError):
            body = json.dumps(json.loads(body), sort_keys=True, separators=(",", ":")).encode()
    digest = hashlib.sha256(f"{method} {path}\n".encode())
    digest.update(body)
    return digest.hexdigest()


async def begin(*, user_id: uuid.UUID, key: str, fingerprint: str, session_info: dict[str, Any]) -> None:
    """Takes `key` for this request, or raises what a retry gets instead (a replay, 409, 422).

    `session_info` is the request's own session's `info`: its commit will mark the key committed.
    """
    state = _state.get()
    if state is None:  # not within a request (the middleware is not there): nothing to remember
        return
    now = utcnow()
    async with SessionFactory() as session:
        record_id = await _insert(session, user_id=user_id, key=key, fingerprint=fingerprint, now=now)
        if record_id is None:
            record_id = await _take_over_or_refuse(
                session, user_id=user_id, key=key, fingerprint=fingerprint, now=now
            )
        await session.commit()
    state.held = KeyInUse(record_id)
    session_info[_SESSION_KEY] = state.held


async def _insert(
    session: AsyncSession, *, user_id: uuid.UUID, key: str, fingerprint: str, now: datetime
) -> uuid.UUID | None:
    table = IdempotencyRecord.__table__
    record_id = uuid.uuid4()
    inserted = await session.execute(
        insert_for(session, table)
        .values(
            id=record_id,
            user_id=user_id,
            key=key,
            fingerprint=fingerprint,
            state=STARTED,
            created_at=now,
            updated_at=now,
            expires_at=now + KEY_LIFETIME,
        )
        .on_conflict_do_nothing(index_elements=["user_id", "key"])
        .returning(table.c.id)
    )
    return inserted.scalar_one_or_none()


async def _take_over_or_refuse(
    session: AsyncSession, *, user_id: uuid.UUID, key: str, fingerprint: str, now: datetime
) -> uuid.UUID:
    record = await session.scalar(
        select(IdempotencyRecord)
        .where(IdempotencyRecord.user_id == user_id, IdempotencyRecord.key == key)
        .with_for_update()
    )
    if record is None:  # deleted meanwhile (its first request gave it back): take it afresh
        record_id = await _insert(session, user_id=user_id, key=key, fingerprint=fingerprint, now=now)
        if record_id is None:
            raise IdempotentRequestInProgress
        return record_id
    expired = record.expires_at <= now
    if not expired and record.fingerprint != fingerprint:
        raise IdempotencyKeyReused
    if not expired and record.state == COMPLETED:
        raise IdempotentReplay(
            status=record.response_status or 200,
            headers=record.response_headers or {},
            body=record.response_body or b"",
        )
    if not expired and record.state == COMMITTED:
        raise IdempotentRequestApplied
    stale = record.updated_at <= now - _longest_request()
    if not expired and not stale:
        raise IdempotentRequestInProgress
    # Expired, or its first request died before committing anything: this request takes it over.
    record.fingerprint, record.state, record.updated_at = fingerprint, STARTED, now
    record.created_at, record.expires_at = now, now + KEY_LIFETIME
    record.response_status = record.response_headers = record.response_body = None
    return record.id


def _longest_request() -> timedelta:
    """How long a request that has not committed may still be running (then its key is stale)."""
    return timedelta(seconds=settings.REQUEST_TIMEOUT_SECONDS * 2)


_SESSION_KEY = "idempotency_key"


@event.listens_for(Session, "before_commit")
def _mark_committed(session: Session) -> None:
    """In the request's own transaction: the key's write and its mark commit together or not at all."""
    held: KeyInUse | None = session.info.get(_SESSION_KEY)
    if held is not None and not held.committed:
        session.execute(
            update(IdempotencyRecord)
            .where(IdempotencyRecord.id == held.record_id)
            .values(state=COMMITTED, updated_at=utcnow())
        )


@event.listens_for(Session, "after_commit")
def _note_committed(session: Session) -> None:
    held: KeyInUse | None = session.info.get(_SESSION_KEY)
    if held is not None:
        held.committed = True


async def finish(
    state: IdempotencyState, *, status: int, headers: dict[str, str], body: bytes | None
) -> None:
    """Keeps the answer of the request that held a key; gives the key back when it wrote nothing and
    failed on the server's side (a retry must run again), so a 5xx is never replayed for nothing."""
    held = state.held
    if held is None:
        return
    async with SessionFactory() as session:
        if status >= 500 and not held.committed:
            await session.execute(delete(IdempotencyRecord).where(IdempotencyRecord.id == held.record_id))
        elif body is not None and len(body) <= IDEMPOTENCY_MAX_STORED_BODY_BYTES:
            await session.execute(
                update(IdempotencyRecord)
                .where(IdempotencyRecord.id == held.record_id)
                .values(
                    state=COMPLETED,
                    response_status=status,
                    response_headers={name: headers[name] for name in REPLAYED_HEADERS if name in headers},
                    response_body=body,
                    updated_at=utcnow(),
                )
            )
        await session.commit()


async def prune_expired(session: AsyncSession, *, now: datetime | None = None, max_rows: int) -> int:
    """Deletes up to `max_rows` keys past their lifetime (`python main.py prune`)."""
    expired = (
        select(IdempotencyRecord.id).where(IdempotencyRecord.expires_at < (now or utcnow())).limit(max_rows)
    )
    result = await session.execute(delete(IdempotencyRecord).where(IdempotencyRecord.id.in_(expired)))
    await session.commit()
    return result.rowcount or 0
