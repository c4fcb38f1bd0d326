"""An injectable clock. Time is stored in UTC and shown (and counted per day/month) in WIB."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Protocol
from zoneinfo import ZoneInfo

WIB = ZoneInfo("Asia/Jakarta")


class Clock(Protocol):
    def now(self) -> datetime:
        """The current time, timezone-aware, in UTC."""
        ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


class FrozenClock:
    """A clock that only moves when told to (tests, scripted conversations)."""

    def __init__(self, at: datetime | None = None) -> None:
        self._now = (at or datetime(2026, 1, 15, 3, 0, tzinfo=UTC)).astimezone(UTC)

    def now(self) -> datetime:
        return self._now

    def set(self, at: datetime) -> None:
        if at.tzinfo is None:
            raise ValueError("FrozenClock needs an aware datetime")
        self._now = at.astimezone(UTC)

    def advance(self, delta: timedelta) -> None:
        self._now += delta


def as_utc(value: datetime) -> datetime:
    """Normalise a datetime read back from storage (SQLite drops the tzinfo) to aware UTC."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def month_key(at: datetime, tz: ZoneInfo = WIB) -> int:
    """The calendar month (in WIB) as YYYYMM: the period monthly caps are counted in."""
    local = as_utc(at).astimezone(tz)
    return local.year * 100 + local.month


def local_day_bounds(at: datetime, tz: ZoneInfo = WIB) -> tuple[datetime, datetime]:
    """UTC start and end of the calendar day (in ``tz``) containing ``at``."""
    day: date = as_utc(at).astimezone(tz).date()
    start = datetime(day.year, day.month, day.day, tzinfo=tz)
    return start.astimezone(UTC), (start + timedelta(days=1)).astimezone(UTC)
