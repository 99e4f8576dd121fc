"""Repayment schedules, exact to the cent: annuity and equal principal, three day-count conventions.

The rules every schedule here follows:

- Money is exact: ``Decimal`` at the boundary, whole cents (``int``) inside the schedule loop, where
  an amount is rounded to the cent, half up, once, where it is made. Integer cents are exact
  rational arithmetic (a period's interest is rounded from the exact fraction), and fast.
- A period's interest is the principal still owed x the yearly rate x days / basis, rounded to the
  cent. Interest is charged on principal only: never on interest, penalty interest or fees.
- An annuity instalment is the standard formula with the monthly rate = yearly rate / 12, rounded
  to the cent. The last instalment repays whatever principal is left, so the principal repaid
  equals the balance exactly and the last instalment absorbs every rounding.
- Equal principal: each instalment repays balance / months (rounded), the last one the rest;
  interest is on top, so payments fall over time.
- Day counts: ``30/360`` (a regular month is 30 days; a broken first period counts whole months
  as 30 days and the rest 30E/360), ``actual/365`` and ``actual/360`` (calendar days).
- Due dates keep the first due date's day of the month, or the month's last day when shorter.
- A payment holiday comes before the amortising instalments. With grace on principal the customer
  pays the interest each month; with grace on principal and interest nothing is paid, and the
  interest of the holiday is deferred without interest on it, then collected in equal parts with
  the first instalments after the holiday (the last of them absorbs the rounding).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import ROUND_DOWN, ROUND_HALF_UP, Decimal
from enum import StrEnum
from functools import lru_cache
from typing import NamedTuple

CENT = Decimal("0.01")
ZERO = Decimal("0.00")
TWELVE = Decimal(12)
_DAYS_IN_MONTH = (31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)


class DayCount(StrEnum):
    THIRTY_360 = "30/360"
    ACTUAL_365 = "actual/365"
    ACTUAL_360 = "actual/360"


class Method(StrEnum):
    ANNUITY = "annuity"
    EQUAL_PRINCIPAL = "equal_principal"


class Grace(StrEnum):
    """What a payment holiday suspends."""

    PRINCIPAL = "principal"
    PRINCIPAL_AND_INTEREST = "principal_and_interest"


def cents(amount: Decimal) -> Decimal:
    return amount.quantize(CENT, ROUND_HALF_UP)


def cents_down(amount: Decimal) -> Decimal:
    return amount.quantize(CENT, ROUND_DOWN)


def _days_in_month(year: int, month: int) -> int:
    if month == 2 and year % 4 == 0 and (year % 100 != 0 or year % 400 == 0):
        return 29
    return _DAYS_IN_MONTH[month - 1]


def add_months(anchor: date, months: int, day: int | None = None) -> date:
    """``anchor`` moved by whole months, on ``day`` (default: the anchor's), clipped to the month's end."""
    year, month_index = divmod(anchor.month - 1 + months, 12)
    year += anchor.year
    month = month_index + 1
    return date(year, month, min(day or anchor.day, _days_in_month(year, month)))


_CALENDARS: dict[date, list[date]] = {}
_CALENDARS_KEPT = 1024


def due_dates(first_due: date, count: int) -> list[date]:
    """Monthly due dates from ``first_due`` (the same list object may be shared: do not change it)."""
    calendar = _CALENDARS.get(first_due)
    if calendar is None:
        if len(_CALENDARS) >= _CALENDARS_KEPT:
            _CALENDARS.clear()
        calendar = _CALENDARS[first_due] = [first_due]
    if len(calendar) < count:
        day = first_due.day
        year, month = first_due.year, first_due.month
        extra = len(calendar)
        year += (month - 1 + extra) // 12
        month = (month - 1 + extra) % 12 + 1
        for _ in range(count - len(calendar)):
            last = _days_in_month(year, month)
            calendar.append(date(year, month, day if day <= last else last))
            month += 1
            if month == 13:
                year, month = year + 1, 1
    return calendar if len(calendar) == count else calendar[:count]


def _days_30e_360(start: date, end: date) -> int:
    return 360 * (end.year - start.year) + 30 * (end.month - start.month) + min(end.day, 30) - min(start.day, 30)


def first_period_days(start: date, first_due: date, day_count: DayCount) -> int:
    """Days of interest from ``start`` to the first due date, in the convention's own days."""
    if day_count is not DayCount.THIRTY_360:
        return (first_due - start).days
    whole = 0
    while add_months(start, whole + 1) <= first_due:
        whole += 1
    return 30 * whole + _days_30e_360(add_months(start, whole), first_due)


def basis(day_count: DayCount) -> Decimal:
    return Decimal(365) if day_count is DayCount.ACTUAL_365 else Decimal(360)


def annuity_payment(balance: Decimal, annual_rate: Decimal, months: int) -> Decimal:
    """The level instalment that repays ``balance`` in ``months`` at ``annual_rate`` / 12 a month, to the cent."""
    if months <= 0:
        raise ValueError("an annuity needs at least one instalment")
    if annual_rate == 0:
        return cents(balance / months)
    monthly = annual_rate / TWELVE
    growth = (1 + monthly) ** months
    return cents(balance * monthly * growth / (growth - 1))


def to_cents(amount: Decimal) -> int:
    """Whole cents of an amount that has at most two decimal places."""
    scaled = amount.scaleb(2)
    whole = int(scaled)
    if whole != scaled:
        raise ValueError(f"{amount} is not a whole number of cents")
    return whole


def from_cents(amount: int) -> Decimal:
    return Decimal(amount).scaleb(-2)


@lru_cache(maxsize=1 << 16)  # instalments and zero fees repeat row after row
def cents_text(amount: int) -> str:
    """``1234`` as ``"12.34"``: the decimal text of a Money amount."""
    sign = "-" if amount < 0 else ""
    whole, part = divmod(abs(amount), 100)
    return f"{sign}{whole}.{part:02d}"


def _divide_half_up(numerator: int, denominator: int) -> int:
    """numerator / denominator rounded half up (away from zero at .5), both given as integers, denominator > 0."""
    if numerator >= 0:
        return (2 * numerator + denominator) // (2 * denominator)
    return -((-2 * numerator + denominator) // (2 * denominator))


def level_payment(
    balance_cents: int, annual_rate: Decimal, day_count: DayCount, start: date, dates: list[date], first: bool
) -> int:
    """The level instalment, in cents, that repays ``balance_cents`` over ``dates`` with interest charged
    as the schedule charges it (the convention's days from ``start``; ``first``: the period from ``start``
    is a schedule's first, counted as such under 30/360).

    With every period a regular 30/360 month this is the standard annuity formula (numpy-financial's
    pmt at rate / 12). Otherwise each period's growth factor g = 1 + rate x days / basis is used:
    instalment = balance / (1/g1 + 1/(g1 g2) + ... + 1/(g1...gn)), the balance over the sum of each
    instalment's discount factor, so the schedule ends by itself and its last instalment absorbs only
    the roundings, not the difference between calendar and 30-day months.
    """
    months = len(dates)
    if annual_rate == 0:
        return _divide_half_up(balance_cents, months)
    if day_count is DayCount.THIRTY_360 and (not first or first_period_days(start, dates[0], day_count) == 30):
        return to_cents(annuity_payment(from_cents(balance_cents), annual_rate, months))
    discounts = _discount_sums(annual_rate, day_count, start, dates, first)
    return int(balance_cents / discounts[months - 1] + 0.5)  # half up (a float tie is next to impossible)


def forget_calendars() -> None:
    """Drop the kept calendars and discount sums (a benchmark's way to pay for them on every request)."""
    _CALENDARS.clear()
    _DISCOUNT_SUMS.clear()


_DISCOUNT_SUMS: dict[tuple[Decimal, DayCount, date, bool, date, int], list[float]] = {}


def _discount_sums(
    annual_rate: Decimal, day_count: DayCount, start: date, dates: list[date], first: bool
) -> list[float]:
    """Running sums of the instalments' discount factors over ``dates``, kept per calendar and rate since
    searches ask for many lengths. A calendar is its first date and its day of the month (the largest
    day within its first year: a month's last day stands in for a 29th-31st).

    Floats: they only choose the instalment, which is then rounded to the cent; every amount charged
    afterwards is exact.
    """
    months = len(dates)
    key = (annual_rate, day_count, start, first, dates[0], max(due.day for due in dates[:12]))
    sums = _DISCOUNT_SUMS.get(key)
    if sums is None:
        if len(_DISCOUNT_SUMS) >= _CALENDARS_KEPT:
            _DISCOUNT_SUMS.clear()
        sums = _DISCOUNT_SUMS[key] = []
    if len(sums) < months:
        per_day = float(annual_rate) / float(basis(day_count))
        thirty_360 = day_count is DayCount.THIRTY_360
        index = len(sums)
        previous = start if index == 0 else dates[index - 1]
        # The discount factor of instalment k is instalment k-1's over instalment k's growth factor.
        factor = 1.0 if index == 0 else (sums[-1] - sums[-2] if index > 1 else sums[0])
        total = sums[-1] if sums else 0.0
        for due in dates[index:]:
            if index == 0 and first:
                days = first_period_days(previous, due, day_count)
            elif thirty_360:
                days = 30
            else:
                days = (due - previous).days
            factor /= 1 + per_day * days
            total += factor
            sums.append(total)
            previous = due
            index += 1
    return sums


@dataclass(slots=True)
class Row:
    """One instalment, in whole cents: payment = principal + interest + fees, always.

    Read-only by convention (a plain slotted class: schedules make many). The Decimal views
    (``payment`` …) are for readers; the engine works on the cents.
    """

    number: int
    due_date: date
    payment_cents: int
    principal_cents: int
    interest_cents: int
    fees_cents: int
    balance_cents: int
    """Principal still owed after this instalment."""

    @property
    def payment(self) -> Decimal:
        return from_cents(self.payment_cents)

    @property
    def principal(self) -> Decimal:
        return from_cents(self.principal_cents)

    @property
    def interest(self) -> Decimal:
        return from_cents(self.interest_cents)

    @property
    def fees(self) -> Decimal:
        return from_cents(self.fees_cents)

    @property
    def balance(self) -> Decimal:
        return from_cents(self.balance_cents)


class Terms(NamedTuple):
    """Everything an amortising schedule depends on; each plan lever changes some of it.

    A named tuple: immutable, cheap to make and to hash (schedules are cached by their terms).
    """

    balance: Decimal
    """Principal to amortise (capitalised arrears included when capitalised)."""
    annual_rate: Decimal
    months: int
    """Amortising instalments, after any holiday."""
    start: date
    """Interest runs from here to the first due date."""
    first_due: date
    method: Method = Method.ANNUITY
    day_count: DayCount = DayCount.THIRTY_360
    holiday_months: int = 0
    holiday_grace: Grace = Grace.PRINCIPAL_AND_INTEREST
    deferred_interest_over: int = 0
    """Instalments after the holiday that share its deferred interest (0: all of them)."""
    step_up_after: int = 0
    """Amortising instalments at ``annual_rate`` before ``step_up_rate`` applies (0: never)."""
    step_up_rate: Decimal | None = None
    spread_charges: Decimal = ZERO
    """Penalty interest and fees left to pay, collected in equal parts without interest."""
    spread_charges_over: int = 0
    """Amortising instalments that share ``spread_charges`` (0: all of them)."""
    monthly_fee: Decimal = ZERO
    """A fee on each amortising instalment (a card instalment plan's fee)."""
    due_now_principal: Decimal = ZERO
    """Overdue principal paid with the first instalment (arrears not capitalised)."""
    due_now_interest: Decimal = ZERO
    due_now_fees: Decimal = ZERO

    @property
    def total_months(self) -> int:
        return self.holiday_months + self.months

    @property
    def opening_balance(self) -> Decimal:
        return self.balance + self.due_now_principal


def _shares(total: int, parts: int) -> tuple[int, int]:
    """Equal shares of ``total`` cents, rounded down, and the last share that absorbs the rest."""
    if parts <= 0 or total == 0:
        return 0, total
    share = total // parts
    return share, total - share * (parts - 1)


def schedule(terms: Terms) -> list[Row]:
    """Every instalment of ``terms``; the principal column sums to ``terms.opening_balance`` exactly."""
    rows: list[Row] = []
    _run(terms, rows)
    return rows


def peak_payment(terms: Terms) -> Decimal:
    """The largest payment of the schedule, computed as the schedule is, without keeping the rows."""
    return from_cents(_run(terms, None))


def schedule_within(terms: Terms, limit: Decimal) -> list[Row] | None:
    """The schedule when no payment exceeds ``limit``; None as soon as one does (the rest is not computed)."""
    rows: list[Row] = []
    limit_cents = to_cents(limit)
    return rows if _run(terms, rows, limit_cents) <= limit_cents else None


def _run(terms: Terms, rows: list[Row] | None, stop_above: int | None = None) -> int:
    """The schedule's rows (appended to ``rows`` when given); returns the largest payment in cents.

    With ``stop_above``, stops at the first payment above it (returning that payment): a search that
    only asks "does it fit?" need not compute the rest.
    """
    stop = stop_above if stop_above is not None else -1
    if terms.months <= 0:
        raise ValueError("a schedule needs at least one amortising instalment")
    day_count = terms.day_count
    thirty_360 = day_count is DayCount.THIRTY_360
    dates = due_dates(terms.first_due, terms.total_months)
    outstanding = to_cents(terms.balance)
    # Interest of a period: outstanding x rate_numerator x days / (rate_denominator x basis), exactly.
    rate_numerator, rate_denominator = terms.annual_rate.as_integer_ratio()
    interest_denominator = rate_denominator * int(basis(day_count))
    extra_principal = to_cents(terms.due_now_principal)
    extra_interest = to_cents(terms.due_now_interest)
    extra_fees = to_cents(terms.due_now_fees)
    previous = terms.start
    peak = 0
    deferred = 0
    append = rows.append if rows is not None else None
    number = 0
    holiday = terms.holiday_months
    interest_only = terms.holiday_grace is Grace.PRINCIPAL

    for due in dates[:holiday]:
        days = first_period_days(previous, due, day_count) if number == 0 or not thirty_360 else 30
        interest = _divide_half_up(outstanding * rate_numerator * days, interest_denominator)
        number += 1
        if interest_only:
            paid_interest = interest + extra_interest
        else:
            deferred += interest
            paid_interest = extra_interest
        principal, fees = extra_principal, extra_fees
        payment = principal + paid_interest + fees
        extra_principal = extra_interest = extra_fees = 0
        if payment > peak:
            peak = payment
            if stop >= 0 and payment > stop:
                return peak
        if append is not None:
            append(Row(number, due, payment, principal, paid_interest, fees, outstanding))
        previous = due

    months = terms.months
    equal_principal = terms.method is Method.EQUAL_PRINCIPAL
    if equal_principal:
        level = _divide_half_up(outstanding, months)
    else:
        level = level_payment(outstanding, terms.annual_rate, day_count, previous, dates[holiday:], number == 0)
        if months > 1:
            # A first period so long that its interest reaches the instalment: that instalment pays the
            # interest only (no interest is capitalised) and the rest amortise from its due date.
            first_days = first_period_days(previous, dates[holiday], day_count) if number == 0 or not thirty_360 else 30
            if _divide_half_up(outstanding * rate_numerator * first_days, interest_denominator) >= level:
                level = level_payment(
                    outstanding, terms.annual_rate, day_count, dates[holiday], dates[holiday + 1 :], False
                )
    deferred_over = min(terms.deferred_interest_over or months, months)
    deferred_share, deferred_last = _shares(deferred, deferred_over)
    charges_over = min(terms.spread_charges_over or months, months)
    charges_share, charges_last = _shares(to_cents(terms.spread_charges), charges_over)
    monthly_fee = to_cents(terms.monthly_fee)
    step_at = terms.step_up_after if terms.step_up_rate is not None and 0 < terms.step_up_after < months else -1
    last = months - 1

    for index in range(months):
        due = dates[holiday + index]
        if index == step_at:
            assert terms.step_up_rate is not None
            rate_numerator, rate_denominator = terms.step_up_rate.as_integer_ratio()
            interest_denominator = rate_denominator * int(basis(day_count))
            if not equal_principal:
                level = level_payment(
                    outstanding, terms.step_up_rate, day_count, previous, dates[holiday + index :], number == 0
                )
        if number == 0:
            days = first_period_days(previous, due, day_count)
        elif thirty_360:
            days = 30
        else:
            days = (due - previous).days
        numerator = outstanding * rate_numerator * days
        interest = (2 * numerator + interest_denominator) // (2 * interest_denominator)  # half up; never negative
        if index == last:
            principal = outstanding
        elif equal_principal:
            principal = level if level < outstanding else outstanding
        else:
            # A long first period can cost more interest than the instalment: then no principal that month.
            principal = level - interest
            if principal < 0:
                principal = 0
            elif principal > outstanding:
                principal = outstanding
        outstanding -= principal
        fees = monthly_fee
        if index < deferred_over:
            interest += deferred_last if index == deferred_over - 1 else deferred_share
        if index < charges_over:
            fees += charges_last if index == charges_over - 1 else charges_share
        number += 1
        if number == 1:
            principal += extra_principal
            interest += extra_interest
            fees += extra_fees
        payment = principal + interest + fees
        if payment > peak:
            peak = payment
            if stop >= 0 and payment > stop:
                return peak
        if append is not None:
            append(Row(number, due, payment, principal, interest, fees, outstanding))
        previous = due
    return peak


def holiday_interest(terms: Terms) -> Decimal:
    """Interest a payment holiday with grace on principal and interest defers (zero for other holidays)."""
    if terms.holiday_months == 0 or terms.holiday_grace is not Grace.PRINCIPAL_AND_INTEREST:
        return ZERO
    rate_numerator, rate_denominator = terms.annual_rate.as_integer_ratio()
    denominator = rate_denominator * int(basis(terms.day_count))
    thirty_360 = terms.day_count is DayCount.THIRTY_360
    balance = to_cents(terms.balance)
    previous = terms.start
    deferred = 0
    for number, due in enumerate(due_dates(terms.first_due, terms.holiday_months)):
        days = first_period_days(previous, due, terms.day_count) if number == 0 or not thirty_360 else 30
        deferred += _divide_half_up(balance * rate_numerator * days, denominator)
        previous = due
    return from_cents(deferred)
