"""Tracker's faust agent: the only place the tracker touches topics."""

from __future__ import annotations

from typing import Any

from schemas import topics
from schemas.feedback import FeedbackReceivedEvent
from services.runtime.deadletter import InboundMessage
from services.runtime.kafka import event_record
from services.runtime.settings import Settings
from services.runtime.worker import Connections, ProcessorApp
from services.tracker import logic, store

PROCESSOR = "tracker"


def create_app(settings: Settings, connections: Connections) -> ProcessorApp:
    app = ProcessorApp(PROCESSOR, settings, connections, relays_outbox=True)
    tracking_topic = settings.topic(topics.CASE_TRACKING)

    async def handle(messages: list[InboundMessage]) -> None:
        # Parse first: a record that is not a feedback.received event fails the batch before any SQL.
        feedback_events = [(message.parse(FeedbackReceivedEvent), message) for message in messages]
        async with store.unit_of_work(app.pool) as work:
            for feedback, message in feedback_events:
                if not await work.claim(feedback.id):
                    continue  # redelivered: already on record
                referenced = await work.load_case(feedback.data.case_id) if feedback.data.case_id else None
                decision = logic.on_feedback(feedback, referenced)
                records = []
                if isinstance(decision, logic.OpenCase):
                    records.append(event_record(tracking_topic, str(decision.case_id), decision.opened_event))
                await work.apply(decision, feedback.id, feedback.type, message.value.decode(), records)

    @app.agent(app.topic(settings.topic(topics.FEEDBACK_RECEIVED)), name="tracker")
    async def tracker(stream: Any) -> None:
        await app.consume(stream, handle)

    return app
