"""The plan engine: each plan kind, the waterfall, affordability, the bank's view, tiers and bad requests."""

from __future__ import annotations

import copy
import json
import uuid
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from schemas.plans import PlanProposed, PlanProposedEvent, PlanRequested, PlanRequestedEvent
from services.planner.app import INVALID_REQUEST, plan_records, proposed_event_id
from services.planner.logic import PlanEngine, PlanRequestError
from services.planner.policy import PROJECT_ROOT, PlanPolicy, load_policy
from services.planner.schedule import DayCount, Terms, add_months, annuity_payment, schedule
from services.runtime.deadletter import InboundMessage
from services.runtime.errors import PermanentError

POLICY = load_policy(Path("deploy/config/plan-policy.yaml"))
ENGINE = PlanEngine(POLICY)
AS_OF = date(2026, 11, 22)


def _money(amount: str, currency: str = "CNY") -> dict[str, str]:
    return {"amount": amount, "currency": currency}


BASE: dict[str, Any] = {
    "request_id": "e4d3c2b1-a098-4f7e-8d6c-5b4a39281706",
    "case_id": "3f2c1a9e-8b7d-4e6f-9a1b-2c3d4e5f6a7b",
    "requested_by": "tracker",
    "jurisdiction": "CN",
    "hardship_reason": "income_reduction",
    "debt": {
        "product": "personal_loan",
        "outstanding_principal": _money("48000.00"),
        "arrears": _money("0.00"),
        "accrued_interest": _money("0.00"),
        "penalty_interest": _money("0.00"),
        "fees": _money("0.00"),
        "annual_rate": "0.0720",
        "remaining_term_months": 15,
        "contractual_instalment": _money("3360.00"),
        "next_due_date": "2026-12-10",
        "days_past_due": 0,
    },
    "income": {
        "monthly_income": _money("12000.00"),
        "essential_expenditure": _money("5000.00"),
        "other_debt_payments": _money("0.00"),
        "household_size": 2,
    },
    "as_of": AS_OF.isoformat(),
}


def request(**changes: Any) -> PlanRequested:
    """The base request with changes; ``debt`` and ``income`` changes merge into their sections."""
    document = copy.deepcopy(BASE)
    for key, value in changes.items():
        if key in ("debt", "income") and isinstance(value, dict) and isinstance(document.get(key), dict):
            document[key].update(value)
        else:
            document[key] = value
    return PlanRequested.model_validate(document)


def plan(req: PlanRequested, policy: PlanPolicy = POLICY) -> dict[str, Any]:
    data = PlanEngine(policy).plan(req)
    PlanProposed.model_validate(data)  # every answer is a valid plan.proposed
    return data


def kinds(proposal: dict[str, Any]) -> list[str]:
    return [component["kind"] for component in proposal["components"]]


def with_kinds(data: dict[str, Any], *wanted: str) -> list[dict[str, Any]]:
    return [p for p in data["proposals"] if kinds(p) == list(wanted)]


def amounts(proposal: dict[str, Any], column: str) -> list[Decimal]:
    return [Decimal(row[column]["amount"]) for row in proposal["schedule"]]


def affordable(data: dict[str, Any]) -> Decimal:
    return Decimal(data["affordable_instalment"]["amount"])


# ---------------------------------------------------------------------------------------- affordability


def test_the_surplus_is_income_less_essentials_and_other_debts_less_the_margin() -> None:
    data = plan(request(income={"other_debt_payments": _money("1000.00")}))
    assert data["monthly_surplus"]["amount"] == "6000.00"
    assert data["affordable_instalment"]["amount"] == "5400.00"  # 10 % margin
    assert data["surplus_from_defaults"] is False


def test_missing_essentials_take_the_household_default() -> None:
    statement = {"monthly_income": _money("9000.00"), "essential_expenditure": None, "household_size": 3}
    data = plan(request(income=statement))
    # 2,200 for the first person and 900 for each other one.
    assert data["monthly_surplus"]["amount"] == "5000.00"
    assert data["surplus_from_defaults"] is True


def test_without_a_statement_the_customers_word_or_half_the_instalment() -> None:
    stated = plan(request(income=None, preferred_instalment=_money("1800.00")))
    assert stated["affordable_instalment"]["amount"] == "1800.00"
    assert stated["surplus_from_defaults"] is True
    unstated = plan(request(income=None))
    assert unstated["affordable_instalment"]["amount"] == "1680.00"  # half of 3,360.00


def test_every_proposal_fits_the_affordable_instalment_in_every_month() -> None:
    data = plan(request(income={"monthly_income": _money("7000.00")}))
    assert data["proposals"]
    for proposal in data["proposals"]:
        assert proposal["affordable"] is True
        assert max(amounts(proposal, "payment")) <= affordable(data)


# ---------------------------------------------------------------------------------------- the waterfall


def test_an_affordable_promise_to_pay_is_the_waterfalls_answer() -> None:
    req = request(
        debt={
            "arrears": _money("3360.00"),
            "accrued_interest": _money("290.00"),
            "penalty_interest": _money("12.00"),
            "days_past_due": 12,
        },
        income={"monthly_income": _money("20000.00")},
    )
    data = plan(req)
    (promise,) = with_kinds(data, "promise_to_pay")
    overdue = Decimal("3360.00") + Decimal("12.00")  # the arrears (their interest included) and the penalty
    rows = promise["schedule"]
    promised = [row for row in rows if date.fromisoformat(row["due_date"]) <= date(2026, 12, 22)]
    assert sum(Decimal(row["payment"]["amount"]) for row in promised if row["due_date"] != "2026-12-10") == overdue
    # Paid within the month rather than today: the bank gives up only the days' discounting.
    assert Decimal(promise["loss_vs_contract"]["amount"]) < overdue * Decimal("0.01")
    assert promise["approval_tier"] == "agent"
    assert data["proposals"][0]["rank"] == 1
    # The contract continues: its instalments are the annuity of the principal not in arrears.
    not_in_arrears = Decimal("48000.00") - (Decimal("3360.00") - Decimal("290.00"))
    contract = schedule(
        Terms(not_in_arrears, Decimal("0.0720"), 15, AS_OF, date(2026, 12, 10), day_count=DayCount.ACTUAL_360)
    )
    contract_rows = [row for row in rows if row["due_date"].endswith("-10")]
    assert [Decimal(row["payment"]["amount"]) for row in contract_rows] == [row.payment for row in contract]


def test_the_waterfall_stops_at_the_first_affordable_lever() -> None:
    # The arrears cannot be paid at once, but the regular instalment fits: capitalising is enough.
    req = request(
        debt={
            "arrears": _money("6720.00"),
            "accrued_interest": _money("560.00"),
            "penalty_interest": _money("40.00"),
            "days_past_due": 45,
        },
        income={"monthly_income": _money("9000.00"), "essential_expenditure": _money("4500.00")},
    )
    data = plan(req)
    (capitalised,) = with_kinds(data, "capitalise_arrears")
    assert Decimal(capitalised["opening_balance"]["amount"]) == Decimal("48560.00")  # principal + accrued interest
    assert sum(amounts(capitalised, "fees")) == Decimal("40.00")  # the penalty, spread without interest
    assert sum(amounts(capitalised, "principal")) == Decimal("48560.00")
    assert capitalised["term_months"] == 15
    assert not with_kinds(data, "capitalise_arrears", "fee_waiver")  # not needed, so not applied


def test_a_partial_waiver_when_part_of_the_penalty_is_enough() -> None:
    req = request(
        debt={
            "arrears": _money("3360.00"),
            "accrued_interest": _money("300.00"),
            "penalty_interest": _money("600.00"),
            "days_past_due": 40,
        },
        income={"monthly_income": _money("8800.00"), "essential_expenditure": _money("5000.00")},
    )
    data = plan(req)
    level = annuity_payment(Decimal("48300.00"), Decimal("0.0720"), 15)
    assert affordable(data) >= level  # the capitalised instalment alone fits; the spread penalty does not
    (waived,) = with_kinds(data, "capitalise_arrears", "fee_waiver")
    share = Decimal(waived["interest_waived"]["amount"]) / Decimal("600.00")
    assert 0 < share < 1
    assert "减免" in waived["components"][1]["description"]
    assert max(amounts(waived, "payment")) <= affordable(data)


def test_illness_earns_a_holiday_then_a_longer_term() -> None:
    example = json.loads((PROJECT_ROOT / "services/planner/examples/ill-customer.json").read_text())
    from services.planner.cli import read_request

    req = read_request(example, b"ill", today=AS_OF, source="ill-customer.json")
    data = plan(req)
    holiday_plans = [p for p in data["proposals"] if "deferral" in kinds(p)]
    assert holiday_plans
    plan_with_holiday = holiday_plans[0]
    assert kinds(plan_with_holiday) == ["capitalise_arrears", "fee_waiver", "deferral", "term_extension"]
    assert amounts(plan_with_holiday, "payment")[:3] == [Decimal("0.00")] * 3  # illness: 3 months, nothing paid
    assert amounts(plan_with_holiday, "payment")[3] > 0
    assert plan_with_holiday["term_months"] > 15
    assert sum(amounts(plan_with_holiday, "principal")) == Decimal(plan_with_holiday["opening_balance"]["amount"])


def test_no_holiday_for_a_lasting_hardship_unless_asked() -> None:
    tight = {"monthly_income": _money("7000.00")}
    assert not any("deferral" in kinds(p) for p in plan(request(income=tight))["proposals"])
    asked = plan(request(income=tight, preferred_kinds=["deferral", "term_extension"]))
    assert any("deferral" in kinds(p) for p in asked["proposals"])


def test_a_term_extension_takes_the_fewest_months_that_fit() -> None:
    data = plan(request(income={"monthly_income": _money("7500.00")}))
    (extended,) = with_kinds(data, "term_extension")
    months = extended["term_months"]
    target = affordable(data)
    first_due = date(2026, 12, 10)

    def heaviest(term: int) -> Decimal:
        terms = Terms(Decimal("48000.00"), Decimal("0.0720"), term, AS_OF, first_due, day_count=DayCount.ACTUAL_360)
        return max(row.payment for row in schedule(terms))

    assert heaviest(months) <= target < heaviest(months - 1)
    last_due = add_months(first_due, months - 1).isoformat()
    assert extended["components"][0]["description"] == f"剩余期限由15个月延长至{months}个月，最后一期{last_due}"


def test_the_term_the_customer_asks_for_is_proposed_and_one_past_the_cap_is_refused() -> None:
    data = plan(request(preferred_term_months=36, income={"monthly_income": _money("7500.00")}))
    asked = [p for p in data["proposals"] if p["term_months"] == 36 and kinds(p) == ["term_extension"]]
    assert asked
    assert "剩余期限由15个月延长至36个月" in asked[0]["components"][0]["description"]
    too_long = plan(request(preferred_term_months=72, income={"monthly_income": _money("7500.00")}))
    reasons = {refused["kind"]: refused["reason"] for refused in too_long["refused"]}
    assert (
        reasons["term_extension"] == "the customer asked for 72 months; the policy's cap for personal_loan in CN is 60"
    )


def test_a_rate_reduction_finds_the_highest_rate_that_fits_and_respects_the_floor() -> None:
    # The term is already at the 60-month cap: only the rate can move.
    req = request(
        debt={"remaining_term_months": 60, "annual_rate": "0.1200", "outstanding_principal": _money("150000.00")},
        income={"monthly_income": _money("8300.00")},
    )
    data = plan(req)
    (reduced,) = with_kinds(data, "rate_reduction")
    rate = Decimal(reduced["annual_rate"])
    assert Decimal("0.0300") <= rate < Decimal("0.1200")

    def heaviest(annual: Decimal) -> Decimal:
        terms = Terms(Decimal("150000.00"), annual, 60, AS_OF, date(2026, 12, 10), day_count=DayCount.ACTUAL_360)
        return max(row.payment for row in schedule(terms))

    assert heaviest(rate) <= affordable(data) < heaviest(rate + Decimal("0.0001"))


def test_a_step_up_variant_returns_to_the_contract_rate_and_lengthens_the_term_to_stay_affordable() -> None:
    req = request(
        debt={"remaining_term_months": 40, "annual_rate": "0.1200", "outstanding_principal": _money("100000.00")},
        income={"monthly_income": _money("8000.00")},
    )
    data = plan(req)
    stepped = [p for p in data["proposals"] if "12期后恢复至12.00%" in p["components"][-1]["description"]]
    assert stepped
    proposal = stepped[0]
    assert kinds(proposal) == ["term_extension", "rate_reduction"]
    rows = proposal["schedule"]
    assert proposal["term_months"] <= 60
    assert rows[0]["payment"] != rows[13]["payment"]  # the instalment is recomputed at the step
    balance = Decimal(rows[11]["remaining_balance"]["amount"])
    days = (date.fromisoformat(rows[12]["due_date"]) - date.fromisoformat(rows[11]["due_date"])).days
    assert Decimal(rows[12]["interest"]["amount"]) == (balance * Decimal("0.12") * days / 360).quantize(Decimal("0.01"))
    assert max(amounts(proposal, "payment")) <= affordable(data)


def test_a_credit_card_gets_a_personalised_instalment_plan_of_at_most_60_months() -> None:
    req = request(
        debt={
            "product": "credit_card",
            "outstanding_principal": _money("90000.00"),
            "accrued_interest": _money("1350.00"),
            "arrears": _money("9000.00"),
            "penalty_interest": _money("450.00"),
            "annual_rate": "0.1825",
            "remaining_term_months": 0,
            "contractual_instalment": _money("9000.00"),
            "days_past_due": 35,
        },
        income={"monthly_income": _money("8000.00"), "essential_expenditure": _money("5000.00")},
    )
    data = plan(req)
    cards = [p for p in data["proposals"] if "card_instalment" in kinds(p)]
    assert cards
    for proposal in cards:
        assert proposal["term_months"] <= 60
        assert proposal["annual_rate"] == "0.00"  # interest stops (the policy's parameter)
        fees = amounts(proposal, "fees")
        assert fees[-1] == (Decimal("91350.00") * Decimal("0.0030")).quantize(Decimal("0.01"))  # fees continue
        assert sum(amounts(proposal, "principal")) == Decimal("91350.00")


def test_a_card_debt_too_large_for_60_months_is_refused_with_the_cap() -> None:
    req = request(
        debt={
            "product": "credit_card",
            "outstanding_principal": _money("400000.00"),
            "annual_rate": "0.1825",
            "remaining_term_months": 0,
            "contractual_instalment": _money("40000.00"),
        },
        income={"monthly_income": _money("8000.00"), "essential_expenditure": _money("5000.00")},
    )
    data = plan(req)
    assert not [p for p in data["proposals"] if "card_instalment" in kinds(p)]
    reasons = {refused["kind"]: refused["reason"] for refused in data["refused"]}
    assert "60 months" in reasons["card_instalment"]


def test_late_debts_can_settle_within_the_discount_cap() -> None:
    req = request(
        hardship_reason="job_loss",
        debt={
            "outstanding_principal": _money("80000.00"),
            "arrears": _money("20000.00"),
            "accrued_interest": _money("3000.00"),
            "penalty_interest": _money("1500.00"),
            "fees": _money("300.00"),
            "days_past_due": 150,
        },
        income={
            "monthly_income": _money("9000.00"),
            "essential_expenditure": _money("3600.00"),
            "savings_available": _money("60000.00"),
        },
    )
    data = plan(req)
    owed = Decimal(data["total_owed"]["amount"])
    assert owed == Decimal("84800.00")
    lump = with_kinds(data, "settlement_lump_sum")
    spread = with_kinds(data, "settlement_instalments")
    assert lump
    assert spread
    for proposal in lump + spread:
        paid = Decimal(proposal["total_repayable"]["amount"])
        assert paid >= owed * (1 - Decimal("0.40"))  # the personal-loan discount cap
        forgiven = (
            Decimal(proposal["principal_waived"]["amount"])
            + Decimal(proposal["interest_waived"]["amount"])
            + Decimal(proposal["fees_waived"]["amount"])
        )
        assert paid + forgiven == owed
        assert paid > Decimal(data["expected_recovery_without_plan"]["amount"])
    assert lump[0]["method"] == "lump_sum"
    assert lump[0]["term_months"] == 1
    assert Decimal(lump[0]["total_repayable"]["amount"]) <= Decimal("60000.00")
    assert 2 <= spread[0]["term_months"] <= 12


def test_settlement_is_refused_for_a_recent_arrear_when_the_customer_asks() -> None:
    data = plan(request(preferred_kinds=["settlement_lump_sum"], debt={"days_past_due": 20}))
    reasons = {refused["kind"]: refused["reason"] for refused in data["refused"]}
    assert "at least 90 days past due" in reasons["settlement_lump_sum"]


def test_a_kind_the_policy_does_not_allow_is_refused_when_asked() -> None:
    data = plan(request(preferred_kinds=["card_instalment"]))
    reasons = {refused["kind"]: refused["reason"] for refused in data["refused"]}
    assert "does not allow card_instalment for personal_loan in CN" in reasons["card_instalment"]


def test_nothing_is_proposed_when_nothing_is_affordable() -> None:
    data = plan(request(income={"monthly_income": _money("5100.00")}))  # 90.00 a month to spare
    assert data["proposals"] == []
    reasons = {refused["kind"]: refused["reason"] for refused in data["refused"]}
    assert "term_extension + rate_reduction" in reasons["rate_reduction"]
    assert "even at the policy's limits (60 months, a rate of 3.00%)" in reasons["rate_reduction"]


# ---------------------------------------------------------------------------------------- bank's view, tiers


def test_approval_tiers_follow_the_loss_the_bank_accepts() -> None:
    data = plan(request(income={"monthly_income": _money("7000.00")}))
    owed = Decimal(data["total_owed"]["amount"])
    for proposal in data["proposals"]:
        loss = Decimal(proposal["loss_vs_contract"]["amount"])
        if loss <= min(owed * Decimal("0.02"), Decimal("2000.00")):
            assert proposal["approval_tier"] == "agent"
        elif loss <= min(owed * Decimal("0.15"), Decimal("50000.00")):
            assert proposal["approval_tier"] == "team_lead"
        else:
            assert proposal["approval_tier"] == "risk_committee"


def test_a_deep_rate_cut_needs_a_higher_approver() -> None:
    req = request(
        debt={"remaining_term_months": 60, "annual_rate": "0.1200", "outstanding_principal": _money("150000.00")},
        income={"monthly_income": _money("8300.00")},
    )
    (reduced,) = with_kinds(plan(req), "rate_reduction")
    assert Decimal(reduced["loss_vs_contract"]["amount"]) > Decimal("2000.00")
    assert reduced["approval_tier"] in ("team_lead", "risk_committee")


def test_proposals_are_ranked_by_expected_value() -> None:
    data = plan(request(income={"monthly_income": _money("7000.00")}, hardship_reason="illness"))
    values = [Decimal(p["net_present_value"]["amount"]) for p in data["proposals"]]
    assert [p["rank"] for p in data["proposals"]] == list(range(1, len(values) + 1))
    assert values == sorted(values, reverse=True)


def test_expected_recovery_without_a_plan_is_below_what_is_owed() -> None:
    data = plan(request())
    assert 0 < Decimal(data["expected_recovery_without_plan"]["amount"]) < Decimal(data["total_owed"]["amount"])


def test_plan_ids_are_derived_from_the_request_and_the_plans_shape() -> None:
    first = plan(request(income={"monthly_income": _money("7000.00")}))
    again = plan(request(income={"monthly_income": _money("7000.00")}))
    assert first == again
    other = plan(request(income={"monthly_income": _money("7000.00")}, request_id=str(uuid.uuid4())))
    assert {p["plan_id"] for p in first["proposals"]}.isdisjoint({p["plan_id"] for p in other["proposals"]})
    assert len({p["plan_id"] for p in first["proposals"]}) == len(first["proposals"])


@pytest.mark.parametrize("method", ["annuity", "equal_principal"])
@pytest.mark.parametrize("day_count", ["30/360", "actual/365", "actual/360"])
def test_method_and_day_count_are_parameters(method: str, day_count: str) -> None:
    data = plan(request(method=method, day_count=day_count, income={"monthly_income": _money("7500.00")}))
    assert data["proposals"]
    for proposal in data["proposals"]:
        assert proposal["day_count"] == day_count
        if proposal["method"] in ("annuity", "equal_principal"):
            assert proposal["method"] == method


# ---------------------------------------------------------------------------------------- bad requests


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"debt": {"outstanding_principal": _money("-100.00")}}, "debt.outstanding_principal: must not be negative"),
        ({"debt": {"arrears": _money("100.00", "USD")}}, "currency USD differs"),
        ({"debt": {"annual_rate": "4.35"}}, "rates are fractions"),
        ({"debt": {"fees": _money("1.005")}}, "in cents"),
        ({"debt": {"outstanding_principal": _money("0.00")}}, "nothing is owed"),
        ({"preferred_instalment": _money("-5.00")}, "preferred_instalment: must not be negative"),
    ],
)
def test_a_request_that_can_never_give_a_plan_says_why(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(PlanRequestError, match=message):
        ENGINE.plan(request(**changes))


def test_a_currency_the_policy_does_not_cover_is_refused() -> None:
    debt = dict(BASE["debt"])
    for name, value in debt.items():
        if isinstance(value, dict):
            debt[name] = {"amount": value["amount"], "currency": "EUR"}
    with pytest.raises(PlanRequestError, match="EUR is not one the plan policy covers"):
        ENGINE.plan(request(debt=debt, income=None))


# ---------------------------------------------------------------------------------------- the processor's encoding


def _event(data: dict[str, Any]) -> bytes:
    event = PlanRequestedEvent(
        id=uuid.UUID("11111111-2222-4333-8444-555555555555"),
        source="/parley/tracker",
        time=datetime(2026, 11, 22, 9, 30, tzinfo=UTC),
        subject=data["case_id"],
        data=PlanRequested.model_validate(data),
    )
    return event.to_json_bytes()


def test_the_processor_publishes_a_valid_plan_proposed_keyed_by_the_case() -> None:
    raw = _event(request(income={"monthly_income": _money("7000.00")}).model_dump(mode="json"))
    now = datetime(2026, 11, 22, 9, 31, tzinfo=UTC)
    ((event_id, record),) = plan_records(
        ENGINE, "plan.proposed", [InboundMessage("plan.requested", 0, 7, None, raw, [])], now
    )
    assert event_id == "11111111-2222-4333-8444-555555555555"
    assert record.key == BASE["case_id"].encode()
    assert ("content-type", b"application/cloudevents+json; charset=utf-8") in record.headers
    event = PlanProposedEvent.model_validate_json(record.value)
    assert event.id == proposed_event_id(uuid.UUID(event_id))
    assert event.subject == BASE["case_id"]
    assert event.data.proposals


def test_the_processor_dead_letters_what_can_never_give_a_plan() -> None:
    bad = request().model_dump(mode="json")
    bad["debt"]["outstanding_principal"]["amount"] = "-100.00"
    with pytest.raises(PermanentError) as raised:
        plan_records(ENGINE, "t", [InboundMessage("plan.requested", 0, 1, None, _event(bad), [])], datetime.now(UTC))
    assert raised.value.reason == INVALID_REQUEST
    assert "must not be negative" in raised.value.detail
    with pytest.raises(PermanentError) as raised:
        plan_records(ENGINE, "t", [InboundMessage("plan.requested", 0, 2, None, b"{not json", [])], datetime.now(UTC))
    assert raised.value.reason == "schema_violation"
