"""Plan lifecycle in the tracker: proposed, offered, accepted, active, paid, completed; declined, countered, broken."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal

import pytest

from schemas.values import CaseStatus, Resolution
from services.tracker.logic import PlanStatus, TrackerConfig, World, case_id_for, caused_event_id
from tests.unit.test_tracker_support import (
    CONFIG,
    CUSTOMER,
    T0,
    account,
    action,
    an_id,
    emitted_of,
    proposal,
    proposed,
    routed,
    run,
    tracking_types,
)

FEEDBACK = an_id("plans-feedback")
CASE = case_id_for(FEEDBACK)
REQUEST = an_id("plans-request")
BEST = proposal(an_id("plan-best"), rank=1, instalments=3, amount="1496.12")
SECOND = proposal(an_id("plan-second"), rank=2, instalments=6, amount="780.00")


def at(hours: float) -> object:
    return T0 + timedelta(hours=hours)


def negotiating_world(config: TrackerConfig = CONFIG) -> World:
    """A hardship case with proposals, contacted, the best plan offered."""
    world = World(accounts={CUSTOMER: account()})
    run(
        world,
        routed(FEEDBACK),
        proposed(CASE, REQUEST, [BEST, SECOND], T0 + timedelta(minutes=1)),
        action("contacted", CASE, T0 + timedelta(minutes=20), contact_channel="phone"),
        config=config,
    )
    outcome = run(world, action("plan_offered", CASE, T0 + timedelta(minutes=30), plan_id=BEST.plan_id), config=config)
    assert tracking_types(outcome) == ["tracking.plan_offered"]
    assert world.cases[CASE].status is CaseStatus.NEGOTIATING
    return world


def accept(world: World, plan_id: object = None) -> list[str]:
    outcome = run(world, action("customer_accepted", CASE, T0 + timedelta(minutes=40), plan_id=plan_id or BEST.plan_id))
    return tracking_types(outcome)


def pay(world: World, number: int, amount: str = "1496.12", hours: float = 24.0) -> list[object]:
    outcome = run(
        world,
        action(
            "payment_received",
            CASE,
            T0 + timedelta(hours=hours * number),
            agent_id="collections",
            plan_id=BEST.plan_id,
            instalment_number=number,
            amount={"amount": amount, "currency": "CNY"},
        ),
    )
    return [e.event for e in outcome.emitted]


def miss(world: World, number: int) -> list[object]:
    outcome = run(
        world,
        action(
            "payment_missed",
            CASE,
            T0 + timedelta(days=30 * number),
            agent_id="collections",
            plan_id=BEST.plan_id,
            instalment_number=number,
            due_date=(date(2026, 12, 10) + timedelta(days=30 * (number - 1))).isoformat(),
        ),
    )
    return [e.event for e in outcome.emitted]


def test_proposals_are_stored_and_announced() -> None:
    world = World()
    outcome = run(world, routed(FEEDBACK), proposed(CASE, REQUEST, [SECOND, BEST], T0 + timedelta(minutes=1)))
    (step,) = emitted_of(outcome, "tracking.plan_proposed")
    assert step.data.proposals == 2
    assert step.data.best_plan_id == BEST.plan_id
    assert step.data.request_id == REQUEST
    assert {record.plan_id for record in outcome.proposals_to_insert} == {BEST.plan_id, SECOND.plan_id}


def test_offer_accept_active_paid_in_full_completes_and_resolves() -> None:
    world = negotiating_world()
    assert accept(world) == ["tracking.plan_accepted", "tracking.plan_active"]
    assert world.cases[CASE].status is CaseStatus.PLAN_ACTIVE
    assert world.plans[BEST.plan_id].status is PlanStatus.ACTIVE

    first = pay(world, 1)
    assert [e.type for e in first] == ["com.parley.tracking.instalment_paid.v1"]
    assert first[0].data.instalment_number == 1
    assert first[0].data.amount.amount == Decimal("1496.12")
    pay(world, 2)
    last = pay(world, 3, amount="1496.14")  # the last instalment absorbs rounding
    assert [e.type for e in last] == [
        "com.parley.tracking.instalment_paid.v1",
        "com.parley.tracking.plan_completed.v1",
        "com.parley.tracking.resolved.v1",
    ]
    completed, resolved = last[1], last[2]
    assert completed.data.total_repaid.amount == Decimal("4488.38")
    assert completed.data.status is CaseStatus.RESOLVED
    assert resolved.data.resolution is Resolution.PLAN_AGREED
    assert resolved.data.agent_id == "parley-tracker"
    assert world.cases[CASE].status is CaseStatus.RESOLVED
    assert world.plans[BEST.plan_id].status is PlanStatus.COMPLETED


def test_plan_active_carries_instalments_and_the_first_due_date_of_the_proposal() -> None:
    world = negotiating_world()
    outcome = run(world, action("customer_accepted", CASE, T0 + timedelta(minutes=40), plan_id=BEST.plan_id))
    (active,) = emitted_of(outcome, "tracking.plan_active")
    assert active.data.instalments == 3
    assert active.data.instalment.amount == Decimal("1496.12")
    assert active.data.first_due_date == date(2026, 12, 10)
    (accepted,) = emitted_of(outcome, "tracking.plan_accepted")
    assert accepted.data.agent_id == "E3172"


def test_accepting_one_plan_supersedes_the_other_offers() -> None:
    world = negotiating_world()
    run(world, action("plan_offered", CASE, T0 + timedelta(minutes=35), plan_id=SECOND.plan_id))
    accept(world, SECOND.plan_id)
    assert world.plans[SECOND.plan_id].status is PlanStatus.ACTIVE
    assert world.plans[BEST.plan_id].status is PlanStatus.SUPERSEDED


def test_missed_instalments_break_the_plan_at_the_limit_and_negotiation_starts_again() -> None:
    world = negotiating_world()
    accept(world)
    first = miss(world, 1)
    assert [e.type for e in first] == ["com.parley.tracking.instalment_missed.v1"]
    assert first[0].data.amount_due.amount == Decimal("1496.12")
    assert first[0].data.due_date == date(2026, 12, 10)
    assert world.cases[CASE].status is CaseStatus.PLAN_ACTIVE

    second = miss(world, 2)  # CONFIG breaks a plan at 2 missed
    assert [e.type for e in second] == [
        "com.parley.tracking.instalment_missed.v1",
        "com.parley.tracking.plan_broken.v1",
        "com.parley.plan.requested.v1",
    ]
    broken, request = second[1], second[2]
    assert broken.data.missed_instalments == 2
    assert broken.data.status is CaseStatus.NEGOTIATING
    assert "1, 2" in broken.data.reason
    assert request.data.requested_by == "tracker"
    assert world.cases[CASE].status is CaseStatus.NEGOTIATING
    assert world.plans[BEST.plan_id].status is PlanStatus.BROKEN


def test_a_missed_instalment_paid_late_no_longer_counts_towards_breaking() -> None:
    world = negotiating_world()
    accept(world)
    miss(world, 1)
    pay(world, 1)
    events = miss(world, 2)
    assert [e.type for e in events] == ["com.parley.tracking.instalment_missed.v1"]
    assert world.plans[BEST.plan_id].missed == {2}


def test_the_break_limit_is_configuration() -> None:
    config = TrackerConfig(plan_broken_after_missed=1)
    world = negotiating_world(config)
    run(world, action("customer_accepted", CASE, T0 + timedelta(hours=1), plan_id=BEST.plan_id), config=config)
    outcome = run(
        world,
        action(
            "payment_missed",
            CASE,
            T0 + timedelta(days=30),
            plan_id=BEST.plan_id,
            instalment_number=1,
            due_date="2026-12-10",
        ),
        config=config,
    )
    assert "tracking.plan_broken" in tracking_types(outcome)


def test_a_counter_offer_asks_the_planner_again_with_the_customers_instalment() -> None:
    world = negotiating_world()
    counter = action(
        "customer_countered",
        CASE,
        T0 + timedelta(hours=1),
        plan_id=BEST.plan_id,
        proposed_instalment={"amount": "1200.00", "currency": "CNY"},
        proposed_term_months=9,
    )
    outcome = run(world, counter)
    assert tracking_types(outcome) == ["tracking.plan_countered", "plan.requested"]
    countered, request = (e.event for e in outcome.emitted)
    assert countered.data.replan_requested is True
    assert countered.data.proposed_term_months == 9
    assert request.data.preferred_instalment.amount == Decimal("1200.00")
    assert request.data.requested_by == "E3172"
    assert request.data.request_id == caused_event_id(counter.event.id, "plan_request")
    assert world.plans[BEST.plan_id].status is PlanStatus.COUNTERED


def test_a_declined_offer_is_recorded_and_the_case_stays_in_negotiation() -> None:
    world = negotiating_world()
    outcome = run(
        world,
        action("customer_declined", CASE, T0 + timedelta(hours=1), plan_id=BEST.plan_id, reason="cannot afford it"),
    )
    (declined,) = emitted_of(outcome, "tracking.plan_declined")
    assert declined.data.reason == "cannot afford it"
    assert world.plans[BEST.plan_id].status is PlanStatus.DECLINED
    assert world.cases[CASE].status is CaseStatus.NEGOTIATING
    # A declined plan can no longer be accepted.
    refused = run(world, action("customer_accepted", CASE, T0 + timedelta(hours=2), plan_id=BEST.plan_id))
    (refusal,) = emitted_of(refused, "tracking.transition_rejected")
    assert refusal.data.reason == f"plan {BEST.plan_id} is declined, not on offer"


def test_an_agent_asks_for_plans() -> None:
    world = World(accounts={CUSTOMER: account()})
    run(world, routed(FEEDBACK, category="loan_approval"))
    outcome = run(world, action("plan_requested", CASE, T0 + timedelta(hours=1), agent_id="E9", note="call back"))
    (request,) = emitted_of(outcome, "plan.requested")
    assert request.data.requested_by == "E9"
    assert world.cases[CASE].status is CaseStatus.NEGOTIATING


@pytest.mark.parametrize(
    ("customer_ref", "reason"),
    [
        (
            "C-unknown",
            "no account snapshot for this customer: load the core-banking extract with `parley accounts load`",
        ),
        (None, "the customer is not identified, so the tracker knows no debt to plan for"),
    ],
)
def test_asking_for_plans_without_a_known_debt_is_refused(customer_ref: str | None, reason: str) -> None:
    world = World(accounts={CUSTOMER: account()})
    run(world, routed(FEEDBACK, customer_ref=customer_ref))
    outcome = run(world, action("plan_requested", CASE, T0 + timedelta(hours=1)))
    (refusal,) = emitted_of(outcome, "tracking.transition_rejected")
    assert refusal.data.reason == reason
    assert world.cases[CASE].status is CaseStatus.ROUTED


@pytest.mark.parametrize(
    ("name", "fields", "reason"),
    [
        ("plan_offered", {"plan_id": "never"}, "plan {never} was not proposed for this case"),
        ("customer_accepted", {"plan_id": "second"}, "plan {second} was never offered on this case"),
    ],
)
def test_offers_and_acceptances_must_match_the_record(name: str, fields: dict[str, str], reason: str) -> None:
    world = negotiating_world()
    ids = {"never": an_id("plan-never-proposed"), "second": SECOND.plan_id}
    outcome = run(world, action(name, CASE, T0 + timedelta(hours=1), plan_id=ids[fields["plan_id"]]))
    (refusal,) = emitted_of(outcome, "tracking.transition_rejected")
    assert refusal.data.reason == reason.format(**ids)


def test_a_plan_of_another_case_cannot_be_offered() -> None:
    world = negotiating_world()
    other_feedback = an_id("other-case-feedback")
    other_case = case_id_for(other_feedback)
    run(world, routed(other_feedback), action("contacted", other_case, T0, contact_channel="phone"))
    outcome = run(world, action("plan_offered", other_case, T0 + timedelta(hours=1), plan_id=SECOND.plan_id))
    (refusal,) = emitted_of(outcome, "tracking.transition_rejected")
    assert refusal.data.reason == f"plan {SECOND.plan_id} was not proposed for this case"


@pytest.mark.parametrize(
    ("number", "currency", "reason"),
    [
        (1, "CNY", "instalment 1 of plan {plan} is already paid"),
        (4, "CNY", "plan {plan} has no instalment 4 (it has 3)"),
        (2, "USD", "payment in USD on a plan in CNY"),
    ],
)
def test_impossible_payments_are_refused(number: int, currency: str, reason: str) -> None:
    world = negotiating_world()
    accept(world)
    pay(world, 1)
    outcome = run(
        world,
        action(
            "payment_received",
            CASE,
            T0 + timedelta(days=40),
            plan_id=BEST.plan_id,
            instalment_number=number,
            amount={"amount": "1496.12", "currency": currency},
        ),
    )
    (refusal,) = emitted_of(outcome, "tracking.transition_rejected")
    assert refusal.data.reason == reason.format(plan=BEST.plan_id)
    assert world.plans[BEST.plan_id].paid == {1}


def test_a_miss_reported_twice_is_refused() -> None:
    world = negotiating_world()
    accept(world)
    miss(world, 1)
    events = miss(world, 1)
    assert [e.type for e in events] == ["com.parley.tracking.transition_rejected.v1"]
    assert events[0].data.reason == f"instalment 1 of plan {BEST.plan_id} is already recorded as missed"


def test_a_resolved_case_cannot_take_payments_and_an_active_plan_blocks_resolution() -> None:
    world = negotiating_world()
    accept(world)
    outcome = run(world, action("resolved", CASE, T0 + timedelta(days=1), resolution="plan_agreed"))
    (refusal,) = emitted_of(outcome, "tracking.transition_rejected")
    assert "while the case is plan_active" in refusal.data.reason
