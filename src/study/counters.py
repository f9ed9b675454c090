"""The maintained counters of a study's samples (per study, status, day and choice): a dashboard or
a page reads a row instead of counting, and every sample write changes them in its own transaction."""

import uuid
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from sqlalchemy import (
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession

from src.database import (
    Base,
    insert_for,
)
from src.study.constants import (
    SampleStatus,
)
from src.study.exceptions import (
    StudyReadOnly,
)
from src.study.models import (
    Study,
    StudyDailySampleCount,
    StudyFieldValueCount,
    StudySampleCount,
)
from src.study.utils import (
    ValuesChange,
    field_value_deltas,
)
from src.study.versions import study_is_writable


async def add_to_sample_count(
    session: AsyncSession, *, study_id: uuid.UUID, delta: int
) -> list[dict[str, Any]]:
    """Keeps the study's maintained sample count; call it in the transaction that adds or removes samples,
    after writing them. Lock order, the same for every writer: the sample rows first, then the
    study's row, then the counter rows in key order. An import writes its samples for minutes and
    takes the study's row only at its end; a writer that took the study's row and then waited for a
    sample the import holds would deadlock with it, so no writer does that.

    Returns the study's sample fields as they are now: the row stays locked until the commit, so a
    caller that validated against these fields knows no schema change can slip in between. The study
    must be draft or active at this moment, whatever it was when read: else the transaction is rolled
    back and StudyReadOnly (409) raised.
    """
    result = await session.execute(
        update(Study)
        .where(Study.id == study_id, study_is_writable())
        .values(sample_count=Study.sample_count + delta)
        .returning(Study.sample_fields)
        .execution_options(synchronize_session=False)
    )
    fields = result.scalar_one_or_none()
    if fields is None:
        await session.rollback()
        raise StudyReadOnly
    return fields


async def add_to_status_counts(
    session: AsyncSession, *, study_id: uuid.UUID, deltas: Mapping[str, int]
) -> None:
    """Keeps the study's maintained per-status sample counts; call it once per change (a bulk import:
    once per batch) in the transaction that writes the samples, after the study row is locked."""
    await _add_to_counters(
        session,
        StudySampleCount,
        study_id,
        {(SampleStatus(status),): delta for status, delta in deltas.items()},
    )


async def add_to_created_counts(
    session: AsyncSession, *, study_id: uuid.UUID, deltas: Mapping[date, int]
) -> None:
    """Keeps the study's maintained samples-per-creation-day counts (UTC days), like the status counts."""
    await _add_to_counters(
        session, StudyDailySampleCount, study_id, {(day,): delta for day, delta in deltas.items()}
    )


async def add_to_field_value_counts(
    session: AsyncSession, *, study: Study, changes: Iterable[ValuesChange]
) -> None:
    """Keeps the study's maintained per-field counts (filled, per choice), like the status counts:
    `changes` are (old values, new values) of the samples written, None for a sample created or
    deleted; the study's fields must be the ones the values were checked against (the row is locked)."""
    await _add_to_counters(
        session, StudyFieldValueCount, study.id, field_value_deltas(study.sample_fields, changes)
    )


@dataclass(slots=True)
class CountChanges:
    """How a bulk write moves the study's maintained counts, gathered over the whole write and applied
    once at its end (apply_count_changes): an import then holds the study's row and its counter rows
    for its commit only, not for its minutes of writing samples, and sample edits run beside it."""

    samples: int = 0
    statuses: Counter[str] = field(default_factory=Counter)
    created: Counter[date] = field(default_factory=Counter)
    field_values: Counter[tuple[str, str]] = field(default_factory=Counter)

    def add_values_changes(self, study: Study, changes: Iterable[ValuesChange]) -> None:
        self.field_values.update(field_value_deltas(study.sample_fields, changes))


async def apply_count_changes(
    session: AsyncSession, *, study_id: uuid.UUID, changes: CountChanges
) -> list[dict[str, Any]]:
    """The gathered changes applied, the study's row first then its counters (add_to_sample_count
    says why that order); returns the study's sample fields as they are now, StudyReadOnly when the
    study is no longer draft or active."""
    fields = await add_to_sample_count(session, study_id=study_id, delta=changes.samples)
    await add_to_status_counts(session, study_id=study_id, deltas=changes.statuses)
    await add_to_created_counts(session, study_id=study_id, deltas=changes.created)
    await _add_to_counters(session, StudyFieldValueCount, study_id, changes.field_values)
    return fields


async def _add_to_counters(
    session: AsyncSession, model: type[Base], study_id: uuid.UUID, deltas: Mapping[tuple[Any, ...], int]
) -> None:
    """Adds each delta to its counter row (study_id, *key) of `model`'s table, creating the rows missing:
    one multi-row upsert, so concurrent writers of one study (sample edits only share-lock it) cannot
    both insert a row; the rows go in key order, so two writers lock them in the same order."""
    table = model.__table__
    keys = [column.name for column in table.primary_key.columns if column.name != "study_id"]
    rows = [
        {"study_id": study_id, **dict(zip(keys, key, strict=True)), "count": delta}
        for key, delta in sorted(deltas.items())
        if delta
    ]
    if not rows:
        return
    statement = insert_for(session, table)
    await session.execute(
        statement.values(rows).on_conflict_do_update(
            index_elements=["study_id", *keys], set_={"count": table.c["count"] + statement.excluded["count"]}
        )
    )
