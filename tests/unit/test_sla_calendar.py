"""Business calendars and deadline arithmetic, pinned to the minute (hand-counted on a paper calendar)."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.sla.calendar import (
    BusinessCalendar,
    CalendarDataMissingError,
    ChineseWorkingDays,
    Counting,
    DayEnd,
    EveryDay,
    HolidayYears,
    Pause,
    PublicHolidayWorkingDays,
    Span,
    Unit,
    merge_pauses,
    parse_hours,
)

SHANGHAI = ZoneInfo("Asia/Shanghai")
LONDON = ZoneInfo("Europe/London")
NEW_YORK = ZoneInfo("America/New_York")
NONE = HolidayYears()


def cn_desk(supplied: HolidayYears = NONE) -> BusinessCalendar:
    return BusinessCalendar("cn-desk", SHANGHAI, ChineseWorkingDays(supplied), ((540, 720), (780, 1080)))


def uk_days() -> BusinessCalendar:
    days = PublicHolidayWorkingDays("GB", "ENG", NONE, "England and Wales")
    return BusinessCalendar("uk", LONDON, days, ((540, 1050),))


def us_days() -> BusinessCalendar:
    return BusinessCalendar("us", NEW_YORK, PublicHolidayWorkingDays("US", None, NONE, "US federal"), ((540, 1020),))


def sh(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=SHANGHAI)  # type: ignore[misc]


CN_15_DAYS = Span(15, Unit.DAYS, Counting.CALENDAR, DayEnd.MIDNIGHT, roll_to_working_day=True)


def test_chinese_working_days_follow_the_2026_national_day_schedule() -> None:
    calendar = cn_desk()
    # Mid-Autumn (Fri 25 - Sun 27 September) and National Day (1-7 October) are off; Sunday 20 September
    # and Saturday 10 October are make-up working days (State Council notice for 2026).
    working = {day: calendar.is_working_day(date(2026, 9, day)) for day in (19, 20, 24, 25, 26, 27, 28)}
    assert working == {19: False, 20: True, 24: True, 25: False, 26: False, 27: False, 28: True}
    october = [calendar.is_working_day(date(2026, 10, day)) for day in range(1, 13)]
    assert october == [False] * 7 + [True, True, True, False, True]


def test_working_days_skip_the_national_day_week_and_count_the_make_up_saturday() -> None:
    span = Span(3, Unit.DAYS, Counting.WORKING, DayEnd.CLOSE_OF_BUSINESS)
    # Wednesday 30 September, 15:00: the next working days are Thu 8, Fri 9 and Sat 10 October (make-up).
    assert cn_desk().due(sh(2026, 9, 30, 15), span) == sh(2026, 10, 10, 18)


def test_working_hours_stop_for_lunch_nights_and_the_holiday_week() -> None:
    # 30 September 16:00-18:00 (2 h), then 8 October 09:00-12:00 (3 h) and 13:00-16:00 (3 h).
    assert cn_desk().due(sh(2026, 9, 30, 16), Span(8, Unit.HOURS, Counting.WORKING)) == sh(2026, 10, 8, 16)
    # Starting at lunch: the clock waits for 13:00.
    assert cn_desk().due(sh(2026, 11, 23, 12, 30), Span(2, Unit.HOURS, Counting.WORKING)) == sh(2026, 11, 23, 15)
    # Exactly at the close of business is still that day.
    assert cn_desk().due(sh(2026, 11, 23, 16), Span(2, Unit.HOURS, Counting.WORKING)) == sh(2026, 11, 23, 18)


def test_fifteen_calendar_days_end_at_midnight_and_roll_off_the_holiday() -> None:
    calendar = cn_desk()
    # The day of receipt is not counted: 28 September + 15 = Tue 13 October, a working day: ends 24:00.
    assert calendar.deadline(sh(2026, 9, 28, 10), CN_15_DAYS) == sh(2026, 10, 14)
    # 20 September + 15 = 5 October, inside the holiday: the period ends on Thu 8 October, at 24:00.
    assert calendar.deadline(sh(2026, 9, 20, 10), CN_15_DAYS) == sh(2026, 10, 9)
    # Received at 23:59 counts the same as at 00:01: days, not hours.
    assert calendar.deadline(sh(2026, 9, 28, 23, 59), CN_15_DAYS) == sh(2026, 10, 14)


def test_extensions_to_30_and_60_days_roll_too() -> None:
    calendar = cn_desk()
    thirty = Span(30, Unit.DAYS, Counting.CALENDAR, DayEnd.MIDNIGHT, roll_to_working_day=True)
    sixty = Span(60, Unit.DAYS, Counting.CALENDAR, DayEnd.MIDNIGHT, roll_to_working_day=True)
    # 1 September + 30 = 1 October (National Day): rolls to Thu 8 October.
    assert calendar.deadline(sh(2026, 9, 1, 10), thirty) == sh(2026, 10, 9)
    # 1 September + 60 = Sat 31 October: rolls to Mon 2 November.
    assert calendar.deadline(sh(2026, 9, 1, 10), sixty) == sh(2026, 11, 3)


def test_uk_summary_resolution_skips_easter_and_ends_at_close_of_business_in_summer_time() -> None:
    span = Span(3, Unit.DAYS, Counting.WORKING, DayEnd.CLOSE_OF_BUSINESS)
    received = datetime(2026, 4, 2, 16, tzinfo=LONDON)  # Thursday before Good Friday
    # Good Friday 3 and Easter Monday 6 April are bank holidays: Tue 7, Wed 8, Thu 9 April.
    assert uk_days().due(received, span) == datetime(2026, 4, 9, 16, 30, tzinfo=ZoneInfo("UTC"))
    # Christmas: Thu 24 December; 25, 28 (Boxing Day observed) off: Tue 29, Wed 30, Thu 31.
    assert uk_days().due(datetime(2026, 12, 24, 15, tzinfo=LONDON), span) == datetime(
        2026, 12, 31, 17, 30, tzinfo=LONDON
    )


def test_a_late_receipt_may_count_from_the_next_working_day() -> None:
    span = Span(3, Unit.DAYS, Counting.WORKING, DayEnd.CLOSE_OF_BUSINESS, late_receipt_rolls=True)
    friday_evening = datetime(2026, 11, 20, 18, tzinfo=LONDON)
    # Treated as received Monday 23: Tue 24, Wed 25, Thu 26.
    assert uk_days().due(friday_evening, span) == datetime(2026, 11, 26, 17, 30, tzinfo=LONDON)
    plain = Span(3, Unit.DAYS, Counting.WORKING, DayEnd.CLOSE_OF_BUSINESS)
    assert uk_days().due(friday_evening, plain) == datetime(2026, 11, 25, 17, 30, tzinfo=LONDON)


def test_eight_weeks_crosses_the_clock_change_and_ends_at_midnight() -> None:
    span = Span(8, Unit.WEEKS, Counting.CALENDAR, DayEnd.MIDNIGHT)
    received = datetime(2026, 3, 20, 10, tzinfo=LONDON)  # GMT; British Summer Time from 29 March
    deadline = uk_days().due(received, span)
    assert deadline == datetime(2026, 5, 16, 0, 0, tzinfo=LONDON)
    assert deadline == datetime(2026, 5, 15, 23, 0, tzinfo=ZoneInfo("UTC"))  # midnight in summer time


def test_us_working_hours_skip_the_observed_independence_day() -> None:
    # Thu 2 July 16:30-17:00, Fri 3 July is Independence Day observed, then Mon 6 July 09:00-10:30.
    start = datetime(2026, 7, 2, 16, 30, tzinfo=NEW_YORK)
    assert us_days().due(start, Span(2, Unit.HOURS, Counting.WORKING)) == datetime(2026, 7, 6, 10, 30, tzinfo=NEW_YORK)
    assert us_days().due(start, Span(15, Unit.DAYS, Counting.CALENDAR, DayEnd.MIDNIGHT)) == datetime(
        2026, 7, 18, tzinfo=NEW_YORK
    )


def test_working_hours_across_a_daylight_saving_change_count_real_time() -> None:
    every_day = BusinessCalendar("24x7", NEW_YORK, EveryDay(), ((0, 1440),))
    # 8 March 2026 has 23 hours in New York.
    start = datetime(2026, 3, 8, 0, 0, tzinfo=NEW_YORK)
    assert every_day.working_time(start, datetime(2026, 3, 9, tzinfo=NEW_YORK)) == timedelta(hours=23)
    assert every_day.due(start, Span(24, Unit.HOURS, Counting.WORKING)) == datetime(2026, 3, 9, 1, tzinfo=NEW_YORK)


def test_a_pause_in_working_hours_moves_a_working_deadline_by_the_working_time_paused() -> None:
    calendar = cn_desk()
    span = Span(8, Unit.HOURS, Counting.WORKING)
    start = sh(2026, 11, 23, 9)  # Monday; without pauses: 18:00 the same day
    assert calendar.deadline(start, span) == sh(2026, 11, 23, 18)
    # Paused 10:00-14:00: 3 working hours (lunch does not count): 18:00 + 3 h = Tuesday 12:00.
    assert calendar.deadline(start, span, [Pause(sh(2026, 11, 23, 10), sh(2026, 11, 23, 14))]) == sh(2026, 11, 24, 12)
    # A pause in the night moves nothing.
    assert calendar.deadline(start, span, [Pause(sh(2026, 11, 23, 19), sh(2026, 11, 24, 8))]) == sh(2026, 11, 23, 18)
    # A pause that starts after the deadline moves nothing either: the clock had run out.
    assert calendar.deadline(start, span, [Pause(sh(2026, 11, 23, 18), sh(2026, 11, 24, 12))]) == sh(2026, 11, 23, 18)
    # While a pause that matters is open, the deadline is unknown.
    assert calendar.deadline(start, span, [Pause(sh(2026, 11, 23, 10), None)]) is None


def test_a_pause_moves_a_calendar_day_deadline_which_then_rolls_off_the_weekend() -> None:
    calendar = cn_desk()
    start = sh(2026, 11, 2, 10)
    assert calendar.deadline(start, CN_15_DAYS) == sh(2026, 11, 18)
    # Paused four days: the period would end at the end of Saturday 21 November: Monday 23 instead.
    pause = Pause(sh(2026, 11, 5, 10), sh(2026, 11, 9, 10))
    assert calendar.deadline(start, CN_15_DAYS, [pause]) == sh(2026, 11, 24)
    # Two pauses that overlap count once.
    overlapping = [Pause(sh(2026, 11, 5, 10), sh(2026, 11, 8, 10)), Pause(sh(2026, 11, 7, 10), sh(2026, 11, 9, 10))]
    assert calendar.deadline(start, CN_15_DAYS, overlapping) == sh(2026, 11, 24)


def test_active_time_advance_and_elapsed_fraction_leave_pauses_out() -> None:
    calendar = cn_desk()
    start, deadline = sh(2026, 11, 23, 9), sh(2026, 11, 24, 12)
    pauses = [Pause(sh(2026, 11, 23, 10), sh(2026, 11, 23, 14))]
    assert calendar.active_time(Counting.WORKING, start, deadline, pauses) == timedelta(hours=8)
    # Half the allowed time: 09:00-10:00 (1 h), pause, 14:00-17:00 (3 h).
    assert calendar.advance(Counting.WORKING, start, timedelta(hours=4), pauses) == sh(2026, 11, 23, 17)
    assert calendar.elapsed_fraction(Counting.WORKING, start, deadline, sh(2026, 11, 23, 17), pauses) == 0.5


def test_merge_pauses() -> None:
    a, b, c = sh(2026, 1, 5, 9), sh(2026, 1, 5, 10), sh(2026, 1, 5, 11)
    assert merge_pauses([Pause(b, c), Pause(a, b)]) == [Pause(a, c)]
    assert merge_pauses([Pause(a, None), Pause(b, c)]) == [Pause(a, None)]


def test_a_year_without_chinese_holiday_data_is_refused_not_guessed() -> None:
    calendar = cn_desk()
    with pytest.raises(CalendarDataMissingError, match="2027") as raised:
        calendar.deadline(sh(2026, 12, 28, 10), CN_15_DAYS)
    assert raised.value.year == 2027
    assert "holiday file" in str(raised.value)


def test_a_holiday_file_supplies_a_later_year() -> None:
    supplied = HolidayYears(
        frozenset({2027}),
        frozenset({date(2027, 1, 1), date(2027, 1, 11), date(2027, 1, 12)}),
        frozenset({date(2027, 1, 9)}),
    )
    calendar = cn_desk(supplied)
    # 28 December 2026 + 15 = Tue 12 January 2027, a day off in the supplied data: rolls to Wed 13.
    assert calendar.deadline(sh(2026, 12, 28, 10), CN_15_DAYS) == sh(2027, 1, 14)
    assert calendar.is_working_day(date(2027, 1, 9))  # a Saturday made a working day


def test_working_hours_text() -> None:
    assert parse_hours("09:00-17:30") == (540, 1050)
    assert parse_hours("00:00-24:00") == (0, 1440)
    for bad in ("9-17", "09:00-24:30", "09:60-10:00", "nine to five"):
        with pytest.raises(ValueError, match="09:00-17:30"):
            parse_hours(bad)


def test_a_calendar_refuses_overlapping_hours() -> None:
    with pytest.raises(ValueError, match="not overlapping"):
        BusinessCalendar("bad", SHANGHAI, EveryDay(), ((540, 720), (700, 800)))


# ---- the fast paths say what the plain definitions say ----


def _plain_working_time(calendar: BusinessCalendar, start: datetime, end: datetime) -> timedelta:
    total = timedelta(0)
    day, last = calendar.local_date(start), calendar.local_date(end)
    while day <= last:
        for low, high in calendar.intervals(day):
            lo, hi = max(low, start), min(high, end)
            if hi > lo:
                total += hi - lo
        day += timedelta(days=1)
    return max(total, timedelta(0))


def _plain_add_working_time(calendar: BusinessCalendar, start: datetime, amount: timedelta) -> datetime:
    remaining, day = amount, calendar.local_date(start)
    while True:
        for low, high in calendar.intervals(day):
            if high <= start:
                continue
            lo = max(low, start)
            if remaining <= high - lo:
                return lo + remaining
            remaining -= high - lo
        day += timedelta(days=1)


OFFSETS = [ZoneInfo("UTC"), SHANGHAI, LONDON, NEW_YORK]


@settings(max_examples=400, deadline=None)
@given(
    calendar_index=st.integers(0, 2),
    offset_index=st.integers(0, 3),
    start_minute=st.integers(0, 250 * 24 * 60),
    minutes=st.integers(1, 5 * 24 * 60),
    days=st.integers(1, 20),
    day_end=st.sampled_from(list(DayEnd)),
    roll=st.booleans(),
)
def test_working_time_deadlines_and_shares_are_the_plain_definitions_to_the_offset(
    calendar_index: int, offset_index: int, start_minute: int, minutes: int, days: int, day_end: DayEnd, roll: bool
) -> None:
    """Working time is compared in UTC and deadlines of whole days are remembered per start day: the results are
    those of the plain loops, the same instant with the same UTC offset (an alert shows it)."""
    calendar = [cn_desk(), uk_days(), BusinessCalendar("hotline", SHANGHAI, EveryDay(), ((480, 1320),))][calendar_index]
    start = (datetime(2026, 1, 1, tzinfo=ZoneInfo("UTC")) + timedelta(minutes=start_minute)).astimezone(
        OFFSETS[offset_index]
    )
    amount = timedelta(minutes=minutes)
    end = start + amount
    assert repr(calendar.working_time(start, end)) == repr(_plain_working_time(calendar, start, end))
    assert repr(calendar.add_working_time(start, amount)) == repr(_plain_add_working_time(calendar, start, amount))
    no_pause: list[Pause] = []
    for counting in Counting:
        assert repr(calendar.advance(counting, start, amount, no_pause)) == repr(
            calendar.extend(counting, start, amount)
        )
        assert calendar.active_time(counting, start, end, no_pause) == calendar.measure(counting, start, end)
        span = Span(days, Unit.DAYS, counting, day_end, roll)
        due = calendar.due(start, span)
        expected = calendar.roll_to_working_day(due) if roll else due
        assert repr(calendar.deadline(start, span)) == repr(expected)
        assert repr(calendar.deadline(start + timedelta(seconds=1), span)) == repr(
            calendar.deadline(start + timedelta(seconds=1), span, [Pause(start - timedelta(days=1), start)])
        )
