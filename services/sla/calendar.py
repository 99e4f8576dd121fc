"""Business calendars and deadline arithmetic, in each calendar's own time zone.

Pure: no clock reads and no I/O. Holiday data that the packages do not hold arrives as
``HolidayYears`` (services.sla.policies reads the files). A calendar that has no data for a year
raises ``CalendarDataMissingError`` instead of guessing that the year has no holidays.

Conventions (each a per-clock setting in the SLA policies):

- *calendar* counting runs on elapsed time; *working* counting only during the calendar's
  working hours on its working days.
- N days are counted from the day after the start day (the start day is not counted, as in
  PRC Civil Code art. 201 and FCA DISP "the Nth business day following the day of receipt");
  the deadline is then the same local time, the close of business, or midnight (24:00) of the
  last day. A last day that is not a working day may roll to the next working day (Civil Code
  art. 203). A receipt after the close of business or on a non-working day may count as received
  on the next working day.
- A pause moves the deadline by the time it took, measured the way the clock counts (a pause in
  the night does not move a working-hours deadline). A pause that starts after the deadline
  moves nothing: the clock had already run out.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from enum import StrEnum
from zoneinfo import ZoneInfo

import chinese_calendar
import holidays

ONE_DAY = timedelta(days=1)
ZERO = timedelta(0)
EPSILON = timedelta(microseconds=1)
MAX_SEARCH_DAYS = 3700
"""How far a search for working time may run before the calendar is declared to have none (ten years)."""


class CalendarDataMissingError(LookupError):
    """The calendar has no holiday data for a year it was asked about: refuse rather than guess."""

    def __init__(self, calendar: str, year: int, hint: str) -> None:
        super().__init__(f"calendar {calendar!r} has no holiday data for {year}: {hint}")
        self.calendar = calendar
        self.year = year


class Counting(StrEnum):
    CALENDAR = "calendar"
    WORKING = "working"


class Unit(StrEnum):
    MINUTES = "minutes"
    HOURS = "hours"
    DAYS = "days"
    WEEKS = "weeks"


class DayEnd(StrEnum):
    """Where on its last day a deadline counted in days falls."""

    SAME_TIME = "same_time"
    CLOSE_OF_BUSINESS = "close_of_business"
    MIDNIGHT = "midnight"


@dataclass(frozen=True)
class Span:
    """How much time a clock allows, and how it is counted."""

    amount: int
    unit: Unit
    counting: Counting = Counting.CALENDAR
    day_end: DayEnd = DayEnd.SAME_TIME
    roll_to_working_day: bool = False
    """A deadline whose last day is not a working day moves to the next working day."""
    late_receipt_rolls: bool = False
    """A start after the close of business or on a non-working day counts from the next working day."""

    @property
    def in_days(self) -> bool:
        return self.unit in (Unit.DAYS, Unit.WEEKS)

    @property
    def days(self) -> int:
        return self.amount * 7 if self.unit is Unit.WEEKS else self.amount

    @property
    def duration(self) -> timedelta:
        return timedelta(minutes=self.amount) if self.unit is Unit.MINUTES else timedelta(hours=self.amount)

    def describe(self) -> str:
        words = f"{self.amount} {'working ' if self.counting is Counting.WORKING else ''}{self.unit.value}"
        if self.in_days and self.day_end is not DayEnd.SAME_TIME:
            words += f", {self.day_end.value.replace('_', ' ')}"
        if self.roll_to_working_day:
            words += ", rolled to a working day"
        return words


@dataclass(frozen=True)
class Pause:
    """A stretch during which a clock did not run; ``end`` None while it lasts."""

    start: datetime
    end: datetime | None


@dataclass(frozen=True)
class HolidayYears:
    """Holiday data supplied from a file, for whole years: a year listed here is described completely."""

    years: frozenset[int] = frozenset()
    days_off: frozenset[date] = frozenset()
    make_up_days: frozenset[date] = frozenset()
    """Weekend days that are working days (China's 调休 make-up days)."""

    def merged(self, other: HolidayYears) -> HolidayYears:
        return HolidayYears(
            self.years | other.years, self.days_off | other.days_off, self.make_up_days | other.make_up_days
        )

    def is_working_day(self, day: date) -> bool:
        if day in self.make_up_days:
            return True
        return day.weekday() < 5 and day not in self.days_off


class WorkingDays(ABC):
    """Which days are working days."""

    description: str

    @abstractmethod
    def is_working_day(self, day: date, calendar: str) -> bool: ...


class ChineseWorkingDays(WorkingDays):
    """Mainland China: weekends and public holidays off, make-up working days on (State Council notices).

    The chinese-calendar package holds the published years; later years must come from a file.
    """

    description = "mainland China public holidays and make-up working days"

    def __init__(self, supplied: HolidayYears) -> None:
        self._supplied = supplied

    def is_working_day(self, day: date, calendar: str) -> bool:
        if day.year in self._supplied.years:
            return self._supplied.is_working_day(day)
        try:
            return bool(chinese_calendar.is_workday(day))
        except NotImplementedError:
            raise CalendarDataMissingError(
                calendar,
                day.year,
                "chinese-calendar has no State Council schedule for it; supply the year in a holiday file "
                "(holiday_files in sla-policies.yaml) or upgrade chinese-calendar",
            ) from None


class PublicHolidayWorkingDays(WorkingDays):
    """Weekdays that are not public holidays of a country (and region), from the holidays package."""

    def __init__(self, country: str, subdivision: str | None, supplied: HolidayYears, description: str) -> None:
        self._holidays = holidays.country_holidays(country, subdiv=subdivision)
        self._supplied = supplied
        self.description = description

    def is_working_day(self, day: date, calendar: str) -> bool:
        if day.year in self._supplied.years:
            return self._supplied.is_working_day(day)
        return day.weekday() < 5 and day not in self._holidays


class WeekdaysOnly(WorkingDays):
    description = "Monday to Friday, no holidays"

    def __init__(self, supplied: HolidayYears) -> None:
        self._supplied = supplied

    def is_working_day(self, day: date, calendar: str) -> bool:
        if day.year in self._supplied.years:
            return self._supplied.is_working_day(day)
        return day.weekday() < 5


class EveryDay(WorkingDays):
    description = "every day (a team that works weekends and holidays)"

    def is_working_day(self, day: date, calendar: str) -> bool:
        return True


@dataclass(frozen=True)
class BusinessCalendar:
    """A time zone, working days and working hours: what 'N working hours' and 'end of day' mean."""

    name: str
    zone: ZoneInfo
    working_days: WorkingDays
    working_hours: tuple[tuple[int, int], ...]
    """Working intervals of a working day as (start, end) minutes after local midnight, sorted, end <= 1440."""
    _day_cache: dict[date, bool] = field(default_factory=dict, compare=False, repr=False)
    _interval_cache: dict[date, tuple[tuple[datetime, datetime], ...]] = field(
        default_factory=dict, compare=False, repr=False
    )
    _by_day_cache: dict[tuple[Span, date], datetime] = field(default_factory=dict, compare=False, repr=False)
    """Deadlines without pauses of spans whose deadline depends only on the start's local day."""

    def __post_init__(self) -> None:
        previous_end = 0
        if not self.working_hours:
            raise ValueError(f"calendar {self.name!r} needs at least one working interval")
        for start, end in self.working_hours:
            if not 0 <= start < end <= 1440 or start < previous_end:
                raise ValueError(
                    f"calendar {self.name!r}: working hours must be sorted, within the day, not overlapping"
                )
            previous_end = end

    # ---- days and hours ----

    def local_date(self, instant: datetime) -> date:
        return instant.astimezone(self.zone).date()

    def is_working_day(self, day: date) -> bool:
        known = self._day_cache.get(day)
        if known is None:
            known = self.working_days.is_working_day(day, self.name)
            self._day_cache[day] = known
        return known

    def next_working_day(self, day: date) -> date:
        for _ in range(MAX_SEARCH_DAYS):
            day += ONE_DAY
            if self.is_working_day(day):
                return day
        raise ValueError(f"calendar {self.name!r} has no working day after {day}")

    def at_local(self, day: date, minutes: int) -> datetime:
        """The instant (UTC) of a local wall time; minute 1440 is the next day's midnight."""
        local = datetime.combine(day, time(0), tzinfo=self.zone) + timedelta(minutes=minutes)
        return local.astimezone(UTC)

    def intervals(self, day: date) -> tuple[tuple[datetime, datetime], ...]:
        """The working intervals of a day as UTC instants; none on a day off."""
        cached = self._interval_cache.get(day)
        if cached is None:
            cached = (
                tuple((self.at_local(day, start), self.at_local(day, end)) for start, end in self.working_hours)
                if self.is_working_day(day)
                else ()
            )
            self._interval_cache[day] = cached
        return cached

    def close_of_business(self, day: date) -> datetime:
        return self.at_local(day, self.working_hours[-1][1])

    def midnight_after(self, day: date) -> datetime:
        return self.at_local(day, 1440)

    # ---- working time ----

    def working_time(self, start: datetime, end: datetime) -> timedelta:
        """Working time between two instants."""
        if end <= start:
            return ZERO
        total = ZERO
        day, last = self.local_date(start), self.local_date(end)
        # Compared in UTC, the intervals' zone: the same instants, compared without asking either zone its offset.
        start, end = start.astimezone(UTC), end.astimezone(UTC)
        while day <= last:
            for low, high in self.intervals(day):
                lo, hi = max(low, start), min(high, end)
                if hi > lo:
                    total += hi - lo
            day += ONE_DAY
        return total

    def add_working_time(self, start: datetime, amount: timedelta) -> datetime:
        """The instant at which ``amount`` of working time has passed since ``start``."""
        if amount <= ZERO:
            return start
        remaining = amount
        day = self.local_date(start)
        in_utc = start.astimezone(UTC)  # compared in the intervals' zone; the result keeps start's own offset
        for _ in range(MAX_SEARCH_DAYS):
            for low, high in self.intervals(day):
                if high <= in_utc:
                    continue
                lo = low if low >= in_utc else start  # max(low, start)
                available = high - lo
                if remaining <= available:
                    return lo + remaining
                remaining -= available
            day += ONE_DAY
        raise ValueError(f"calendar {self.name!r} has no working time within {MAX_SEARCH_DAYS} days of {start}")

    def measure(self, counting: Counting, start: datetime, end: datetime) -> timedelta:
        """Time between two instants as a clock counting this way sees it."""
        if counting is Counting.WORKING:
            return self.working_time(start, end)
        return max(end - start, ZERO)

    def extend(self, counting: Counting, start: datetime, amount: timedelta) -> datetime:
        """``start`` moved on by ``amount`` of the clock's time."""
        if counting is Counting.WORKING:
            return self.add_working_time(start, amount)
        return start + amount

    # ---- deadlines ----

    def _day_end(self, day: date, day_end: DayEnd, start: datetime) -> datetime:
        if day_end is DayEnd.MIDNIGHT:
            return self.midnight_after(day)
        if day_end is DayEnd.CLOSE_OF_BUSINESS:
            return self.close_of_business(day)
        local = start.astimezone(self.zone)
        return datetime.combine(day, local.timetz().replace(tzinfo=None), tzinfo=self.zone).astimezone(UTC)

    def _counting_day(self, start: datetime, span: Span) -> date:
        """The day counting starts after: the start's local day, or the next working day for a late receipt."""
        day = self.local_date(start)
        if span.late_receipt_rolls and (not self.is_working_day(day) or start >= self.close_of_business(day)):
            day = self.next_working_day(day)
        return day

    def due(self, start: datetime, span: Span) -> datetime:
        """The deadline of ``span`` from ``start``, before any pause and before rolling off a day off."""
        if not span.in_days:
            if span.counting is Counting.WORKING:
                begin = start
                if span.late_receipt_rolls:
                    day = self._counting_day(start, span)
                    if day != self.local_date(start):
                        begin = self.at_local(day, self.working_hours[0][0])
                return self.add_working_time(begin, span.duration)
            return start + span.duration
        day = self._counting_day(start, span)
        if span.counting is Counting.WORKING:
            for _ in range(span.days):
                day = self.next_working_day(day)
        else:
            day += timedelta(days=span.days)
        return self._day_end(day, span.day_end, start)

    def roll_to_working_day(self, deadline: datetime) -> datetime:
        """A deadline on a day off moves to the next working day, same local time (midnight stays midnight)."""
        last_day = self.local_date(deadline - EPSILON)
        if self.is_working_day(last_day):
            return deadline
        days = (self.next_working_day(last_day) - last_day).days
        local = deadline.astimezone(self.zone)
        moved = datetime.combine(local.date() + timedelta(days=days), local.timetz().replace(tzinfo=None))
        return moved.replace(tzinfo=self.zone).astimezone(UTC)

    def deadline(self, start: datetime, span: Span, pauses: Sequence[Pause] = ()) -> datetime | None:
        """When the clock runs out, after its pauses; None while a pause that matters is still open."""
        if not pauses:
            if span.in_days and span.day_end is not DayEnd.SAME_TIME and not span.late_receipt_rolls:
                # Counted in whole days to a fixed hour of the last one: the start's local day decides.
                key = (span, self.local_date(start))
                found = self._by_day_cache.get(key)
                if found is None:
                    found = self._by_day_cache[key] = self._deadline_without_pauses(start, span)
                return found
            return self._deadline_without_pauses(start, span)
        due = self.due(start, span)
        shift = ZERO
        for pause in merge_pauses(pauses):
            if pause.end is not None and pause.end <= start:
                continue
            if pause.start >= self.extend(span.counting, due, shift):
                break  # the clock had already run out when this pause began
            if pause.end is None:
                return None
            shift += self.measure(span.counting, max(pause.start, start), pause.end)
        deadline = self.extend(span.counting, due, shift)
        return self.roll_to_working_day(deadline) if span.roll_to_working_day else deadline

    def _deadline_without_pauses(self, start: datetime, span: Span) -> datetime:
        due = self.due(start, span)
        return self.roll_to_working_day(due) if span.roll_to_working_day else due

    def active_time(self, counting: Counting, start: datetime, end: datetime, pauses: Sequence[Pause]) -> timedelta:
        """The clock's running time between ``start`` and ``end``, pauses left out."""
        total = self.measure(counting, start, end)
        if not pauses:
            return max(total, ZERO)
        for pause in merge_pauses(pauses):
            pause_end = end if pause.end is None else min(pause.end, end)
            low = max(pause.start, start)
            if pause_end > low:
                total -= self.measure(counting, low, pause_end)
        return max(total, ZERO)

    def advance(self, counting: Counting, start: datetime, amount: timedelta, pauses: Sequence[Pause]) -> datetime:
        """The instant at which the clock, running from ``start`` and stopping for pauses, has run ``amount``."""
        if not pauses:
            return self.extend(counting, start, amount)
        cursor, remaining = start, amount
        for pause in merge_pauses(pauses):
            pause_end = pause.end
            if pause_end is not None and pause_end <= cursor:
                continue
            if pause.start > cursor:
                available = self.measure(counting, cursor, pause.start)
                if remaining <= available:
                    return self.extend(counting, cursor, remaining)
                remaining -= available
            if pause_end is None:
                return datetime.max.replace(tzinfo=UTC)
            cursor = max(cursor, pause_end)
        return self.extend(counting, cursor, remaining)

    def elapsed_fraction(
        self, counting: Counting, start: datetime, deadline: datetime, at: datetime, pauses: Sequence[Pause]
    ) -> float:
        """Share of the allowed time used at ``at`` (0 to 1)."""
        allowed = self.active_time(counting, start, deadline, pauses)
        if allowed <= ZERO:
            return 1.0
        used = self.active_time(counting, start, min(at, deadline), pauses)
        return min(max(used / allowed, 0.0), 1.0)


def merge_pauses(pauses: Iterable[Pause]) -> list[Pause]:
    """Pauses sorted by start, overlapping ones merged (an open pause swallows what follows it)."""
    merged: list[Pause] = []
    for pause in sorted(pauses, key=lambda p: p.start):
        if merged:
            last = merged[-1]
            if last.end is None:
                break
            if pause.start <= last.end:
                end = None if pause.end is None else max(last.end, pause.end)
                merged[-1] = Pause(last.start, end)
                continue
        merged.append(pause)
    return merged


def parse_hours(text: str) -> tuple[int, int]:
    """'09:00-12:00' as minutes after midnight (24:00 allowed as an end)."""
    try:
        first, second = (part.strip() for part in text.split("-"))
        return _minutes(first), _minutes(second)
    except ValueError:
        raise ValueError(f"working hours must look like 09:00-17:30, not {text!r}") from None


def _minutes(text: str) -> int:
    hours, minutes = text.split(":")
    value = int(hours) * 60 + int(minutes)
    if not (len(minutes) == 2 and 0 <= int(minutes) < 60 and 0 <= value <= 1440):
        raise ValueError(text)
    return value
