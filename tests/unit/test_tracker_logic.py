"""Tracker rules for what routing sends and for timers: opening, merges, splits, escalations, parking, follow-up.

Ids and times must be replay-stable: every id derives from its cause, every time from an event.
"""

from __future__ import annotations

import copy
import uuid
from datetime import datetime, timedelta, timezone

from schemas.values import CaseStatus, Jurisdiction, Queue
from services.tracker.audit import utc_text
from services.tracker.logic import (
    CASE_ID_NAMESPACE,
    Batch,
    DueTimer,
    TrackerConfig,
    World,
    case_id_for,
    caused_event_id,
    lifecycle_event_id,
)
from tests.unit.test_tracker_support import (
    CONFIG,
    CUSTOMER,
    T0,
    account,
    action,
    an_id,
    as_models_write_it,
    emitted_of,
    ids,
    routed,
    run,
    tracking_types,
)

FEEDBACK = an_id("logic-feedback")
CASE = case_id_for(FEEDBACK)


def opened_world(*, with_account: bool = False) -> tuple[World, uuid.UUID]:
    world = World(accounts={CUSTOMER: account()} if with_account else {})
    run(world, routed(FEEDBACK, category="loan_approval", queue="loans"))
    return world, CASE


def test_case_ids_stay_uuid5_of_the_feedback_in_the_shared_namespace() -> None:
    assert str(CASE_ID_NAMESPACE) == "0d6f1e53-8a47-4c1b-b0f2-3e9c2a7d5f10"
    assert case_id_for(FEEDBACK) == uuid.uuid5(CASE_ID_NAMESPACE, str(FEEDBACK))


def test_a_new_case_is_opened_triaged_and_routed() -> None:
    received = T0 - timedelta(minutes=3)
    world = World()
    incoming = routed(FEEDBACK, category="loan_approval", queue="loans", received_at=received)
    outcome = run(world, incoming)

    assert tracking_types(outcome) == ["tracking.opened", "tracking.triaged", "tracking.routed"]
    opened, triaged, routed_step = (e.event for e in outcome.emitted)
    assert opened.id == lifecycle_event_id(CASE, "opened")
    assert opened.time == received, "the case starts when the feedback arrived"
    assert opened.data.opened_at == received
    assert opened.data.feedback_id == FEEDBACK
    assert opened.data.jurisdiction is Jurisdiction.CN
    assert opened.data.regulator_deadline is None
    assert opened.data.customer_ref == CUSTOMER
    assert triaged.data.status is CaseStatus.TRIAGED
    assert triaged.data.category.value == "loan_approval"
    assert triaged.data.flags == list(incoming.event.data.flags)
    assert routed_step.data.status is CaseStatus.ROUTED
    assert routed_step.data.queue is Queue.LOANS
    assert routed_step.id == caused_event_id(incoming.event.id, "routed")
    assert {e.key for e in outcome.emitted} == {str(CASE)}

    case = world.cases[CASE]
    assert case.status is CaseStatus.ROUTED
    assert case.opened_at == received
    assert outcome.cases_to_insert == [case]
    assert outcome.cases_to_update == []
    assert outcome.feedback_added == [(CASE, FEEDBACK, received)]
    assert [row.event_id for row in outcome.audit_rows] == [incoming.event.id, *(e.event.id for e in outcome.emitted)]
    assert [row.seq for row in outcome.audit_rows] == [1, 2, 3, 4]
    assert case.audit_seq == 4
    assert case.audit_head == outcome.audit_rows[-1].row_hash


def test_the_events_of_every_routed_case_are_written_as_their_models_write_them() -> None:
    """Opened, triaged, routed and merged are written from their fields (run() compares each with its model):
    times in other offsets and with microseconds, no customer, several flags or none, a regulator's deadline."""
    shanghai = timezone(timedelta(hours=8))
    at = datetime(2026, 11, 22, 9, 12, 7, 123456, tzinfo=shanghai)
    world = World()
    first, second, third = ids("written-as-models", 3)
    run(
        world,
        routed(first, at=at, received_at=at - timedelta(seconds=1), customer_ref=None, flags=[], regulator=True),
        routed(second, at=at, flags=["legal_threat", "vulnerable"], escalation_level=2, queue="senior_complaints"),
    )
    outcome = run(
        world,
        routed(third, kind="merged", case_id=case_id_for(second), at=at, match_basis="customer_token"),
        routed(second, at=at + timedelta(minutes=1), queue="public_opinion", lane="public_opinion"),
    )
    assert tracking_types(outcome) == ["tracking.merged", "tracking.routed"]


def test_without_received_at_the_case_starts_at_the_event_time() -> None:
    world = World()
    run(world, routed(FEEDBACK))
    assert world.cases[CASE].opened_at == T0


def test_a_regulator_referral_carries_its_deadline_and_the_configured_jurisdiction() -> None:
    world = World()
    outcome = run(world, routed(FEEDBACK, regulator=True), config=TrackerConfig(jurisdiction=Jurisdiction.UK))
    (opened,) = emitted_of(outcome, "tracking.opened")
    assert opened.data.regulator_deadline.isoformat() == "2026-12-07T00:00:00+08:00"
    assert opened.data.jurisdiction is Jurisdiction.UK
    assert world.cases[CASE].regulator_deadline == opened.data.regulator_deadline


def test_routed_text_and_details_stay_out_of_the_audit_trail() -> None:
    world = World()
    incoming = routed(FEEDBACK, regulator=True)
    outcome = run(world, incoming)
    payload = outcome.audit_rows[0].payload
    assert "text" not in payload["data"]
    assert "details" not in payload["data"]
    assert len(payload["data"]["text_sha256"]) == 64


def test_a_hardship_case_with_a_known_debt_asks_for_plans() -> None:
    world = World(accounts={CUSTOMER: account()})
    incoming = routed(FEEDBACK)
    outcome = run(world, incoming)
    assert tracking_types(outcome) == ["tracking.opened", "tracking.triaged", "tracking.routed", "plan.requested"]
    (request,) = emitted_of(outcome, "plan.requested")
    assert request.id == caused_event_id(incoming.event.id, "plan_requested")
    assert request.data.request_id == caused_event_id(incoming.event.id, "plan_request")
    assert request.data.requested_by == "tracker"
    assert request.data.debt == account().debt
    assert request.data.income == account().income
    assert request.data.as_of == T0.date()
    assert outcome.emitted[-1].topic == "plan_requested"
    assert outcome.emitted[-1].key == str(CASE)
    assert world.cases[CASE].status is CaseStatus.ROUTED, "asking the planner is not negotiating yet"


def test_no_plan_request_without_a_known_debt_or_for_other_categories() -> None:
    assert "plan.requested" not in tracking_types(run(World(), routed(FEEDBACK)))
    other = run(World(accounts={CUSTOMER: account()}), routed(FEEDBACK, category="wealth_product"))
    assert "plan.requested" not in tracking_types(other)


def test_a_copy_for_the_pr_desk_is_one_more_routing_not_a_second_case() -> None:
    world, case_id = opened_world()
    copy = routed(FEEDBACK, queue="public_opinion", lane="public_opinion", at=T0 + timedelta(seconds=5))
    outcome = run(world, copy)
    assert tracking_types(outcome) == ["tracking.routed"]
    (step,) = emitted_of(outcome, "tracking.routed")
    assert step.data.queue is Queue.PUBLIC_OPINION
    assert step.data.lane == "public_opinion"
    assert outcome.cases_to_insert == []
    assert world.cases[case_id].feedback_count == 1
    assert world.cases[case_id].queue is Queue.LOANS, "the case stays in its own queue"


def test_a_merge_that_moves_the_case_updates_its_queue() -> None:
    world, case_id = opened_world()
    merged = routed(
        an_id("moving"), kind="merged", case_id=case_id, queue="senior_complaints", match_basis="customer_token"
    )
    run(world, merged)
    assert world.cases[case_id].queue is Queue.SENIOR_COMPLAINTS
    copy = routed(
        an_id("moving"),
        kind="merged",
        case_id=case_id,
        queue="public_opinion",
        lane="public_opinion",
        match_basis="customer_token",
    )
    run(world, copy)
    assert world.cases[case_id].queue is Queue.SENIOR_COMPLAINTS


def test_merged_feedback_joins_the_case_once() -> None:
    world, case_id = opened_world()
    joining = an_id("joining-feedback")
    merged = routed(joining, kind="merged", case_id=case_id, match_basis="customer_token", new_facts=True)
    outcome = run(world, merged)
    (event,) = emitted_of(outcome, "tracking.merged")
    assert event.data.feedback_id == joining
    assert event.data.match_basis == "customer_token"
    assert event.data.new_facts is True
    assert event.data.status is CaseStatus.ROUTED
    assert world.cases[case_id].feedback_count == 2
    assert world.cases[case_id].feedback_ids == {FEEDBACK, joining}
    # The same merged feedback delivered to one more queue: recorded, not merged twice.
    again = routed(joining, kind="merged", case_id=case_id, queue="public_opinion", match_basis="customer_token")
    repeat = run(world, again)
    assert tracking_types(repeat) == []
    assert [row.event_id for row in repeat.audit_rows] == [again.event.id]
    assert world.cases[case_id].feedback_count == 2


def test_a_split_takes_the_feedback_out_and_opens_its_own_case() -> None:
    world, case_id = opened_world()
    joining = an_id("wrongly-merged")
    run(world, routed(joining, kind="merged", case_id=case_id, match_basis="customer_token"))
    new_case = case_id_for(joining)
    split = routed(joining, kind="split", case_id=new_case, split_from_case_id=case_id, split_by="E777")
    outcome = run(world, split)

    assert tracking_types(outcome) == ["tracking.split", "tracking.opened", "tracking.triaged", "tracking.routed"]
    (event,) = emitted_of(outcome, "tracking.split")
    assert event.subject == str(case_id)
    assert event.data.new_case_id == new_case
    assert event.data.feedback_id == joining
    assert event.data.agent_id == "E777"
    assert world.cases[case_id].feedback_ids == {FEEDBACK}
    assert world.cases[case_id].feedback_count == 1
    assert world.cases[new_case].feedback_ids == {joining}
    assert outcome.feedback_removed == [(case_id, joining)]
    assert [c.case_id for c in outcome.cases_to_insert] == [new_case]
    assert [c.case_id for c in outcome.cases_to_update] == [case_id]


def test_an_escalation_reroutes_with_its_level() -> None:
    world, case_id = opened_world()
    outcome = run(world, routed(FEEDBACK, kind="escalated", queue="senior_complaints", escalation_level=1))
    (event,) = emitted_of(outcome, "tracking.routed")
    assert event.data.escalation_level == 1
    assert event.data.queue is Queue.SENIOR_COMPLAINTS
    assert world.cases[case_id].escalation_level == 1


def test_a_post_update_is_recorded_on_the_case_without_a_step() -> None:
    world, case_id = opened_world()
    update = routed(FEEDBACK, kind="post_update", match_basis="explicit_reference", at=T0 + timedelta(hours=1))
    outcome = run(world, update)
    assert outcome.emitted == []
    assert [row.event_id for row in outcome.audit_rows] == [update.event.id]
    assert world.cases[case_id].updated_at == T0 + timedelta(hours=1)


def test_events_for_a_case_not_yet_open_are_parked_then_applied_when_it_opens() -> None:
    world = World()
    contacted = action("contacted", CASE, T0 + timedelta(minutes=5), contact_channel="phone")
    first = run(world, contacted)
    assert first.emitted == []
    assert first.parked == [contacted]
    assert first.audit_rows == []

    # Next batch: the case opens; the parked action (as the store loads it) follows.
    world.parked = {CASE: first.parked}
    second = run(world, routed(FEEDBACK))
    assert tracking_types(second) == [
        "tracking.opened",
        "tracking.triaged",
        "tracking.routed",
        "tracking.first_contact",
    ]
    assert second.unparked_cases == {CASE}
    assert second.parked == []
    assert world.cases[CASE].status is CaseStatus.CONTACTED


def test_parked_within_one_batch_is_applied_in_that_batch() -> None:
    world = World()
    contacted = action("contacted", CASE, T0 + timedelta(minutes=5), contact_channel="phone")
    outcome = run(world, contacted, routed(FEEDBACK))
    assert tracking_types(outcome)[-1] == "tracking.first_contact"
    assert outcome.parked == []
    assert outcome.unparked_cases == set()


def test_first_contact_once_and_unanswered_attempts_counted_until_an_answer() -> None:
    world, case_id = opened_world()
    t = T0 + timedelta(minutes=10)
    failed = [
        action(
            "contact_attempt_failed",
            case_id,
            t + timedelta(minutes=n),
            contact_channel="phone",
            outcome="no_answer",
            attempt_number=n + 1,
        )
        for n in range(3)
    ]
    outcome = run(world, *failed)
    counts = [e.data.failed_attempts for e in emitted_of(outcome, "tracking.contact_attempt_failed")]
    assert counts == [1, 2, 3]
    assert world.cases[case_id].status is CaseStatus.ROUTED

    answered = run(world, action("contacted", case_id, t + timedelta(hours=1), contact_channel="phone"))
    (first,) = emitted_of(answered, "tracking.first_contact")
    assert first.data.seconds_since_opened == 70 * 60
    assert world.cases[case_id].failed_contact_attempts == 0
    again = run(world, action("contacted", case_id, t + timedelta(hours=2), contact_channel="sms"))
    assert tracking_types(again) == [], "later contacts are on record, not first contacts"
    later_failure = run(
        world,
        action(
            "contact_attempt_failed",
            case_id,
            t + timedelta(hours=3),
            contact_channel="phone",
            outcome="busy",
            attempt_number=1,
        ),
    )
    assert [e.data.failed_attempts for e in emitted_of(later_failure, "tracking.contact_attempt_failed")] == [1]


def test_resolution_arms_the_follow_up_which_arms_the_close() -> None:
    world, case_id = opened_world()
    resolved_at = T0 + timedelta(days=2)
    outcome = run(world, action("resolved", case_id, resolved_at, resolution="explained"))
    (resolved,) = emitted_of(outcome, "tracking.resolved")
    assert resolved.data.resolution.value == "explained"
    due = resolved_at + CONFIG.follow_up_after
    assert outcome.timers == {(case_id, "follow_up"): due, (case_id, "close"): None}

    batch = Batch(world, CONFIG)
    batch.fire(DueTimer(case_id, "follow_up", due))
    fired = as_models_write_it(batch.finish())
    (request,) = emitted_of(fired, "tracking.follow_up_requested")
    assert request.time == due, "the request's time is the due time, not when the poller ran"
    assert request.data.resolved_at == resolved_at
    head = world.cases[case_id].audit_seq - 1  # the request is the last row; its id names the head before it
    assert request.id == lifecycle_event_id(case_id, f"follow_up_requested:{utc_text(due)}", head)
    assert fired.timers == {(case_id, "follow_up"): None, (case_id, "close"): due + CONFIG.close_after}

    done_at = due + timedelta(days=1)
    answered = run(world, action("follow_up_done", case_id, done_at, satisfaction=5, comment="满意"))
    (followed,) = emitted_of(answered, "tracking.followed_up")
    assert followed.data.satisfaction == 5
    assert world.cases[case_id].status is CaseStatus.FOLLOWED_UP
    assert answered.timers == {(case_id, "follow_up"): None, (case_id, "close"): done_at + CONFIG.close_after}

    batch = Batch(world, CONFIG)
    batch.fire(DueTimer(case_id, "close", done_at + CONFIG.close_after))
    closed = as_models_write_it(batch.finish())
    (event,) = emitted_of(closed, "tracking.closed")
    assert event.data.reason == "closed after the follow-up"
    assert world.cases[case_id].status is CaseStatus.CLOSED


def test_firing_a_timer_twice_emits_the_same_event() -> None:
    world, case_id = opened_world()
    run(world, action("resolved", case_id, T0, resolution="explained"))
    due = T0 + CONFIG.follow_up_after
    first, second = Batch(world, CONFIG), Batch(World(cases=copy.deepcopy(world.cases)), CONFIG)
    first.fire(DueTimer(case_id, "follow_up", due))
    second.fire(DueTimer(case_id, "follow_up", due))
    assert as_models_write_it(first.finish()).emitted[0].event == second.finish().emitted[0].event


def test_a_stale_timer_on_a_reopened_case_does_nothing() -> None:
    world, case_id = opened_world()
    run(world, action("resolved", case_id, T0, resolution="explained"))
    reopened = run(world, action("reopened", case_id, T0 + timedelta(days=1), reason="customer not satisfied"))
    assert reopened.timers == {(case_id, "follow_up"): None, (case_id, "close"): None}
    batch = Batch(world, CONFIG)
    batch.fire(DueTimer(case_id, "follow_up", T0 + CONFIG.follow_up_after))
    outcome = as_models_write_it(batch.finish())
    assert outcome.emitted == []
    assert outcome.timers == {(case_id, "follow_up"): None}


def test_an_unanswered_follow_up_still_closes_the_case() -> None:
    world, case_id = opened_world()
    run(world, action("resolved", case_id, T0, resolution="refunded"))
    batch = Batch(world, CONFIG)
    batch.fire(DueTimer(case_id, "close", T0 + timedelta(days=30)))
    (event,) = emitted_of(as_models_write_it(batch.finish()), "tracking.closed")
    assert event.data.reason == "closed: no follow-up answer in the configured time"


def test_an_agent_escalation_moves_the_case_up_one_level() -> None:
    world, case_id = opened_world()
    run(world, action("case_accepted", case_id, T0 + timedelta(minutes=1)))
    outcome = run(
        world,
        action("escalated", case_id, T0 + timedelta(minutes=2), to_queue="senior_complaints", reason="legal threat"),
    )
    (event,) = emitted_of(outcome, "tracking.routed")
    assert event.data.escalation_level == 1
    assert event.data.queue is Queue.SENIOR_COMPLAINTS
    assert world.cases[case_id].assigned_agent == "E3172"


def test_a_replay_gives_the_same_events_and_the_same_audit_chain() -> None:
    def history() -> tuple[list[bytes], list[bytes]]:
        world = World(accounts={CUSTOMER: account()})
        outcome = run(
            world,
            routed(FEEDBACK),
            routed(an_id("second"), kind="merged", case_id=CASE, match_basis="customer_token"),
            action("contacted", CASE, T0 + timedelta(hours=1), contact_channel="phone"),
            action("resolved", CASE, T0 + timedelta(hours=2), resolution="explained"),
        )
        return [e.event.to_json_bytes() for e in outcome.emitted], [row.row_hash for row in outcome.audit_rows]

    assert history() == history()
