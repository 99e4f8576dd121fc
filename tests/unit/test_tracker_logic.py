"""Tracker rules: feedback opens a case, or attaches to the case it names; ids and times are replay-stable."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

import pytest

from schemas.channels import Channel
from schemas.feedback import FeedbackReceivedEvent
from schemas.tracking import CaseOpenedEvent
from services.intake.logic import Accepted, normalise
from services.tracker.logic import (
    AttachToCase,
    CaseState,
    CaseStatus,
    OpenCase,
    case_id_for,
    lifecycle_event_id,
    on_feedback,
)
from tests.samples import encode, raw_message


def feedback(channel: Channel, message_id: str, received_at: datetime, **overrides: object) -> FeedbackReceivedEvent:
    result = normalise(
        channel,
        encode(raw_message(channel, message_id, **overrides)),
        received_at=received_at,
        max_body_bytes=65536,
        pii_key=b"k",
    )
    assert isinstance(result, Accepted), result
    return result.event


@pytest.mark.parametrize("channel", list(Channel))
def test_feedback_without_case_opens_one(channel: Channel, now: datetime) -> None:
    event = feedback(channel, "T-1", now)
    decision = on_feedback(event, None)

    assert isinstance(decision, OpenCase)
    expected_case_id = case_id_for(event.id)
    assert decision.case_id == expected_case_id
    assert decision.case_id != event.id
    assert decision.channel is channel
    assert decision.customer_ref == event.data.customer_ref
    assert decision.opened_at == now

    opened = decision.opened_event
    assert isinstance(opened, CaseOpenedEvent)
    assert opened.type == "com.parley.tracking.opened.v1"
    assert opened.source == "/parley/tracker"
    assert opened.subject == str(expected_case_id)
    assert opened.time == now
    assert opened.id == lifecycle_event_id(expected_case_id, "opened")
    assert opened.data.case_id == expected_case_id
    assert opened.data.feedback_id == event.id
    assert opened.data.channel is channel
    assert opened.data.customer_ref == event.data.customer_ref
    assert opened.data.opened_at == now


def test_customer_ref_is_carried_and_absent_for_anonymous(now: datetime) -> None:
    known = on_feedback(feedback(Channel.APP, "T-2", now), None)
    anonymous = on_feedback(feedback(Channel.SOCIAL, "T-2", now), None)
    assert isinstance(known, OpenCase)
    assert isinstance(anonymous, OpenCase)
    assert known.opened_event.data.customer_ref == "C-T-2"
    assert anonymous.opened_event.data.customer_ref is None


def test_times_come_from_the_feedback_not_the_clock(now: datetime) -> None:
    long_ago = now - timedelta(days=400)
    decision = on_feedback(feedback(Channel.BRANCH, "T-3", long_ago), None)
    assert isinstance(decision, OpenCase)
    assert decision.opened_at == long_ago
    assert decision.opened_event.time == long_ago
    assert decision.opened_event.data.opened_at == long_ago


def test_replay_gives_identical_decision(now: datetime) -> None:
    first = on_feedback(feedback(Channel.HOTLINE, "T-4", now), None)
    replay = on_feedback(feedback(Channel.HOTLINE, "T-4", now), None)
    assert isinstance(first, OpenCase)
    assert isinstance(replay, OpenCase)
    assert first == replay
    assert first.opened_event.to_json_bytes() == replay.opened_event.to_json_bytes()


def test_different_feedback_opens_different_cases(now: datetime) -> None:
    decisions = [on_feedback(feedback(Channel.APP, f"T-5-{n}", now), None) for n in range(3)]
    case_ids = {d.case_id for d in decisions}
    event_ids = {d.opened_event.id for d in decisions if isinstance(d, OpenCase)}
    assert len(case_ids) == 3
    assert len(event_ids) == 3


def test_ids_are_uuid5_of_fixed_namespaces() -> None:
    feedback_id = uuid.UUID("00000000-0000-4000-8000-000000000001")
    case_id = case_id_for(feedback_id)
    assert case_id == case_id_for(feedback_id)
    assert case_id.version == 5
    assert lifecycle_event_id(case_id, "opened") == lifecycle_event_id(case_id, "opened", 0)
    assert lifecycle_event_id(case_id, "opened") != lifecycle_event_id(case_id, "opened", 1)
    assert lifecycle_event_id(case_id, "opened") != lifecycle_event_id(case_id, "closed")


def test_feedback_on_an_existing_case_attaches(now: datetime) -> None:
    existing = uuid.UUID("6f1c1a2e-0000-4000-8000-0000000000aa")
    later = now + timedelta(hours=2)
    event = feedback(Channel.APP, "T-6", later, case_id=str(existing))
    decision = on_feedback(event, CaseState(case_id=existing, status=CaseStatus.OPENED))
    assert decision == AttachToCase(case_id=existing, at=later)


def test_attach_uses_the_referenced_case_id_even_if_feedback_names_another(now: datetime) -> None:
    state = CaseState(case_id=uuid.UUID("6f1c1a2e-0000-4000-8000-0000000000bb"), status=CaseStatus.OPENED)
    decision = on_feedback(feedback(Channel.LETTER, "T-7", now), state)
    assert isinstance(decision, AttachToCase)
    assert decision.case_id == state.case_id
    assert decision.at == now
