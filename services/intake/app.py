"""Intake's faust agent: the only place intake touches topics."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from typing import Any

from schemas import topics
from schemas.channels import Channel
from schemas.feedback import RejectReason
from services.intake import logic, store
from services.runtime.deadletter import InboundMessage
from services.runtime.kafka import Record, event_record
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

    def normalise(message: InboundMessage) -> logic.Accepted | logic.Rejected:
        channel = channel_by_topic.get(message.topic)
        if channel is None:
            return logic.Rejected(RejectReason.UNKNOWN_CHANNEL, f"no channel reads topic {message.topic}")
        # The broker's append time is when the bank received the message; replays keep it.
        received_at = (
            datetime.fromtimestamp(message.timestamp_ms / 1000, UTC) if message.timestamp_ms else datetime.now(UTC)
        )
        return logic.normalise(
            channel, message.value, received_at=received_at, max_body_bytes=settings.intake_max_body_bytes
        )

    async def handle(messages: list[InboundMessage]) -> None:
        accepted: list[tuple[str, Record]] = []
        rejected: list[tuple[InboundMessage, logic.Rejected]] = []
        for message in messages:
            outcome = normalise(message)
            if isinstance(outcome, logic.Rejected):
                rejected.append((message, outcome))
            else:
                accepted.append((outcome.dedupe_key, event_record(received_topic, outcome.key, outcome.event)))
        new = await store.accept_once(app.pool, accepted)
        if len(accepted) > new:
            app.counters["duplicates"] += len(accepted) - new
            log.info("repeats dropped", extra={"count": len(accepted) - new})
        await asyncio.gather(*(app.dead_letter(message, r.reason, r.detail) for message, r in rejected))

    raw_topics = app.topic(*channel_by_topic)

    @app.agent(raw_topics, name="intake")
    async def intake(stream: Any) -> None:
        await app.consume(stream, handle)

    return app
