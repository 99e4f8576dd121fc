"""The case state machine, exhaustively: every status x every action, allowed (with the status after) or refused.

The expected table is written out here, independently of services.tracker.logic.TRANSITIONS, and each
pair is driven through the real batch logic (not just the table lookup): an allowed action changes the
status as expected and emits no refusal; a refused one emits exactly one tracking.transition_rejected
naming the event, changes nothing but the audit trail, and never raises.
"""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest

from schemas.values import CaseStatus
from services.tracker.logic import TRANSITIONS, Action, Incoming, PlanStatus, World, transition
from tests.unit.test_tracker_support import (
    T0,
    account,
    action,
    an_id,
    case_in,
    emitted_of,
    plan_state,
    proposal,
    proposed,
    routed,
    run,
)

OP, T, R, C, N, P = (
    CaseStatus.OPENED,
    CaseStatus.TRIAGED,
    CaseStatus.ROUTED,
    CaseStatus.CONTACTED,
    CaseStatus.NEGOTIATING,
    CaseStatus.PLAN_ACTIVE,
)
RS, F, CL, RO = CaseStatus.RESOLVED, CaseStatus.FOLLOWED_UP, CaseStatus.CLOSED, CaseStatus.REOPENED
ALL = (OP, T, R, C, N, P, RS, F, CL, RO)
WORKING = (R, RO, C, N, P)
NOT_RESOLVED = (OP, T, R, RO, C, N, P)


def same(*statuses: CaseStatus) -> dict[CaseStatus, CaseStatus]:
    return {s: s for s in statuses}


EXPECTED: dict[str, dict[CaseStatus, CaseStatus]] = {
    "routed": {OP: R, T: R, R: R, RO: R, C: C, N: N, P: P},
    "merged": same(*NOT_RESOLVED),
    "split": same(*ALL),
    "post_update": same(*ALL),
    "plan_proposed": same(*WORKING),
    "case_accepted": same(*WORKING),
    "contacted": {R: C, RO: C, C: C, N: N, P: P},
    "contact_attempt_failed": same(*WORKING),
    "note_added": same(*ALL),
    "plan_requested": {R: N, RO: N, C: N, N: N},
    "plan_offered": {R: N, RO: N, C: N, N: N},
    "customer_accepted": {N: P},
    "customer_declined": {N: N},
    "customer_countered": {N: N},
    "payment_received": {P: P},
    "payment_missed": {P: P},
    "resolved": {R: RS, RO: RS, C: RS, N: RS},
    "follow_up_done": {RS: F},
    "escalated": same(*WORKING),
    "clock_paused": same(*NOT_RESOLVED),
    "clock_resumed": same(*NOT_RESOLVED),
    "clock_extended": same(*NOT_RESOLVED),
    "reopened": {RS: RO, F: RO, CL: RO},
    "merge_undone": same(*ALL),
}

CASE = an_id("sm-case")
FEEDBACK = an_id("sm-feedback")
TO_OFFER = proposal(an_id("sm-plan-to-offer"), instalments=3)
OFFERED = proposal(an_id("sm-plan-offered"), instalments=3)
ACTIVE = proposal(an_id("sm-plan-active"), instalments=3)
LATER = T0 + timedelta(hours=3)


def test_the_expected_table_covers_every_action() -> None:
    assert set(EXPECTED) == {action.value for action in Action}


def world_with(status: CaseStatus) -> World:
    """A case in ``status`` with everything an allowed action needs: the customer's debt, a proposal to
    offer, a plan on offer and an active plan of three instalments."""
    from services.tracker.logic import ProposalRecord

    return World(
        cases={CASE: case_in(status, CASE, FEEDBACK, resolved_at=T0 if status in (RS, F, CL) else None)},
        plans={
            OFFERED.plan_id: plan_state(OFFERED, CASE, PlanStatus.OFFERED),
            ACTIVE.plan_id: plan_state(ACTIVE, CASE, PlanStatus.ACTIVE),
        },
        proposals={TO_OFFER.plan_id: ProposalRecord(TO_OFFER.plan_id, CASE, an_id("request"), TO_OFFER, T0)},
        accounts={"C20458813": account()},
    )


def incoming_for(name: str) -> Incoming:
    other_feedback = an_id(f"sm-other-feedback-{name}")
    if name == "routed":
        return routed(other_feedback, case_id=CASE, queue="public_opinion", at=LATER)
    if name == "merged":
        return routed(other_feedback, kind="merged", case_id=CASE, at=LATER, match_basis="customer_token")
    if name == "split":
        return routed(FEEDBACK, kind="split", case_id=an_id("sm-new-case"), at=LATER, split_from_case_id=CASE)
    if name == "post_update":
        return routed(FEEDBACK, kind="post_update", case_id=CASE, at=LATER, match_basis="explicit_reference")
    if name == "plan_proposed":
        return proposed(CASE, an_id("request-2"), [proposal(an_id("sm-new-plan"))], LATER)
    fields: dict[str, dict[str, object]] = {
        "contacted": {"contact_channel": "phone"},
        "contact_attempt_failed": {"contact_channel": "phone", "outcome": "no_answer", "attempt_number": 1},
        "note_added": {"text": "客户要求下午联系"},
        "plan_requested": {},
        "plan_offered": {"plan_id": TO_OFFER.plan_id},
        "customer_accepted": {"plan_id": OFFERED.plan_id},
        "customer_declined": {"plan_id": OFFERED.plan_id, "reason": "instalment too high"},
        "customer_countered": {
            "plan_id": OFFERED.plan_id,
            "proposed_instalment": {"amount": "800.00", "currency": "CNY"},
        },
        "payment_received": {
            "plan_id": ACTIVE.plan_id,
            "instalment_number": 1,
            "amount": {"amount": "1000.00", "currency": "CNY"},
        },
        "payment_missed": {"plan_id": ACTIVE.plan_id, "instalment_number": 1, "due_date": "2026-12-10"},
        "resolved": {"resolution": "explained"},
        "follow_up_done": {"satisfaction": 4},
        "escalated": {"to_queue": "senior_complaints", "reason": "customer asks for a manager"},
        "clock_paused": {"clock": "resolution", "reason": "waiting for hospital documents"},
        "clock_resumed": {"clock": "resolution", "reason": "documents received"},
        "clock_extended": {"clock": "resolution", "reason": "情况复杂，需调取交易流水", "approved_by": "E10422"},
        "reopened": {"reason": "customer complains about the outcome"},
        "merge_undone": {"feedback_id": FEEDBACK, "reason": "different loan"},
        "case_accepted": {},
    }
    return action(name, CASE, LATER, **fields[name])


PAIRS = [(status, name) for status in ALL for name in EXPECTED]


@pytest.mark.parametrize(("status", "name"), PAIRS, ids=[f"{s.value}-{n}" for s, n in PAIRS])
def test_every_status_and_action(status: CaseStatus, name: str) -> None:
    world = world_with(status)
    incoming = incoming_for(name)
    outcome = run(world, incoming)
    rejections = emitted_of(outcome, "tracking.transition_rejected")
    expected_after = EXPECTED[name].get(status)

    assert transition(status, Action(name)) == expected_after
    if expected_after is None:
        assert len(rejections) == 1, f"{name} in {status.value} must be refused"
        (refusal,) = rejections
        assert [e.event for e in outcome.emitted] == [refusal], "a refused action emits nothing else"
        assert refusal.data.status is status
        assert refusal.data.rejected_type == incoming.event.type
        assert refusal.data.rejected_id == incoming.event.id
        assert refusal.data.case_id == CASE
        assert status.value in refusal.data.reason
        assert refusal.id == uuid.uuid5(
            uuid.UUID("9a3e2b71-64c5-4f08-8e1d-c27b5a90d3e4"), f"{incoming.event.id}:transition_rejected"
        )
        assert world.cases[CASE].status is status
        assert outcome.timers == {}
        assert outcome.changed_plans == set()
        # The refused event and the refusal are both on the audit trail.
        recorded = [row.event_id for row in outcome.audit_rows if row.case_id == CASE]
        assert recorded == [incoming.event.id, refusal.id]
    else:
        assert rejections == [], f"{name} in {status.value} must be allowed: {[r.data.reason for r in rejections]}"
        assert world.cases[CASE].status is expected_after


def test_the_table_in_the_code_is_the_expected_one() -> None:
    assert {action.value: dict(rules) for action, rules in TRANSITIONS.items()} == EXPECTED


def test_a_refusal_says_where_the_action_is_possible() -> None:
    outcome = run(world_with(R), incoming_for("customer_accepted"))
    (refusal,) = emitted_of(outcome, "tracking.transition_rejected")
    assert refusal.data.reason == (
        "customer_accepted is not possible while the case is routed; it is possible while it is negotiating"
    )
    assert refusal.data.agent_id == "E3172"


def test_the_next_event_after_a_refusal_is_applied() -> None:
    world = world_with(R)
    outcome = run(world, incoming_for("customer_accepted"), incoming_for("contacted"))
    assert [e.event.type for e in outcome.emitted] == [
        "com.parley.tracking.transition_rejected.v1",
        "com.parley.tracking.first_contact.v1",
    ]
    assert world.cases[CASE].status is C


@pytest.mark.parametrize("status", [RS, F, CL])
def test_merging_into_a_resolved_or_closed_case_is_refused(status: CaseStatus) -> None:
    world = world_with(status)
    outcome = run(world, incoming_for("merged"))
    (refusal,) = emitted_of(outcome, "tracking.transition_rejected")
    assert refusal.data.rejected_type == "com.parley.case.routed.v1"
    assert refusal.data.agent_id is None
    assert world.cases[CASE].feedback_count == 1
