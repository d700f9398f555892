from __future__ import annotations

import json
from datetime import date, timedelta
from pathlib import Path

import chinese_calendar
import pytest
from django.utils import translation

from dsar.workdays import WorkdayIndex, workday_index
from tests.conftest import ALL, manage

pytestmark = pytest.mark.django_db(databases=ALL)


@pytest.mark.parametrize(
    ("verified", "due"),
    [
        # National Day + Mid-autumn 2025: Oct 1-8 off, Sun Sep 28 and Sat Oct 11 are working days.
        (date(2025, 9, 26), date(2025, 10, 23)),
        (date(2025, 9, 30), date(2025, 10, 28)),
        (date(2025, 10, 3), date(2025, 10, 28)),  # verified on a holiday: same as from Sep 30
        # New Year 2026: Jan 1-3 off, Sun Jan 4 is a working day.
        (date(2026, 1, 1), date(2026, 1, 22)),
        (date(2025, 12, 31), date(2026, 1, 22)),
        # Spring Festival 2026: Feb 15-23 off, Sat Feb 14 and Sat Feb 28 are working days.
        (date(2026, 2, 13), date(2026, 3, 12)),
        (date(2026, 2, 10), date(2026, 3, 9)),
        # Labour Day 2025: May 1-5 off, Sun Apr 27 is a working day.
        (date(2025, 4, 25), date(2025, 5, 20)),
        # An ordinary fortnight.
        (date(2026, 11, 2), date(2026, 11, 23)),
    ],
)
def test_deadline_is_the_fifteenth_working_day_after_verification(verified: date, due: date) -> None:
    deadline = workday_index().deadline(verified)

    assert deadline.due_date == due
    assert deadline.provisional is False
    assert deadline.due_at.isoformat() == f"{due.isoformat()}T23:59:59+08:00"


def test_the_adjusted_working_days_are_working_days_and_holidays_are_not() -> None:
    index = workday_index()
    assert index.is_working_day(date(2025, 9, 28))  # Sunday, 调休
    assert index.is_working_day(date(2026, 2, 28))  # Saturday, 调休
    assert not index.is_working_day(date(2025, 10, 1))
    assert not index.is_working_day(date(2026, 2, 16))
    assert not index.is_working_day(date(2026, 11, 21))  # an ordinary Saturday


def test_agrees_with_chinese_calendar_on_every_day_of_2024_and_2025() -> None:
    # chinese-calendar's find_workday(n, d) counts the first working day on or after d as
    # day 0, so it equals ours for a working day d and is one day late for a holiday d.
    index = workday_index()
    day = date(2024, 1, 1)
    while day <= date(2025, 12, 31):
        expected_n = 15 if chinese_calendar.is_workday(day) else 14
        assert index.deadline(day).due_date == chinese_calendar.find_workday(expected_n, day), day
        day += timedelta(days=1)


def test_a_year_without_a_schedule_counts_monday_to_friday_and_is_provisional() -> None:
    index = workday_index()

    d = index.deadline(date(2026, 12, 15))

    assert d.due_date == date(2027, 1, 5)  # Jan 1 2027, a Friday, counted as a working day
    assert d.provisional is True
    assert d.missing_years == (2027,)
    assert index.deadline(date(2026, 12, 31)).provisional is True
    assert index.deadline(date(2026, 11, 20)).provisional is False


def test_chinese_calendar_itself_cannot_answer_for_2027() -> None:
    with pytest.raises(NotImplementedError):
        chinese_calendar.is_workday(date(2027, 1, 4))


def test_working_days_between_counts_the_end_and_not_the_start() -> None:
    index = workday_index()
    assert index.working_days_between(date(2025, 9, 30), date(2025, 10, 9)) == 1
    assert index.working_days_between(date(2025, 10, 9), date(2025, 9, 30)) == -1
    assert index.working_days_between(date(2026, 11, 23), date(2026, 11, 23)) == 0
    # After Friday Sep 26 2025 the working days are Sep 28 (Sun, 调休), 29, 30, then Oct 9:
    # any due date up to Oct 8 leaves at most 3.
    assert index.date_with_working_days_left(date(2025, 9, 26), 3) == date(2025, 10, 8)


def test_the_index_is_fast_enough_for_a_million_deadlines_by_construction() -> None:
    index = WorkdayIndex(holidays=[], workdays=[], known_years=range(2004, 2027))
    days = [date(2025, 1, 1) + timedelta(days=i % 700) for i in range(50_000)]
    results = index.deadlines(days)
    assert len(results) == 50_000
    assert results[0].due_date == date(2025, 1, 22)


def _schedule(tmp_path: Path, payload: object) -> str:
    path = tmp_path / "schedule.json"
    path.write_text(json.dumps(payload, ensure_ascii=False) if not isinstance(payload, str) else payload)
    return str(path)


SCHEDULE_2027 = {
    "year": 2027,
    "holidays": {"2027-01-01": "元旦", "2027-02-05": "春节", "2027-02-08": "春节"},
    "workdays": {"2027-02-20": "春节调休"},
}


@pytest.mark.django_db(transaction=True, databases=ALL)
def test_deadline_command_prints_the_due_date_and_provisional(tmp_path: Path) -> None:
    ok = manage("deadline", "2025-09-30")
    provisional = manage("deadline", "2026-12-15")
    bad = manage("deadline", "2025-02-30")

    assert ok.returncode == 0 and ok.stdout.startswith("2025-10-28 23:59:59")
    assert "provisional" not in ok.stdout
    assert provisional.stdout.startswith("2027-01-05") and "provisional" in provisional.stdout
    assert "2027" in provisional.stdout
    assert bad.returncode != 0 and "not a date" in bad.stderr and "Traceback" not in bad.stderr

    loaded = manage("import_workdays", _schedule(tmp_path, SCHEDULE_2027))
    assert loaded.returncode == 0, loaded.stderr
    after = manage("deadline", "2026-12-15")
    assert after.stdout.startswith("2027-01-06") and "provisional" not in after.stdout


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ("{not json", "not valid JSON"),
        ([], "must be a JSON object"),
        ({"year": "2027"}, "'year' must be a year"),
        ({"year": 2027, "holidays": {"2028-01-01": "元旦"}}, "not in 2027"),
        ({"year": 2027, "holidays": {"2027-02-30": "x"}}, "is not a date"),
        ({"year": 2027, "holidays": {"2027-01-01": "元旦"}, "workdays": {"2027-01-01": "x"}}, "both"),
        ({"year": 2027, "holidays": {"2027-01-01": ""}}, "needs a name"),
        ({"year": 2027, "extra": 1}, "Unknown keys"),
    ],
)
def test_import_workdays_rejects_malformed_schedules_with_a_message(
    tmp_path: Path, payload: object, message: str
) -> None:
    from django.core.management import CommandError, call_command

    from dsar.models import CalendarYear

    with pytest.raises(CommandError, match=message), translation.override("en"):
        call_command("import_workdays", _schedule(tmp_path, payload))
    assert not CalendarYear.objects.filter(year=2027).exists()


def test_import_workdays_is_idempotent(tmp_path: Path) -> None:
    from io import StringIO

    from django.core.management import call_command

    from core.models import AuditEntry
    from dsar.models import CalendarDay

    path = _schedule(tmp_path, SCHEDULE_2027)
    call_command("import_workdays", path, stdout=StringIO())
    entries = AuditEntry.objects.count()
    out = StringIO()
    call_command("import_workdays", path, stdout=out)

    assert "nothing changed" in out.getvalue()
    assert AuditEntry.objects.count() == entries
    assert CalendarDay.objects.filter(date__year=2027).count() == 4


def test_import_workdays_names_a_missing_file() -> None:
    from django.core.management import CommandError, call_command

    with pytest.raises(CommandError, match="No such file"):
        call_command("import_workdays", "/nonexistent/2027.json")
