"""Triage's consumer: the only place triage touches topics.

Triage changes no state: each feedback.received gives one case.triaged, published before the
batch is acknowledged, with an event id derived from the feedback's (a redelivery repeats the
same id, which consumers drop).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from schemas import topics
from schemas.channels import SocialDetails
from schemas.feedback import FeedbackReceivedEvent
from schemas.triage import CaseTriaged, CaseTriagedEvent, Sentiment
from services.runtime.deadletter import InboundMessage
from services.runtime.kafka import Record, event_record
from services.runtime.settings import Settings
from services.runtime.worker import Connections, ProcessorApp
from services.triage.logic import Triage, TriageResult

PROCESSOR = "triage"
SOURCE = "/parley/triage"
TRIAGED_ID_NAMESPACE = uuid.UUID("6c1f0b7e-3a52-4d9e-8f21-5b7a9c0d2e43")


def triaged_event(
    feedback: FeedbackReceivedEvent, result: TriageResult, ruleset: str, now: datetime
) -> CaseTriagedEvent:
    data = feedback.data
    return CaseTriagedEvent(
        id=uuid.uuid5(TRIAGED_ID_NAMESPACE, str(feedback.id)),
        source=SOURCE,
        time=now,
        subject=str(data.case_id) if data.case_id else None,
        data=CaseTriaged(
            feedback_id=feedback.id,
            case_id=data.case_id,
            customer_ref=data.customer_ref,
            channel=data.channel,
            language=data.language,
            text=data.text,
            details=data.details,
            category=result.category,
            category_confidence=result.category_confidence,
            flags=list(result.flags),
            sentiment=Sentiment(label=result.sentiment, score=result.sentiment_score),
            priority=result.priority,
            priority_score=result.priority_score,
            human_required=result.human_required,
            reasons=[reason.published() for reason in result.reasons],
            triaged_at=now,
            received_at=feedback.time,
            ruleset_version=ruleset,
        ),
    )


def consumed_topics(settings: Settings) -> list[str]:
    return [settings.topic(topics.FEEDBACK_RECEIVED)]


def create_app(settings: Settings, connections: Connections) -> ProcessorApp:
    app = ProcessorApp(PROCESSOR, settings, connections, relays_outbox=False)
    triage = Triage.shipped()  # loads and validates the rules and the model at start
    triaged_topic = settings.topic(topics.CASE_TRIAGED)

    async def handle(messages: list[InboundMessage]) -> None:
        feedbacks = [(message.parse(FeedbackReceivedEvent), message) for message in messages]
        results = triage.assess_many(
            [
                (f.data.text, f.data.channel, f.data.details if isinstance(f.data.details, SocialDetails) else None)
                for f, _ in feedbacks
            ]
        )
        now = datetime.now(UTC)
        records: list[Record] = []
        for (feedback, message), result in zip(feedbacks, results, strict=True):
            event = triaged_event(feedback, result, triage.ruleset_version, now)
            key = feedback.data.customer_ref or (message.key or b"").decode() or str(feedback.id)
            records.append(event_record(triaged_topic, key, event))
        await app.publish_all(records)

    app.consume_topics(consumed_topics(settings), handle)

    return app
