"""Versioned writes of studies and samples (If-Match): of two writers with the same version, exactly
one wins."""

import uuid
from collections.abc import Mapping
from typing import Any

from sqlalchemy import (
    ColumnElement,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession

from src.database import (
    utcnow,
)
from src.exceptions import AppError, PreconditionFailed
from src.study.constants import (
    WRITABLE_STATUSES,
)
from src.study.exceptions import (
    SampleNotFound,
    StudyNotFound,
    StudyReadOnly,
)
from src.study.models import (
    Sample,
    Study,
)

# Versions: every change increments one; a caller who names the version they read (If-Match)
# changes the row only if it is still at that version, checked inside the UPDATE itself so that
# of two concurrent writers with the same version exactly one wins.


def check_version(row: Study | Sample, expected_version: int | None) -> None:
    if expected_version is not None and expected_version != row.version:
        raise PreconditionFailed


async def write_versioned(
    session: AsyncSession,
    row: Study | Sample,
    *,
    expected_version: int | None,
    changes: Mapping[str, Any],
    only_if: tuple[ColumnElement[bool], ...] = (),
    while_writable: bool = False,
) -> None:
    """Applies `changes` and the next version to the row, refreshing the loaded object.

    `only_if` adds conditions the row must still meet when it is written; if it does not, nothing
    is written and the caller gets 412 as for a stale version. `while_writable` (a study's data)
    requires the study to be draft or active at the write itself, not only when it was read: a
    status change committed meanwhile makes it 409 STUDY_READ_ONLY.
    """
    check_version(row, expected_version)
    model, row_id = type(row), row.id
    condition = [model.id == row_id, *only_if]
    if while_writable:
        condition.append(study_is_writable())
    if expected_version is not None:
        condition.append(model.version == expected_version)
    statement = (
        update(model)
        .where(*condition)
        .values(**changes, version=model.version + 1, updated_at=utcnow())
        .returning(model)
        .execution_options(populate_existing=True, synchronize_session=False)
    )
    if (await session.execute(statement)).scalar_one_or_none() is None:
        await session.rollback()
        raise await why_not_written(session, model, row_id, while_writable=while_writable)


def study_is_writable() -> ColumnElement[bool]:
    return Study.status.in_(WRITABLE_STATUSES)


async def why_not_written(
    session: AsyncSession, model: type[Study | Sample], row_id: uuid.UUID, *, while_writable: bool
) -> AppError:
    """After a versioned write matched no row (and its rollback): gone (404), frozen meanwhile (409)
    or changed (412)."""
    if model is Sample:
        gone = await session.scalar(select(Sample.id).where(Sample.id == row_id)) is None
        return SampleNotFound() if gone else PreconditionFailed()
    status = await session.scalar(select(Study.status).where(Study.id == row_id))
    if status is None:
        return StudyNotFound()
    if while_writable and status not in WRITABLE_STATUSES:
        return StudyReadOnly()
    return PreconditionFailed()
