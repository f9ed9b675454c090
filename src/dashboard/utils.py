"""Pure helpers of the dashboard: time windows, series with every day present, the ETag of an answer."""

import hashlib
from collections.abc import Mapping
from datetime import date, datetime, timedelta
from typing import Any

from pydantic import TypeAdapter

_TIMESTAMP = TypeAdapter(datetime)


def first_day(today: date, days: int) -> date:
    """The first day of a window of `days` days ending today (inclusive)."""
    return today - timedelta(days=days - 1)


def daily_series(counts: Mapping[date, int], *, first: date, last: date) -> list[dict[str, Any]]:
    """Every day from first to last, a day without samples as 0."""
    span = (last - first).days + 1
    days = (first + timedelta(days=offset) for offset in range(span))
    return [{"date": day, "count": counts.get(day, 0)} for day in days]


def monday_of(day: date) -> date:
    return day - timedelta(days=day.weekday())


def first_week(today: date, days: int) -> date:
    """The Monday of the first of the weeks a `days`-day window covers, counted in whole weeks that
    end with the current one: 84 days are the 12 weeks up to this one, whatever today's weekday."""
    weeks = -(-days // 7)
    return monday_of(today) - timedelta(weeks=weeks - 1)


def weekly_series(counts: Mapping[date, int], *, first_week: date, last_week: date) -> list[dict[str, Any]]:
    """Per-day counts folded into weeks starting on Monday; every week present, zeros included."""
    weeks: dict[date, int] = {}
    week = first_week
    while week <= last_week:
        weeks[week] = 0
        week += timedelta(days=7)
    for day, count in counts.items():
        week = monday_of(day)
        if week in weeks:
            weeks[week] += count
    return [{"week_start": week, "count": count} for week, count in weeks.items()]


def figures_etag(figures: bytes) -> str:
    """A strong tag over an answer's figures (its JSON without the timestamp): same figures, same tag."""
    return f'"{hashlib.sha256(figures).hexdigest()[:32]}"'


def with_generated_at(figures: bytes, generated_at: datetime) -> bytes:
    """The whole answer from its figures' JSON (an object) and its timestamp, which the answer models
    hold as their last field: the answer is then serialised once, not once for the tag and again for
    the body (tests/dashboard/test_etag.py checks the bytes equal pydantic's own dump)."""
    return b'%s,"generated_at":%s}' % (figures[:-1], _TIMESTAMP.dump_json(generated_at))
