"""The official schedules the chinese-calendar package knows (2004–2026 in 1.11), as rows of
CalendarDay and CalendarYear. Used by the data migration; idempotent."""

from __future__ import annotations

from typing import Any

NAMES_ZH = {
    "New Year's Day": "元旦",
    "Spring Festival": "春节",
    "Tomb-sweeping Day": "清明节",
    "Labour Day": "劳动节",
    "Dragon Boat Festival": "端午节",
    "National Day": "国庆节",
    "Mid-autumn Festival": "中秋节",
    "Anti-Fascist 70th Day": "中国人民抗日战争暨世界反法西斯战争胜利70周年纪念日",
}


def seed_calendar(apps: Any) -> int:
    import chinese_calendar

    CalendarDay = apps.get_model("dsar", "CalendarDay")
    CalendarYear = apps.get_model("dsar", "CalendarYear")
    days = []
    for kind, table in (("holiday", chinese_calendar.holidays), ("workday", chinese_calendar.workdays)):
        for day, name in table.items():
            label = NAMES_ZH.get(name, name)
            days.append(CalendarDay(date=day, kind=kind, name=label if kind == "holiday" else f"{label}调休"))
    CalendarDay.objects.bulk_create(days, ignore_conflicts=True, batch_size=500)
    years = sorted({d.date.year for d in days})
    source = f"chinese-calendar {getattr(chinese_calendar, '__version__', '1.11')}"
    CalendarYear.objects.bulk_create(
        [CalendarYear(year=y, source=source) for y in years], ignore_conflicts=True
    )
    return len(days)
