"""Schedules exact to the cent: against numpy-financial, against a plain Decimal ledger, and their rules."""

from __future__ import annotations

import random
from datetime import date
from decimal import ROUND_HALF_UP, Decimal

import numpy_financial as npf
import pytest

from services.planner.schedule import (
    DayCount,
    Grace,
    Method,
    Terms,
    add_months,
    annuity_payment,
    cents_text,
    due_dates,
    first_period_days,
    holiday_interest,
    schedule,
)

CENT = Decimal("0.01")
START, FIRST_DUE = date(2026, 11, 10), date(2026, 12, 10)  # one whole month: every period is a regular one


def _half_up(value: float) -> Decimal:
    return Decimal(repr(float(value))).quantize(CENT, ROUND_HALF_UP)


# A spread of loans as a bank holds them: (balance range in yuan, terms in months, yearly rate range in bp).
SPREAD = {
    "personal": ((1_000, 500_000), (3, 6, 12, 18, 24, 36, 48, 60), (300, 2400)),
    "mortgage": ((100_000, 3_000_000), (60, 120, 180, 240, 300, 360), (250, 600)),
    "business": ((10_000, 5_000_000), (6, 12, 24, 36, 60, 84, 120), (300, 1200)),
    "card": ((1_000, 200_000), (1, 2, 6, 12, 24, 36, 60), (1, 3600)),
}


def _loans(kind: str, count: int, seed: int) -> list[tuple[Decimal, Decimal, int]]:
    (low, high), terms, (rate_low, rate_high) = SPREAD[kind]
    rng = random.Random(seed)
    return [
        (Decimal(rng.randint(low * 100, high * 100)) / 100, Decimal(rng.randint(rate_low, rate_high)) / 10000, n)
        for n in (rng.choice(terms) for _ in range(count))
    ]


@pytest.mark.parametrize("kind", sorted(SPREAD))
def test_annuity_agrees_with_numpy_financial_to_the_cent(kind: str) -> None:
    """pmt to the cent; ipmt and ppmt to the cent on every instalment of the contract the schedule is.

    The customer pays round(pmt), not pmt: numpy-financial's ipmt/ppmt for that contract are those
    of a loan paying round(pmt) each month that leaves a residual ``fv``, which the last instalment
    settles. Every other instalment agrees to the cent; the last one differs from the exact one only
    by the interest roundings that compound into it (bounded below). Interest is charged on the
    principal still owed, in cents, as a bank's ledger does.
    """
    for balance, rate, months in _loans(kind, 150, seed=sorted(SPREAD).index(kind)):
        rows = schedule(Terms(balance, rate, months, START, FIRST_DUE))
        monthly = float(rate) / 12
        level = rows[0].payment
        assert level == _half_up(npf.pmt(monthly, months, -float(balance))), (balance, rate, months)
        assert all(row.payment == level for row in rows[:-1])
        residual = npf.fv(monthly, months, float(level), -float(balance))
        for number, row in enumerate(rows[:-1], start=1):
            assert abs(float(row.interest) - npf.ipmt(monthly, number, months, -float(balance), residual)) <= 0.01
            assert abs(float(row.principal) - npf.ppmt(monthly, number, months, -float(balance), residual)) <= 0.01
        growth = ((1 + monthly) ** months - 1) / monthly
        assert abs(float(rows[-1].payment) - (float(level) + residual)) <= 0.005 * (growth + 1)
        assert sum(row.principal for row in rows) == balance
        assert rows[-1].balance == 0


def test_textbook_figures_differ_only_by_the_compounded_rounding_of_the_instalment() -> None:
    """Against textbook ipmt/ppmt (no residual), instalment k differs by the roundings carried so far:
    each month the instalment (<= half a cent) and the interest (<= half a cent) move the balance, and
    the balance's difference earns interest. Early instalments agree to the cent; none goes past the bound."""
    within_a_cent = 0
    for balance, rate, months in _loans("personal", 200, seed=9):
        rows = schedule(Terms(balance, rate, months, START, FIRST_DUE))
        monthly = float(rate) / 12
        for number, row in enumerate(rows[:-1], start=1):
            carried = 0.01 * ((1 + monthly) ** (number - 1) - 1) / monthly if monthly else 0.0
            interest_gap = abs(float(row.interest) - npf.ipmt(monthly, number, months, -float(balance)))
            principal_gap = abs(float(row.principal) - npf.ppmt(monthly, number, months, -float(balance)))
            assert interest_gap <= 0.005 + carried * monthly + 1e-9
            assert principal_gap <= 0.01 + carried * monthly + 1e-9
            within_a_cent += interest_gap <= 0.01 and principal_gap <= 0.01
    assert within_a_cent > 3000


def _decimal_ledger(terms: Terms) -> list[tuple[date, Decimal, Decimal, Decimal]]:
    """A plain Decimal ledger, written independently of the engine's integer cents: (due, payment, principal,
    interest) for schedules without holidays, charges or step-ups. The annuity's level instalment is the
    one that repays the balance over the periods as they are charged (calendar days, a broken first period)."""
    basis = Decimal(365) if terms.day_count is DayCount.ACTUAL_365 else Decimal(360)
    dues = [add_months(terms.first_due, index) for index in range(terms.months)]
    lengths = []
    for index, (before, due) in enumerate(zip([terms.start, *dues], dues, strict=False)):
        if terms.day_count is DayCount.THIRTY_360:
            lengths.append(first_period_days(before, due, terms.day_count) if index == 0 else 30)
        else:
            lengths.append((due - before).days)
    outstanding = terms.balance
    if terms.method is Method.ANNUITY and terms.annual_rate:

        def level_over(periods: list[int]) -> Decimal:
            # The level instalment as a present value: balance / (sum of each instalment's discount factor).
            factor, discounts = Decimal(1), Decimal(0)
            for days in periods:
                factor /= 1 + terms.annual_rate * days / basis
                discounts += factor
            return (terms.balance / discounts).quantize(CENT, ROUND_HALF_UP)

        level = level_over(lengths)
        first_interest = (terms.balance * terms.annual_rate * lengths[0] / basis).quantize(CENT, ROUND_HALF_UP)
        if terms.months > 1 and first_interest >= level:
            level = level_over(lengths[1:])  # the first instalment pays its interest only
    else:
        level = (terms.balance / terms.months).quantize(CENT, ROUND_HALF_UP)
    rows = []
    for index, (due, days) in enumerate(zip(dues, lengths, strict=True)):
        interest = (outstanding * terms.annual_rate * days / basis).quantize(CENT, ROUND_HALF_UP)
        if index == terms.months - 1:
            principal = outstanding
        elif terms.method is Method.ANNUITY:
            principal = min(max(level - interest, Decimal(0)), outstanding)
        else:
            principal = min(level, outstanding)
        outstanding -= principal
        rows.append((due, principal + interest, principal, interest))
    return rows


@pytest.mark.parametrize("method", list(Method))
@pytest.mark.parametrize("day_count", list(DayCount))
def test_integer_cents_equal_a_plain_decimal_ledger(method: Method, day_count: DayCount) -> None:
    rng = random.Random(f"{method}{day_count}")
    for _ in range(120):
        start = date(2026, rng.randint(1, 12), rng.randint(1, 28))
        terms = Terms(
            Decimal(rng.randint(100, 300_000_000)) / 100,
            Decimal(rng.randint(0, 3600)) / 10000,
            rng.randint(1, 120),
            start,
            add_months(start, rng.randint(1, 2), day=rng.randint(1, 31)),
            method=method,
            day_count=day_count,
        )
        expected = _decimal_ledger(terms)
        got = [(row.due_date, row.payment, row.principal, row.interest) for row in schedule(terms)]
        assert got == expected, terms


@pytest.mark.parametrize("day_count", list(DayCount))
def test_the_last_instalment_absorbs_only_roundings_whatever_the_calendar(day_count: DayCount) -> None:
    """Calendar months and a broken first period are in the level instalment, not left to the last one."""
    rng = random.Random(str(day_count))
    for _ in range(100):
        balance = Decimal(rng.randint(100_000, 300_000_000)) / 100
        months = rng.randint(3, 360)
        # Rates as loans of that length have them (a 30-year loan at 24 % would owe more in a 31-day month
        # than its instalment: such months are paid as interest only).
        rate = Decimal(rng.randint(100, 2400 if months <= 60 else 800)) / 10000
        start = date(2026, rng.randint(1, 12), rng.randint(1, 28))
        first_due = add_months(start, 1, day=rng.randint(1, 31))
        rows = schedule(Terms(balance, rate, months, start, first_due, day_count=day_count))
        level = rows[1].payment
        assert all(row.payment == level for row in rows[1:-1])
        # A first period so long that its interest passes the instalment is paid as interest only.
        assert rows[0].payment == level or rows[0].principal == 0
        monthly = float(rate) * 31 / 360
        carried = 0.01 * ((1 + monthly) ** months - 1) / monthly + 0.01
        assert abs(float(rows[-1].payment - level)) <= carried, (balance, rate, months, start, first_due)


def test_equal_principal_repays_the_same_principal_and_falling_interest() -> None:
    terms = Terms(Decimal("120000.00"), Decimal("0.0600"), 12, START, FIRST_DUE, method=Method.EQUAL_PRINCIPAL)
    rows = schedule(terms)
    assert [row.principal for row in rows] == [Decimal("10000.00")] * 12
    assert rows[0].interest == Decimal("600.00")
    assert rows[1].interest == Decimal("550.00")
    assert [row.payment for row in rows] == sorted((row.payment for row in rows), reverse=True)
    assert rows[-1].interest == Decimal("50.00")
    assert rows[-1].balance == 0


def test_the_last_equal_principal_instalment_absorbs_the_rounding() -> None:
    rows = schedule(Terms(Decimal("1000.00"), Decimal("0"), 3, START, FIRST_DUE, method=Method.EQUAL_PRINCIPAL))
    assert [row.principal for row in rows] == [Decimal("333.33"), Decimal("333.33"), Decimal("333.34")]


def test_day_counts_charge_the_days_each_convention_counts() -> None:
    balance, rate, start, first = Decimal("36000.00"), Decimal("0.0730"), date(2026, 12, 31), date(2027, 1, 31)
    expected_first = {DayCount.THIRTY_360: "219.00", DayCount.ACTUAL_365: "223.20", DayCount.ACTUAL_360: "226.30"}
    for day_count, first_interest in expected_first.items():
        rows = schedule(Terms(balance, rate, 3, start, first, day_count=day_count))
        assert [row.due_date for row in rows] == [date(2027, 1, 31), date(2027, 2, 28), date(2027, 3, 31)]
        assert rows[0].interest == Decimal(first_interest)
        # Later months: 30 days each under 30/360, else the calendar's (28 in February, then 31).
        days = [30, 30] if day_count is DayCount.THIRTY_360 else [28, 31]
        basis = 365 if day_count is DayCount.ACTUAL_365 else 360
        for row, before, length in zip(rows[1:], rows[:-1], days, strict=True):
            assert row.interest == (before.balance * rate * length / basis).quantize(CENT, ROUND_HALF_UP)


def test_a_broken_first_period_counts_whole_months_then_days() -> None:
    assert first_period_days(date(2026, 11, 22), date(2026, 12, 10), DayCount.THIRTY_360) == 18
    assert first_period_days(date(2026, 11, 10), date(2027, 1, 25), DayCount.THIRTY_360) == 75
    assert first_period_days(date(2026, 11, 22), date(2026, 12, 10), DayCount.ACTUAL_365) == 18


def test_due_dates_keep_the_day_or_the_months_last_day() -> None:
    assert due_dates(date(2027, 1, 31), 4) == [
        date(2027, 1, 31),
        date(2027, 2, 28),
        date(2027, 3, 31),
        date(2027, 4, 30),
    ]
    assert due_dates(date(2027, 12, 15), 2) == [date(2027, 12, 15), date(2028, 1, 15)]
    assert add_months(date(2028, 1, 31), 1) == date(2028, 2, 29)


def test_a_holiday_with_grace_on_principal_charges_interest_only() -> None:
    terms = Terms(
        Decimal("60000.00"), Decimal("0.0600"), 12, START, FIRST_DUE, holiday_months=3, holiday_grace=Grace.PRINCIPAL
    )
    rows = schedule(terms)
    assert len(rows) == 15
    assert [(row.principal, row.interest, row.payment) for row in rows[:3]] == [
        (Decimal("0.00"), Decimal("300.00"), Decimal("300.00"))
    ] * 3
    assert sum(row.principal for row in rows) == Decimal("60000.00")
    assert rows[3].payment == annuity_payment(Decimal("60000.00"), Decimal("0.0600"), 12)


def test_a_full_holiday_defers_its_interest_without_interest_on_it() -> None:
    terms = Terms(
        Decimal("60000.00"),
        Decimal("0.0600"),
        12,
        START,
        FIRST_DUE,
        holiday_months=3,
        holiday_grace=Grace.PRINCIPAL_AND_INTEREST,
        deferred_interest_over=4,
    )
    rows = schedule(terms)
    assert [row.payment for row in rows[:3]] == [Decimal("0.00")] * 3
    assert holiday_interest(terms) == Decimal("900.00")
    level = annuity_payment(Decimal("60000.00"), Decimal("0.0600"), 12)
    assert [row.payment - level for row in rows[3:7]] == [Decimal("225.00")] * 4
    assert rows[7].payment == level
    plain = schedule(terms._replace(holiday_months=0))
    assert sum(row.interest for row in rows) == sum(row.interest for row in plain) + Decimal("900.00")
    assert sum(row.principal for row in rows) == Decimal("60000.00")


def test_charges_are_spread_without_interest_and_due_now_amounts_come_first() -> None:
    terms = Terms(
        Decimal("10000.00"),
        Decimal("0.0500"),
        6,
        START,
        FIRST_DUE,
        spread_charges=Decimal("100.00"),
        spread_charges_over=3,
        due_now_principal=Decimal("500.00"),
        due_now_interest=Decimal("20.00"),
        due_now_fees=Decimal("5.00"),
    )
    rows = schedule(terms)
    assert [row.fees for row in rows] == [Decimal("38.33"), Decimal("33.33"), Decimal("33.34")] + [Decimal("0.00")] * 3
    assert sum(row.principal for row in rows) == terms.opening_balance == Decimal("10500.00")
    assert rows[0].interest == Decimal("41.67") + Decimal("20.00")
    assert all(row.payment == row.principal + row.interest + row.fees for row in rows)


def test_a_step_up_recomputes_the_instalment_at_the_higher_rate() -> None:
    terms = Terms(
        Decimal("50000.00"),
        Decimal("0.0300"),
        24,
        START,
        FIRST_DUE,
        step_up_after=12,
        step_up_rate=Decimal("0.0600"),
    )
    rows = schedule(terms)
    assert rows[0].payment == annuity_payment(Decimal("50000.00"), Decimal("0.0300"), 24)
    assert rows[12].payment == annuity_payment(rows[11].balance, Decimal("0.0600"), 12)
    assert rows[12].interest == (rows[11].balance * Decimal("0.0600") / 12).quantize(CENT, ROUND_HALF_UP)
    assert sum(row.principal for row in rows) == Decimal("50000.00")


def test_cents_text_is_a_money_amount() -> None:
    assert [cents_text(c) for c in (0, 5, 120, -7, 123456)] == ["0.00", "0.05", "1.20", "-0.07", "1234.56"]
