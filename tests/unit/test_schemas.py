"""Event contracts: CloudEvents envelope, closed published models, topic names, dead-letter headers."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

import pytest
from pydantic import ValidationError

from schemas import topics
from schemas.channels import AppDetails, Channel, PublishedSocialReach, SocialDetails
from schemas.envelope import event_type
from schemas.feedback import (
    FEEDBACK_RECEIVED_TYPE,
    DeadLetterHeaders,
    FeedbackReceived,
    FeedbackReceivedEvent,
    Language,
    rejection_header,
)
from schemas.tracking import CaseOpened, CaseOpenedEvent

FEEDBACK_ID = UUID("11111111-1111-4111-8111-111111111111")
CASE_ID = UUID("22222222-2222-4222-8222-222222222222")
EVENT_ID = UUID("33333333-3333-4333-8333-333333333333")


def feedback_event(now: datetime, **overrides: Any) -> FeedbackReceivedEvent:
    fields: dict[str, Any] = {
        "id": FEEDBACK_ID,
        "source": "/parley/intake",
        "time": now,
        "data": FeedbackReceived(
            channel=Channel.SOCIAL,
            channel_message_id="S-1",
            customer_ref=None,
            text="某银行理财亏了还不给解释",
            language=Language.ZH_HANS,
            sent_at=now - timedelta(minutes=15),
            details=SocialDetails(
                channel=Channel.SOCIAL,
                platform="weibo",
                post_id="P1",
                author_handle="angry_user",
                posted_at=now - timedelta(minutes=20),
                reach=PublishedSocialReach(followers=120000, reposts=3400),
            ),
        ),
    }
    return FeedbackReceivedEvent(**{**fields, **overrides})


def case_opened_event(now: datetime) -> CaseOpenedEvent:
    return CaseOpenedEvent(
        id=EVENT_ID,
        source="/parley/tracker",
        time=now,
        subject=str(CASE_ID),
        data=CaseOpened(
            case_id=CASE_ID,
            status="opened",
            customer_ref="C-1",
            channel=Channel.APP,
            feedback_id=FEEDBACK_ID,
            opened_at=now,
        ),
    )


# ---- envelope ----


def test_feedback_event_round_trips(now: datetime) -> None:
    event = feedback_event(now)
    raw = event.to_json_bytes()
    assert isinstance(raw, bytes)
    back = FeedbackReceivedEvent.model_validate_json(raw)
    assert back == event
    assert back.time == now
    assert isinstance(back.data.details, SocialDetails)
    assert back.data.details.reach.reposts == 3400


def test_case_opened_event_round_trips(now: datetime) -> None:
    event = case_opened_event(now)
    back = CaseOpenedEvent.model_validate_json(event.to_json_bytes())
    assert back == event
    assert back.data.case_id == CASE_ID
    assert back.subject == str(CASE_ID)


def test_envelope_attributes(now: datetime) -> None:
    document = json.loads(feedback_event(now).to_json_bytes())
    assert document["specversion"] == "1.0"
    assert document["type"] == "com.parley.feedback.received.v1"
    assert document["datacontenttype"] == "application/json"
    assert document["id"] == str(FEEDBACK_ID)
    assert document["time"] == "2026-11-22T09:30:00Z"
    assert document["subject"] is None
    assert document["data"]["details"]["channel"] == "social"
    assert json.loads(case_opened_event(now).to_json_bytes())["type"] == "com.parley.tracking.opened.v1"


def test_event_type_names() -> None:
    assert event_type("feedback.received", 1) == "com.parley.feedback.received.v1"
    assert FEEDBACK_RECEIVED_TYPE == "com.parley.feedback.received.v1"


def test_specversion_other_than_1_0_is_rejected(now: datetime) -> None:
    document = json.loads(feedback_event(now).to_json_bytes())
    document["specversion"] = "0.3"
    with pytest.raises(ValidationError):
        FeedbackReceivedEvent.model_validate(document)


def test_wrong_event_type_is_rejected(now: datetime) -> None:
    document = json.loads(case_opened_event(now).to_json_bytes())
    document["type"] = "com.parley.feedback.received.v1"
    with pytest.raises(ValidationError):
        CaseOpenedEvent.model_validate(document)


def test_naive_time_is_rejected(now: datetime) -> None:
    with pytest.raises(ValidationError) as info:
        feedback_event(now, time=now.replace(tzinfo=None))
    assert info.value.errors()[0]["loc"] == ("time",)
    document = json.loads(case_opened_event(now).to_json_bytes())
    document["time"] = "2026-11-22T09:30:00"
    with pytest.raises(ValidationError):
        CaseOpenedEvent.model_validate(document)


def test_extra_top_level_field_is_rejected(now: datetime) -> None:
    document = json.loads(feedback_event(now).to_json_bytes())
    document["traceparent"] = "00-abc"
    with pytest.raises(ValidationError) as info:
        FeedbackReceivedEvent.model_validate(document)
    assert info.value.errors()[0]["type"] == "extra_forbidden"


def test_extra_field_in_data_or_details_is_rejected(now: datetime) -> None:
    document = json.loads(feedback_event(now).to_json_bytes())
    document["data"]["priority"] = "high"
    with pytest.raises(ValidationError):
        FeedbackReceivedEvent.model_validate(document)
    with pytest.raises(ValidationError):
        AppDetails(channel=Channel.APP, kind="chat", unknown="x")  # type: ignore[call-arg]


def test_published_models_are_frozen(now: datetime) -> None:
    event = feedback_event(now)
    with pytest.raises(ValidationError):
        event.source = "/elsewhere"  # type: ignore[misc]


def test_empty_source_is_rejected(now: datetime) -> None:
    with pytest.raises(ValidationError):
        feedback_event(now, source="")


# ---- topics ----


@pytest.mark.parametrize("channel", list(Channel))
def test_raw_topic_names(channel: Channel) -> None:
    assert topics.raw_topic(channel) == f"feedback.raw.{channel.value}"


def test_raw_topics_are_spelled_out() -> None:
    assert topics.raw_topic(Channel.HOTLINE) == "feedback.raw.hotline"
    assert topics.raw_topic(Channel.REGULATOR) == "feedback.raw.regulator"
    assert len(topics.RAW_TOPICS) == len(Channel) == 6


def test_all_topics_unique_and_complete() -> None:
    assert len(set(topics.ALL_TOPICS)) == len(topics.ALL_TOPICS)
    assert set(topics.RAW_TOPICS) <= set(topics.ALL_TOPICS)
    for name in ("feedback.received", "feedback.rejected", "case.tracking", "deadletter.tracker"):
        assert name in topics.ALL_TOPICS
    assert set(topics.ALL_TOPICS) >= topics.LARGE_RECORD_TOPICS
    assert topics.FEEDBACK_RECEIVED not in topics.LARGE_RECORD_TOPICS


def test_dead_letter_topic() -> None:
    assert topics.dead_letter_topic("tracker") == "deadletter.tracker"


# ---- dead-letter headers ----


def headers(**overrides: Any) -> DeadLetterHeaders:
    fields: dict[str, Any] = {
        "reason": "schema_violation",
        "detail": "sent_at: Field required",
        "source_topic": "feedback.raw.app",
        "source_partition": 0,
        "source_offset": 7,
        "rejected_at": "2026-11-22T09:30:00+00:00",
        "processor": "intake",
    }
    return DeadLetterHeaders(**{**fields, **overrides})


@pytest.mark.parametrize("reason", ["Bad Reason", "bad reason", "Invalid", "1st", "", "bad-reason", "x" * 101])
def test_dead_letter_reason_pattern_rejects(reason: str) -> None:
    with pytest.raises(ValidationError):
        headers(reason=reason)


@pytest.mark.parametrize("reason", ["too_large", "unhandled_error", "keyerror", "a1"])
def test_dead_letter_reason_pattern_accepts(reason: str) -> None:
    assert headers(reason=reason).reason == reason


def test_dead_letter_detail_limit_and_naive_time() -> None:
    with pytest.raises(ValidationError):
        headers(detail="x" * 1001)
    with pytest.raises(ValidationError):
        headers(rejected_at="2026-11-22T09:30:00")


def test_dead_letter_kafka_headers() -> None:
    assert headers().to_kafka_headers() == [
        ("parley-reason", b"schema_violation"),
        ("parley-detail", b"sent_at: Field required"),
        ("parley-source-topic", b"feedback.raw.app"),
        ("parley-source-partition", b"0"),
        ("parley-source-offset", b"7"),
        ("parley-rejected-at", b"2026-11-22T09:30:00Z"),
        ("parley-processor", b"intake"),
        ("parley-masked", b"false"),
    ]
    assert rejection_header("source_offset") == "parley-source-offset"
