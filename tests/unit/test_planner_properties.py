"""Over random requests: no proposal exceeds a cap or skips its approval tier, every schedule is exact.

Each check is made from the published proposal and the policy data alone, not from the engine's
own bookkeeping.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from schemas.plans import HardshipReason, PlanProposed, PlanRequested, Product
from schemas.values import Jurisdiction, PlanKind
from services.planner.logic import PlanEngine
from services.planner.policy import PlanPolicy, load_policy

POLICY = load_policy(Path("deploy/config/plan-policy.yaml"))
ENGINE = PlanEngine(POLICY)
CURRENCY = {Jurisdiction.CN: "CNY", Jurisdiction.UK: "GBP", Jurisdiction.US: "USD"}
# Remaining terms and yearly rates (basis points) as each product has them.
TERMS = {
    Product.PERSONAL_LOAN: (0, 60),
    Product.CONSUMER_CREDIT: (0, 36),
    Product.BUSINESS_LOAN: (0, 120),
    Product.MORTGAGE: (12, 360),
    Product.CREDIT_CARD: (0, 0),
}
RATES = {
    Product.PERSONAL_LOAN: (0, 2400),
    Product.CONSUMER_CREDIT: (0, 3600),
    Product.BUSINESS_LOAN: (200, 1500),
    Product.MORTGAGE: (150, 800),
    Product.CREDIT_CARD: (0, 2400),
}


def cents(low: int, high: int) -> st.SearchStrategy[Decimal]:
    return st.integers(low, high).map(lambda c: Decimal(c).scaleb(-2))


@st.composite
def plan_requests(draw: st.DrawFn) -> PlanRequested:
    jurisdiction = draw(st.sampled_from(list(Jurisdiction)))
    product = draw(st.sampled_from(list(Product)))
    currency = CURRENCY[jurisdiction]
    scale = 30 if product in (Product.MORTGAGE, Product.BUSINESS_LOAN) else 1
    principal_cents = draw(st.integers(10_000, 30_000_000 * scale))
    principal = Decimal(principal_cents).scaleb(-2)
    accrued = draw(cents(0, principal_cents // 20))
    arrears = draw(cents(0, principal_cents // 4))
    as_of = date(2026, 11, 22)

    def money(amount: Decimal) -> dict[str, str]:
        return {"amount": f"{amount:.2f}", "currency": currency}

    term_low, term_high = TERMS[product]
    term = draw(st.integers(term_low, term_high))
    rough_instalment = principal_cents // max(term, 12)  # about what the debt costs a month
    income: dict[str, Any] | None = None
    if draw(st.integers(0, 5)):  # mostly with a statement, sometimes without
        # Income around what the debt costs, so that plans are sometimes affordable and sometimes not.
        earned = rough_instalment * draw(st.integers(20, 400)) // 100 + draw(st.integers(0, 1_200_000))
        income = {"monthly_income": money(Decimal(earned).scaleb(-2)), "household_size": draw(st.integers(1, 8))}
        if draw(st.booleans()):
            income["essential_expenditure"] = money(Decimal(earned * draw(st.integers(0, 70)) // 100).scaleb(-2))
        if draw(st.booleans()):
            income["other_debt_payments"] = money(Decimal(earned * draw(st.integers(0, 20)) // 100).scaleb(-2))
        if draw(st.booleans()):
            income["savings_available"] = money(draw(cents(0, principal_cents)))
    instalment = Decimal(rough_instalment * draw(st.integers(80, 120)) // 100).scaleb(-2)
    rate_low, rate_high = RATES[product]
    document: dict[str, Any] = {
        "request_id": str(draw(st.uuids())),
        "case_id": str(draw(st.uuids())),
        "requested_by": "tracker",
        "jurisdiction": jurisdiction.value,
        "hardship_reason": draw(st.none() | st.sampled_from(list(HardshipReason))),
        "debt": {
            "product": product.value,
            "outstanding_principal": money(principal),
            "arrears": money(arrears),
            "accrued_interest": money(accrued),
            "penalty_interest": money(draw(cents(0, 500_000))),
            "fees": money(draw(cents(0, 100_000))),
            "annual_rate": str(Decimal(draw(st.integers(rate_low, rate_high))).scaleb(-4)),
            "remaining_term_months": term,
            "contractual_instalment": money(instalment),
            "next_due_date": (as_of + timedelta(days=draw(st.integers(-40, 40)))).isoformat(),
            "days_past_due": draw(st.integers(0, 400)),
        },
        "income": income,
        "preferred_kinds": draw(st.lists(st.sampled_from(list(PlanKind)), unique=True, max_size=3)),
        "as_of": as_of.isoformat(),
        "method": draw(st.none() | st.sampled_from(["annuity", "equal_principal"])),
        "day_count": draw(st.none() | st.sampled_from(["30/360", "actual/365", "actual/360"])),
    }
    if draw(st.booleans()):
        document["preferred_instalment"] = money(draw(cents(0, 2_000_000)))
    if draw(st.integers(0, 3)) == 0:
        document["preferred_term_months"] = draw(st.integers(1, 480))
    return PlanRequested.model_validate(document)


def _amount(money: dict[str, str]) -> Decimal:
    return Decimal(money["amount"])


def required_tier(policy: PlanPolicy, loss: Decimal, owed: Decimal, currency: str) -> str | None:
    """The lowest tier whose limits admit ``loss``, read straight from the policy's table."""
    for tier in policy.approval_tiers:
        share_ok = tier.max_loss_share is None or loss <= owed * tier.max_loss_share
        amount_ok = tier.max_loss is None or loss <= tier.max_loss[currency]
        if share_ok and amount_ok:
            return tier.tier.value
    return None


def check_proposal(request: PlanRequested, data: dict[str, Any], proposal: dict[str, Any]) -> None:
    caps = POLICY.caps[request.jurisdiction][request.debt.product]
    currency = request.debt.outstanding_principal.currency
    kinds = [PlanKind(component["kind"]) for component in proposal["components"]]
    rows = proposal["schedule"]
    owed = _amount(data["total_owed"])

    # Caps.
    assert set(kinds) <= set(caps.kinds), kinds
    assert proposal["term_months"] == len(rows) <= caps.max_term_months
    if PlanKind.RATE_REDUCTION in kinds:
        assert Decimal(proposal["annual_rate"]) >= caps.min_rate
    settles = PlanKind.SETTLEMENT_LUMP_SUM in kinds or PlanKind.SETTLEMENT_INSTALMENTS in kinds
    if settles:
        assert owed - _amount(proposal["total_repayable"]) <= owed * caps.max_settlement_discount
        assert request.debt.days_past_due >= POLICY.settlement.min_days_past_due
    else:
        assert _amount(proposal["interest_waived"]) <= request.debt.penalty_interest.amount * caps.max_waiver_share
        assert _amount(proposal["fees_waived"]) <= request.debt.fees.amount * caps.max_waiver_share + Decimal("0.01")
    if PlanKind.DEFERRAL in kinds:
        holiday = 0
        for row in rows:
            if _amount(row["principal"]) != 0:
                break
            holiday += 1
        assert holiday <= caps.max_deferral_months

    # The approver: exactly the lowest tier the loss allows, never one below it.
    loss = _amount(proposal["loss_vs_contract"])
    assert loss >= 0
    assert proposal["approval_tier"] == required_tier(POLICY, loss, owed, currency)

    # Affordable: every calendar month fits; a lump sum fits the savings.
    assert proposal["affordable"] is True
    if proposal["method"] == "lump_sum":
        assert request.income is not None
        assert request.income.savings_available is not None
        assert _amount(proposal["total_repayable"]) <= request.income.savings_available.amount
    else:
        months: dict[str, Decimal] = defaultdict(Decimal)
        for row in rows:
            months[row["due_date"][:7]] += _amount(row["payment"])
        assert max(months.values()) <= _amount(data["affordable_instalment"])

    # Exact to the cent: the principal repaid (plus what a settlement forgives) is the balance, exactly.
    opening = _amount(proposal["opening_balance"])
    waived = _amount(proposal["principal_waived"])
    assert sum(_amount(row["principal"]) for row in rows) + waived == opening
    repaid = Decimal(0)
    for number, row in enumerate(rows, start=1):
        assert row["number"] == number
        payment, principal = _amount(row["payment"]), _amount(row["principal"])
        assert payment == principal + _amount(row["interest"]) + _amount(row["fees"])
        assert min(principal, _amount(row["interest"]), _amount(row["fees"])) >= 0
        repaid += principal
        assert _amount(row["remaining_balance"]) == opening - waived - repaid
        assert all(money["currency"] == currency for key, money in row.items() if isinstance(money, dict))
    assert _amount(rows[-1]["remaining_balance"]) == 0
    assert [row["due_date"] for row in rows] == sorted(row["due_date"] for row in rows)
    assert _amount(proposal["total_repayable"]) == sum(_amount(row["payment"]) for row in rows)
    assert _amount(proposal["instalment"]) == max(_amount(row["payment"]) for row in rows)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(plan_requests())
def test_no_proposal_exceeds_a_cap_or_skips_its_tier_and_every_schedule_is_exact(request: PlanRequested) -> None:
    data = ENGINE.plan(request)
    PlanProposed.model_validate(data)
    assert len(data["proposals"]) <= POLICY.max_proposals
    assert [p["rank"] for p in data["proposals"]] == list(range(1, len(data["proposals"]) + 1))
    assert len({p["plan_id"] for p in data["proposals"]}) == len(data["proposals"])
    event(f"{len(data['proposals'])} proposals")
    for proposal in data["proposals"]:
        check_proposal(request, data, proposal)
        for component in proposal["components"]:
            event(f"proposed {component['kind']}")
        event(f"tier {proposal['approval_tier']}")
    assert ENGINE.plan(request) == data  # the same request, the same answer
