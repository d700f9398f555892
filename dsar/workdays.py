"""Chinese working days and the 15-working-day deadline.

A working day is Monday to Friday, minus the State Council's public holidays, plus its
adjusted working days (调休) that fall on weekends. The schedule is data (CalendarDay,
CalendarYear). A year without a loaded schedule never crashes anything: it is counted Monday
to Friday and every deadline reaching into it is *provisional* until the schedule arrives.

The index is a sorted array of working-day ordinals; a deadline is one bisect and one
lookup, and batches reuse results per distinct start date.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from django.conf import settings
from django.db.models import Count, Max
from django.utils import timezone

DEADLINE_WORKING_DAYS = 15
FIRST_YEAR = 2004
YEARS_AHEAD = 6  # how far past the last known year the Monday–Friday fallback reaches


def business_tz() -> ZoneInfo:
    return ZoneInfo(settings.QUANYI_BUSINESS_TZ)


def business_today(now: datetime | None = None) -> date:
    return (now or timezone.now()).astimezone(business_tz()).date()


def end_of_day(day: date) -> datetime:
    """23:59:59 of `day` in the business time zone, as an aware datetime."""
    return datetime.combine(day, time(23, 59, 59), tzinfo=business_tz())


@dataclass(frozen=True)
class Deadline:
    verified_on: date
    due_date: date
    due_at: datetime
    provisional: bool
    missing_years: tuple[int, ...]


class WorkdayIndex:
    def __init__(
        self,
        *,
        holidays: Iterable[date],
        workdays: Iterable[date],
        known_years: Iterable[int],
        last_year: int | None = None,
    ) -> None:
        self.known_years = frozenset(known_years)
        self.holidays = frozenset(holidays)
        self.workdays = frozenset(workdays)
        last = max([*self.known_years, date.today().year]) + YEARS_AHEAD  # noqa: DTZ011 - a year bound only
        if last_year:
            last = max(last, last_year)
        self.first, self.last = date(FIRST_YEAR, 1, 1), date(last, 12, 31)
        ords: list[int] = []
        day, one = self.first, timedelta(days=1)
        while day <= self.last:
            if day in self.workdays or (day.weekday() < 5 and day not in self.holidays):
                ords.append(day.toordinal())
            day += one
        self._ords = ords
        self._memo: dict[date, Deadline] = {}

    def is_working_day(self, day: date) -> bool:
        if day in self.workdays:
            return True
        return day.weekday() < 5 and day not in self.holidays

    def _check(self, day: date) -> None:
        if not (self.first <= day <= self.last - timedelta(days=60)):
            raise ValueError(f"{day} is outside the calendar ({self.first.year}–{self.last.year})")

    def add_working_days(self, start: date, n: int) -> date:
        """The n-th working day strictly after `start` (the start day never counts)."""
        self._check(start)
        i = bisect.bisect_right(self._ords, start.toordinal())
        return date.fromordinal(self._ords[i + n - 1])

    def working_days_between(self, start: date, end: date) -> int:
        """Working days in (start, end]; negative when end is before start."""
        if end >= start:
            return bisect.bisect_right(self._ords, end.toordinal()) - bisect.bisect_right(
                self._ords, start.toordinal()
            )
        return -self.working_days_between(end, start)

    def date_with_working_days_left(self, today: date, left: int) -> date:
        """The last due date that still leaves at most `left` working days after `today`."""
        i = bisect.bisect_right(self._ords, today.toordinal())
        return date.fromordinal(self._ords[i + left] - 1) if left >= 0 else today

    def deadline(self, verified_on: date, n: int = DEADLINE_WORKING_DAYS) -> Deadline:
        hit = self._memo.get(verified_on)
        if hit is not None and n == DEADLINE_WORKING_DAYS:
            return hit
        due = self.add_working_days(verified_on, n)
        # Only the counted days (the day after verification up to the due date) matter.
        first_counted = verified_on + timedelta(days=1)
        missing = tuple(y for y in range(first_counted.year, due.year + 1) if y not in self.known_years)
        result = Deadline(verified_on, due, end_of_day(due), bool(missing), missing)
        if n == DEADLINE_WORKING_DAYS:
            self._memo[verified_on] = result
        return result

    def deadlines(self, days: Sequence[date]) -> list[Deadline]:
        return [self.deadline(d) for d in days]


_cached: tuple[tuple[object, ...], WorkdayIndex] | None = None


def _version() -> tuple[object, ...]:
    from dsar.models import CalendarDay, CalendarYear

    years = CalendarYear.objects.aggregate(n=Count("year"), at=Max("loaded_at"))
    days = CalendarDay.objects.aggregate(n=Count("date"))
    return (years["n"], years["at"], days["n"])


def workday_index(*, refresh: bool = False) -> WorkdayIndex:
    """The process-wide index, rebuilt when the calendar tables changed (one cheap query)."""
    global _cached
    from dsar.models import CalendarDay, CalendarYear

    version = _version()
    if _cached is None or refresh or _cached[0] != version:
        rows = list(CalendarDay.objects.values_list("date", "kind"))
        index = WorkdayIndex(
            holidays=[d for d, k in rows if k == "holiday"],
            workdays=[d for d, k in rows if k == "workday"],
            known_years=CalendarYear.objects.values_list("year", flat=True),
        )
        _cached = (version, index)
    return _cached[1]


def working_days_left(due_date: date, *, today: date | None = None, index: WorkdayIndex | None = None) -> int:
    index = index or workday_index()
    return index.working_days_between(today or business_today(), due_date)
