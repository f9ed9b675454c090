"""Samples: creating, editing and deleting one (checked against the study's fields, versioned, with
its counters and activity), and the pages of a study's samples."""

import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any

import anyio
from pydantic_core import from_json
from sqlalchemy import (
    ColumnElement,
    Row,
    Select,
    String,
    Text,
    bindparam,
    cast,
    delete,
    func,
    select,
    type_coerce,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from src.database import (
    count_up_to,
    escape_like,
    utcnow,
)
from src.exceptions import PreconditionFailed, is_lock_wait_failure
from src.schemas import PageParams
from src.study import sample_schema, sample_validation
from src.study.activity import record_activity
from src.study.constants import (
    FIELD_FILTER_PREFIX,
    MAX_FIELD_FILTERS,
    WRITABLE_STATUSES,
    ActivityAction,
    SampleSort,
    SampleStatus,
)
from src.study.counters import (
    add_to_created_counts,
    add_to_field_value_counts,
    add_to_sample_count,
    add_to_status_counts,
)
from src.study.exceptions import (
    InvalidFieldFilter,
    InvalidSampleValues,
    SampleIdTaken,
    SampleNotFound,
    StudyBusy,
    StudyReadOnly,
)
from src.study.models import (
    Sample,
    Study,
    StudyFieldValueCount,
)
from src.study.schemas import (
    SampleCreate,
    SampleUpdate,
)
from src.study.service import StudyAccess
from src.study.utils import (
    changed_values,
    choice_field_names,
)
from src.study.versions import check_version, why_not_written, write_versioned

# Samples.


async def compile_patterns_off_the_loop(fields: object) -> None:
    """Compiles the text patterns of a submitted (still unchecked) schema in a worker thread: each
    may take milliseconds, and the schema's check on the event loop then finds them compiled."""
    await anyio.to_thread.run_sync(sample_schema.compile_schema_patterns, fields)


def validator_of(study: Study) -> sample_validation.SampleValidator:
    """The study's compiled schema, compiled once per study version (every schema change is one)."""
    return sample_validation.cached_validator((study.id, study.version), study.sample_fields)


def _checked_values(study: Study, values: Mapping[str, Any], *, partial: bool) -> dict[str, Any]:
    normalised, issues = validator_of(study).validate(values, partial=partial)
    if issues:
        raise InvalidSampleValues(
            errors=[
                {"loc": ["body", "values", issue.field], "msg": issue.message, "code": issue.code}
                for issue in issues
            ]
        )
    return normalised


async def _sample_id_taken(
    session: AsyncSession, *, study_id: uuid.UUID, normalized: str, other_than: uuid.UUID | None = None
) -> bool:
    query = select(Sample.id).where(Sample.study_id == study_id, Sample.sample_id_normalized == normalized)
    if other_than is not None:
        query = query.where(Sample.id != other_than)
    return await session.scalar(query) is not None


@asynccontextmanager
async def _sample_write(session: AsyncSession) -> AsyncIterator[None]:
    """Around a sample write and its commit: a sample_id taken by a concurrent request is 409
    SAMPLE_ID_TAKEN (the only unique constraint a sample write can break is (study_id,
    sample_id_normalized)); a sample, or a new sample's key, held by an import or another writer
    past the lock timeout is 409 STUDY_BUSY. Either way nothing was written."""
    try:
        yield
    except IntegrityError:
        await session.rollback()
        raise SampleIdTaken from None
    except DBAPIError as error:
        if not is_lock_wait_failure(error):
            raise
        await session.rollback()
        raise StudyBusy from None


async def _lock_writable_study(session: AsyncSession, study: Study) -> None:
    """For a sample edit: the study row share-locked until the commit (PostgreSQL; SQLite serializes
    writers), still draft or active (else 409) and with the fields the values were checked against."""
    current = (
        await session.execute(
            select(Study.status, Study.sample_fields).where(Study.id == study.id).with_for_update(read=True)
        )
    ).first()
    if current is None or current.status not in WRITABLE_STATUSES:
        await session.rollback()
        raise StudyReadOnly
    await _confirm_fields(session, study, current.sample_fields)


async def _confirm_fields(session: AsyncSession, study: Study, current_fields: list[dict[str, Any]]) -> None:
    """The values were validated against the fields loaded with the study; they must still be the fields."""
    if current_fields != study.sample_fields:
        await session.rollback()
        raise PreconditionFailed(
            "The study's sample fields changed while this was being saved; nothing was changed."
        )


async def create_sample(session: AsyncSession, *, access: StudyAccess, data: SampleCreate) -> Sample:
    study = access.study
    values = _checked_values(study, data.values, partial=False)
    normalized = sample_validation.normalize_sample_id(data.sample_id)
    if await _sample_id_taken(session, study_id=study.id, normalized=normalized):
        raise SampleIdTaken
    now = utcnow()
    sample = Sample(
        id=uuid.uuid4(),
        study_id=study.id,
        sample_id=data.sample_id,
        sample_id_normalized=normalized,
        status=data.status,
        values=values,
        created_by=access.user.id,
        created_at=now,
        updated_at=now,
        version=1,
    )
    async with _sample_write(session):
        session.add(sample)
        await session.flush()  # the new sample's key before the study's row (add_to_sample_count)
        await _confirm_fields(session, study, await add_to_sample_count(session, study_id=study.id, delta=1))
        await add_to_status_counts(session, study_id=study.id, deltas={data.status: 1})
        await add_to_created_counts(session, study_id=study.id, deltas={now.date(): 1})
        await add_to_field_value_counts(session, study=study, changes=[(None, values)])
        record_activity(
            session,
            study_id=study.id,
            actor=access.user,
            action=ActivityAction.SAMPLE_CREATED,
            sample_pk=sample.id,
            details={"sample_id": sample.sample_id, "status": sample.status, "values": values},
        )
        await session.commit()
    return sample


async def get_sample(session: AsyncSession, *, study: Study, sample_pk: uuid.UUID) -> Sample | None:
    return await session.scalar(select(Sample).where(Sample.id == sample_pk, Sample.study_id == study.id))


async def _locked_sample(session: AsyncSession, sample: Sample) -> Sample:
    """The sample as committed now, locked until the commit (PostgreSQL): a merge starts from it, so a
    concurrent edit of another key is kept, not reverted. 404 if it was deleted meanwhile."""
    current = await session.scalar(
        select(Sample)
        .where(Sample.id == sample.id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    if current is None:
        await session.rollback()
        raise SampleNotFound
    return current


def _merged_values(study: Study, sample: Sample, patch: Mapping[str, Any]) -> dict[str, Any]:
    """The stored values with the patch applied: given keys replace, null clears, the rest stay."""
    merged = {**sample.values, **_checked_values(study, patch, partial=True)}
    return {name: value for name, value in merged.items() if value is not None}


async def update_sample(
    session: AsyncSession,
    *,
    access: StudyAccess,
    sample: Sample,
    data: SampleUpdate,
    expected_version: int | None,
) -> Sample:
    async with _sample_write(session):
        sample = await _locked_sample(session, sample)  # the sample before the study (add_to_sample_count)
        await _lock_writable_study(session, access.study)
        check_version(sample, expected_version)
        requested = data.model_dump(exclude_unset=True, exclude={"values"})
        if data.values is not None:
            requested["values"] = _merged_values(access.study, sample, data.values)
        if "sample_id" in requested:
            requested["sample_id_normalized"] = sample_validation.normalize_sample_id(requested["sample_id"])
            if await _sample_id_taken(
                session,
                study_id=sample.study_id,
                normalized=requested["sample_id_normalized"],
                other_than=sample.id,
            ):
                raise SampleIdTaken
        before = {key: getattr(sample, key) for key in requested}
        old, new = changed_values(before, requested)
        if not new:
            return sample
        await write_versioned(session, sample, expected_version=expected_version, changes=new)
        if "status" in new:
            await add_to_status_counts(
                session, study_id=sample.study_id, deltas={old["status"]: -1, new["status"]: 1}
            )
        if "values" in new:
            await add_to_field_value_counts(
                session, study=access.study, changes=[(old["values"], new["values"])]
            )
        record_activity(
            session,
            study_id=sample.study_id,
            actor=access.user,
            action=ActivityAction.SAMPLE_UPDATED,
            sample_pk=sample.id,
            details={"sample_id": sample.sample_id, **_change_details(old, new)},
        )
        await session.commit()
    return sample


def _change_details(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """Old and new of what changed; for values, only the fields that changed."""
    old.pop("sample_id_normalized", None)
    new.pop("sample_id_normalized", None)
    if "values" in new:
        old["values"], new["values"] = changed_values(old["values"] or {}, new["values"])
    return {"old": old, "new": new}


async def delete_sample(
    session: AsyncSession, *, access: StudyAccess, sample: Sample, expected_version: int | None
) -> None:
    check_version(sample, expected_version)
    sample_id = sample.id
    condition = [Sample.id == sample_id]
    if expected_version is not None:
        condition.append(Sample.version == expected_version)
    async with _sample_write(session):
        # What the row held when deleted, not when read: an edit committed in between is counted off
        # too. The sample before the study's row (add_to_sample_count).
        gone = (
            await session.execute(
                delete(Sample).where(*condition).returning(Sample.sample_id, Sample.status, Sample.values)
            )
        ).first()
        if gone is None:
            await session.rollback()
            raise await why_not_written(session, Sample, sample_id, while_writable=False)
        await add_to_sample_count(session, study_id=sample.study_id, delta=-1)
        await add_to_status_counts(session, study_id=sample.study_id, deltas={gone.status: -1})
        await add_to_created_counts(session, study_id=sample.study_id, deltas={sample.created_at.date(): -1})
        await add_to_field_value_counts(session, study=access.study, changes=[(gone.values, None)])
        record_activity(
            session,
            study_id=sample.study_id,
            actor=access.user,
            action=ActivityAction.SAMPLE_DELETED,
            sample_pk=sample.id,
            details={"sample_id": gone.sample_id, "status": gone.status, "values": gone.values},
        )
        await session.commit()


_SAMPLE_SORT_COLUMNS = {
    SampleSort.SAMPLE_ID: Sample.sample_id_normalized.asc(),
    SampleSort.SAMPLE_ID_DESC: Sample.sample_id_normalized.desc(),
    SampleSort.STATUS: Sample.status.asc(),
    SampleSort.STATUS_DESC: Sample.status.desc(),
    SampleSort.CREATED_AT: Sample.created_at.asc(),
    SampleSort.NEWEST_FIRST: Sample.created_at.desc(),
    SampleSort.UPDATED_AT: Sample.updated_at.asc(),
    SampleSort.RECENTLY_UPDATED: Sample.updated_at.desc(),
}


def field_filter_values(*, study: Study, filters: list[tuple[str, str]]) -> dict[str, object]:
    """`field.<name>=<value>` filters as {field name: the stored JSON value it must equal}.
    Unknown names and bad values are 422."""
    if len(filters) > MAX_FIELD_FILTERS:
        raise InvalidFieldFilter(f"At most {MAX_FIELD_FILTERS} `field.<name>` filters.")
    validator = validator_of(study)
    wanted: dict[str, object] = {}
    errors: list[dict[str, Any]] = []
    for parameter, raw in filters:
        loc = ["query", f"{FIELD_FILTER_PREFIX}{parameter}"]
        try:
            value = validator.coerce_filter_value(parameter, raw)
        except ValueError as error:
            errors.append({"loc": loc, "msg": str(error), "code": "invalid_filter"})
            continue
        name = validator.field_named(parameter)
        # The same field twice is one condition; two different values of it could match nothing.
        if wanted.setdefault(name, value) != value:
            errors.append(
                {"loc": loc, "msg": f"{name} is filtered on with two values", "code": "invalid_filter"}
            )
    if errors:
        raise InvalidFieldFilter(errors=errors)
    return wanted


def _value_equals(session: AsyncSession, name: str, value: object) -> ColumnElement[bool]:
    """A field filter as a condition on `values`: JSONB containment on PostgreSQL (answered by the
    GIN index), json_extract on SQLite."""
    if session.get_bind().dialect.name == "postgresql":
        # type_coerce, not CAST: the column already is JSONB, and a bare `values @>` uses the GIN index.
        return type_coerce(Sample.values, JSONB).contains({name: value})
    # Field names are letters, digits and `_` (checked when the schema is set): safe in a JSON path.
    return func.json_extract(Sample.values, f"$.{name}") == value


def _is_one_choice(study: Study, wanted: Mapping[str, object]) -> bool:
    return len(wanted) == 1 and next(iter(wanted)) in choice_field_names(study.sample_fields)


# Built once: a filtered samples page asks it on every request.
_SAMPLES_WITH_CHOICE = select(StudyFieldValueCount.count).where(
    StudyFieldValueCount.study_id == bindparam("study_id"),
    StudyFieldValueCount.field == bindparam("field"),
    StudyFieldValueCount.value == bindparam("value"),
)


async def _samples_with_choice(
    session: AsyncSession, *, study_id: uuid.UUID, name: str, choice: object
) -> int:
    """The study's samples whose choice field `name` holds `choice`: its maintained counter, exact
    and one row (counting them reads every match, ~40,000 rows of the big study to stop at the cap)."""
    params = {"study_id": study_id, "field": name, "value": str(choice)}
    return await session.scalar(_SAMPLES_WITH_CHOICE, params) or 0


# What a samples page shows of each sample, in the order of its JSON (the router's SampleRead):
# read as plain rows, not ORM objects, since a page only serialises them (a tenth of its CPU went on
# building 50 objects nothing changes). `values` comes as its JSON text, parsed by pydantic-core's
# (compiled) parser: the driver's stdlib json.loads of 50 values cost ~370 µs a page, pydantic-core
# ~110 µs, and both give the same dicts in the same key order.
LISTED_SAMPLE_COLUMNS = (
    Sample.id,
    Sample.study_id,
    Sample.sample_id,
    # The status as its text, which is how SampleRead writes it: no enum made of each row's.
    type_coerce(Sample.status, String).label("status"),
    cast(Sample.values, Text).label("values"),
    Sample.source_file_id,
    Sample.created_by,
    Sample.created_at,
    Sample.updated_at,
    Sample.version,
)


def _page_query(sort: SampleSort) -> Select:
    """A study's samples page in `sort`: the study bound as `study_id`, the page as `offset` and
    `limit`; a filtered page adds its conditions."""
    return (
        select(*LISTED_SAMPLE_COLUMNS)
        .where(Sample.study_id == bindparam("study_id"))
        .order_by(_SAMPLE_SORT_COLUMNS[sort], Sample.id)
        .offset(bindparam("offset"))
        .limit(bindparam("limit"))
    )


# Built once per sort: an unfiltered page, the most asked, only binds its values (building the
# statement and its cache key was about a sixth of the page's own CPU).
_PAGES = {sort: _page_query(sort) for sort in SampleSort}


# A filtered page's total when the filter is one choice: its counter, read by the page's own
# statement as one more column (bound as `field` and `value`), not by a round trip of its own.
_TOTAL_OF_CHOICE = _SAMPLES_WITH_CHOICE.scalar_subquery().label("total_of_choice")
_LISTED_KEYS = [column.key for column in LISTED_SAMPLE_COLUMNS]


def _listed_samples(rows: Sequence[Row[Any]]) -> list[dict[str, Any]]:
    """The page's rows as SampleRead's fields, of its types: the keys taken once, not per row
    (Row._asdict builds a key view per row), each `values` text parsed. A column after
    LISTED_SAMPLE_COLUMNS (_TOTAL_OF_CHOICE) is left out."""
    items = [dict(zip(_LISTED_KEYS, row)) for row in rows]  # noqa: B905 (shorter on purpose)
    for item in items:
        item["values"] = from_json(item["values"])
    return items


async def list_samples(
    session: AsyncSession,
    *,
    study: Study,
    page: PageParams,
    status: SampleStatus | None,
    sample_id_prefix: str | None,
    field_filters: list[tuple[str, str]],
    sort: SampleSort,
) -> tuple[list[dict[str, Any]], int, bool]:
    """A page of samples as dicts of SampleRead's fields (LISTED_SAMPLE_COLUMNS). Unfiltered, the
    total is the study's maintained count, and so is it filtered on one choice field alone (its
    maintained per-choice count); otherwise it is counted up to the cap."""
    wanted = field_filter_values(study=study, filters=field_filters)
    conditions = [_value_equals(session, name, value) for name, value in wanted.items()]
    if status is not None:
        conditions.append(Sample.status == status)
    if sample_id_prefix:
        prefix = escape_like(sample_validation.normalize_sample_id(sample_id_prefix))
        conditions.append(Sample.sample_id_normalized.like(f"{prefix}%", escape="\\"))
    statement = _PAGES[sort].where(*conditions) if conditions else _PAGES[sort]
    params: dict[str, Any] = {"study_id": study.id, "offset": page.offset, "limit": page.page_size}
    one_choice = len(conditions) == 1 and _is_one_choice(study, wanted)
    if one_choice:
        ((name, choice),) = wanted.items()
        statement = statement.add_columns(_TOTAL_OF_CHOICE)
        params |= {"field": name, "value": str(choice)}
    # On the session's connection, as Core: the rows need none of the ORM's execution and loading.
    connection = await session.connection()
    rows = (await connection.execute(statement, params)).all()
    if not conditions:
        total, total_is_exact = study.sample_count, True
    elif one_choice:
        # A page past the last sample has no row to bring the count: read on its own then.
        total = (
            (rows[0].total_of_choice or 0)
            if rows
            else await _samples_with_choice(session, study_id=study.id, name=name, choice=choice)
        )
        total_is_exact = True
    else:
        counted = select(Sample.id).where(Sample.study_id == study.id, *conditions)
        total, total_is_exact = await count_up_to(session, counted)
    return _listed_samples(rows), total, total_is_exact
