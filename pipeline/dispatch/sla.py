"""Handling deadlines (处置时限) in working hours, kept simple on purpose.

A category's deadline is a number of working hours (`sla.deadline_hours`) counted from the moment
the case was delivered to the dispatch system. Working time is one daily window
(`sla.working_hours`, e.g. 09:00–18:00, in the site's time zone) on the working weekdays
(`sla.working_days`, Monday–Friday by default), minus the listed `sla.holidays`. No lunch breaks,
no make-up working weekends (调休) — list a make-up Saturday's neighbours as holidays or add the
weekday if your city needs it. Clock arithmetic is in local wall time.

Example: exposed garbage, 4 working hours, delivered Friday 16:30 → due Monday 11:30.

Pure: times in, times out.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from citypatrol.pipeline.config.models import Category, HoursRange, SlaConfig, category_of

MAX_DAYS = 3660  # a deadline further than ten years away is a configuration mistake


def deadline_hours(sla: SlaConfig, category: Category) -> float | None:
    """The category's deadline in working hours, or None (no deadline, or SLA off): a configured
    category has one only where `sla.deadline_hours` names it."""
    if not sla.enabled:
        return None
    return sla.deadline_hours.get(category_of(category))


def add_working_hours(start: datetime, hours: float, sla: SlaConfig, tz: ZoneInfo) -> datetime:
    """`start` plus `hours` of working time, as an aware datetime in `tz`."""
    if start.tzinfo is None:
        raise ValueError("start must be timezone-aware")
    window = HoursRange.parse(sla.working_hours)
    days, holidays = set(sla.working_days), set(sla.holidays)
    t = start.astimezone(tz)
    remaining = timedelta(hours=hours)
    for _ in range(MAX_DAYS):
        day = t.date()
        if day.isoweekday() in days and day not in holidays:
            open_ = datetime.combine(day, window.start, tzinfo=tz)
            close = datetime.combine(day, window.end, tzinfo=tz)
            t = max(t, open_)
            if t < close:
                if remaining <= close - t:
                    return t + remaining
                remaining -= close - t
        t = datetime.combine(day + timedelta(days=1), datetime.min.time(), tzinfo=tz)
    raise ValueError(f"no working time within {MAX_DAYS} days: check sla.working_days and sla.holidays")


def due_at(started_at: datetime, category: Category, sla: SlaConfig, tz: ZoneInfo) -> datetime | None:
    """When a case of this category delivered at `started_at` must be handled; None without a deadline."""
    hours = deadline_hours(sla, category)
    return None if hours is None else add_working_hours(started_at, hours, sla, tz)
