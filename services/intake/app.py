"""Intake's faust agent: the only place intake touches topics."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from schemas import topics
from schemas.channels import Channel
from schemas.feedback import RejectReason
from services.intake import logic, store
from services.runtime.deadletter import InboundMessage
from services.runtime.errors import PermanentError
from services.runtime.kafka import event_record
from services.runtime.settings import Settings
from services.runtime.worker import Connections, ProcessorApp

log = logging.getLogger(__name__)

PROCESSOR = "intake"


def create_app(settings: Settings, connections: Connections) -> ProcessorApp:
    app = ProcessorApp(
        PROCESSOR,
        settings,
        connections,
        topics_to_create=topics.ALL_TOPICS,
        dead_letter_topic=topics.FEEDBACK_REJECTED,
        relays_outbox=True,
    )
    channel_by_topic = {settings.topic(topics.raw_topic(channel)): channel for channel in Channel}
    received_topic = settings.topic(topics.FEEDBACK_RECEIVED)

    async def handle(message: InboundMessage) -> None:
        channel = channel_by_topic.get(message.topic)
        if channel is None:
            raise PermanentError(RejectReason.UNKNOWN_CHANNEL, f"no channel reads topic {message.topic}")
        received_at = (
            datetime.fromtimestamp(message.timestamp_ms / 1000, UTC) if message.timestamp_ms else datetime.now(UTC)
        )
        outcome = logic.normalise(
            channel, message.value, received_at=received_at, max_body_bytes=settings.intake_max_body_bytes
        )
        if isinstance(outcome, logic.Rejected):
            raise PermanentError(outcome.reason, outcome.detail)
        record = event_record(received_topic, outcome.key, outcome.event)
        if not await store.accept_once(app.pool, outcome.dedupe_key, record):
            app.counters["duplicates"] += 1
            log.info("duplicate dropped", extra={"channel": channel.value, "event_id": str(outcome.event.id)})

    raw_topics = app.topic(*channel_by_topic)

    @app.agent(raw_topics, name="intake")
    async def intake(stream: Any) -> None:
        await app.consume(stream, handle)

    return app
