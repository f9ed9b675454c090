"""Pruning of the auth module: rows that only grow and no longer change any answer (stale sign-in
throttles, long-ended sessions, long-rotated refresh tokens, expired link tokens). Each kind is
deleted in batches, one transaction a batch, the condition checked again by the DELETE itself (a row
touched since it was picked is kept), at most `max_rows` a kind per run."""

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, and_, delete, or_, select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession

from src.auth import throttles
from src.auth.config import auth_settings
from src.auth.constants import PRUNE_BATCH_ROWS, PRUNE_MAX_ROWS_PER_TABLE
from src.auth.models import AuthSession, LinkToken, LoginThrottle, RefreshToken
from src.database import utcnow


@dataclass(frozen=True, slots=True)
class PruneCounts:
    login_throttles: int
    sessions: int
    refresh_tokens: int
    link_tokens: int


def _stale_throttle(now: datetime) -> ColumnElement[bool]:
    """A throttle whose run of attempts is over and that holds no lock: the next attempt starts
    afresh at 1 whether the row is there or not (see throttles.reserve_password_attempt)."""
    throttle = LoginThrottle
    return and_(
        throttle.last_attempt_at < now - throttles.lockout(),
        or_(throttle.locked_until.is_(None), throttle.locked_until <= now),
    )


def _prunable_session(now: datetime) -> ColumnElement[bool]:
    """Ended (expired or revoked) longer than a refresh-token lifetime ago: no token of it works, and
    it is too old to count as a recent sign-in from its address (throttles.signed_in_recently_from)."""
    cutoff = now - timedelta(days=auth_settings.REFRESH_TOKEN_EXPIRE_DAYS)
    return or_(AuthSession.expires_at < cutoff, AuthSession.revoked_at < cutoff)


def _prunable_rotated_token(now: datetime) -> ColumnElement[bool]:
    """Rotated longer than a refresh-token lifetime ago. Shown again it is still refused, only as
    unknown: theft of a rotated token is detected (the session ended) within that lifetime."""
    cutoff = now - timedelta(days=auth_settings.REFRESH_TOKEN_EXPIRE_DAYS)
    return RefreshToken.rotated_at < cutoff


async def _prune_throttle_batch(session: AsyncSession, *, now: datetime, limit: int) -> int:
    keys = (
        await session.execute(
            select(LoginThrottle.email_hash, LoginThrottle.scope).where(_stale_throttle(now)).limit(limit)
        )
    ).all()
    if not keys:
        return 0
    result = await session.execute(
        delete(LoginThrottle).where(
            tuple_(LoginThrottle.email_hash, LoginThrottle.scope).in_([tuple(key) for key in keys]),
            _stale_throttle(now),
        )
    )
    await session.commit()
    return max(result.rowcount, 0)


async def _prune_session_batch(session: AsyncSession, *, now: datetime, limit: int) -> tuple[int, int]:
    """A batch of ended sessions and their refresh tokens (deleted first, not left to the cascade,
    so they are counted)."""
    ids = list(await session.scalars(select(AuthSession.id).where(_prunable_session(now)).limit(limit)))
    if not ids:
        return 0, 0
    tokens = await session.execute(delete(RefreshToken).where(RefreshToken.session_id.in_(ids)))
    sessions = await session.execute(
        delete(AuthSession).where(AuthSession.id.in_(ids), _prunable_session(now))
    )
    await session.commit()
    return max(sessions.rowcount, 0), max(tokens.rowcount, 0)


async def _prune_token_batch(session: AsyncSession, *, now: datetime, limit: int) -> int:
    picked = select(RefreshToken.id).where(_prunable_rotated_token(now)).limit(limit)
    ids = list(await session.scalars(picked))
    if not ids:
        return 0
    result = await session.execute(
        delete(RefreshToken).where(RefreshToken.id.in_(ids), _prunable_rotated_token(now))
    )
    await session.commit()
    return max(result.rowcount, 0)


async def _prune_link_token_batch(session: AsyncSession, *, now: datetime, limit: int) -> int:
    """Expired mailed tokens: refused anyway (find_link_token checks the expiry), so only clutter."""
    ids = list(await session.scalars(select(LinkToken.id).where(LinkToken.expires_at <= now).limit(limit)))
    if not ids:
        return 0
    result = await session.execute(
        delete(LinkToken).where(LinkToken.id.in_(ids), LinkToken.expires_at <= now)
    )
    await session.commit()
    return max(result.rowcount, 0)


async def in_batches(prune_batch: Any, *, batch_rows: int, max_rows: int) -> int:
    """Calls `prune_batch(limit)` until a batch finds fewer rows than asked or max_rows are gone."""
    total = 0
    while total < max_rows:
        limit = min(batch_rows, max_rows - total)
        deleted = await prune_batch(limit)
        total += deleted
        if deleted < limit:
            break
    return total


async def prune_auth_rows(
    session: AsyncSession,
    *,
    now: datetime | None = None,
    batch_rows: int = PRUNE_BATCH_ROWS,
    max_rows: int = PRUNE_MAX_ROWS_PER_TABLE,
) -> PruneCounts:
    """Deletes stale sign-in throttles, long-ended sessions (with their tokens), long-rotated
    refresh tokens and expired link tokens; at most `max_rows` of each kind, `batch_rows` per
    transaction."""
    now = now or utcnow()
    throttles = await in_batches(
        lambda limit: _prune_throttle_batch(session, now=now, limit=limit),
        batch_rows=batch_rows,
        max_rows=max_rows,
    )
    session_tokens = 0

    async def sessions_batch(limit: int) -> int:
        nonlocal session_tokens
        sessions, tokens = await _prune_session_batch(session, now=now, limit=limit)
        session_tokens += tokens
        return sessions

    sessions = await in_batches(sessions_batch, batch_rows=batch_rows, max_rows=max_rows)
    rotated = await in_batches(
        lambda limit: _prune_token_batch(session, now=now, limit=limit),
        batch_rows=batch_rows,
        max_rows=max_rows,
    )
    expired_links = await in_batches(
        lambda limit: _prune_link_token_batch(session, now=now, limit=limit),
        batch_rows=batch_rows,
        max_rows=max_rows,
    )
    return PruneCounts(
        login_throttles=throttles,
        sessions=sessions,
        refresh_tokens=session_tokens + rotated,
        link_tokens=expired_links,
    )
