"""Intake's consumer: the only place intake touches topics."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime

from schemas import topics
from schemas.channels import Channel
from schemas.feedback import RejectReason
from services.intake import logic, store
from services.privacy.logic import RedactedBytes, redact_bytes
from services.runtime.deadletter import InboundMessage
from services.runtime.kafka import Record, event_record
from services.runtime.settings import Settings
from services.runtime.worker import Connections, ProcessorApp

log = logging.getLogger(__name__)

PROCESSOR = "intake"


def consumed_topics(settings: Settings) -> list[str]:
    return [settings.topic(topics.raw_topic(channel)) for channel in Channel]


def create_app(settings: Settings, connections: Connections) -> ProcessorApp:
    app = ProcessorApp(
        PROCESSOR,
        settings,
        connections,
        dead_letter_topic=topics.FEEDBACK_REJECTED,
        relays_outbox=True,
    )
    channel_by_topic = {settings.topic(topics.raw_topic(channel)): channel for channel in Channel}
    received_topic = settings.topic(topics.FEEDBACK_RECEIVED)
    pii_key = settings.pii_key()
    if settings.uses_development_pii_key and not settings.uses_embedded_broker:
        log.warning("PARLEY_PII_TOKEN_KEY is the development key: tokens are not secret; set a real key")

    def normalise(message: InboundMessage) -> logic.Accepted | logic.Rejected:
        channel = channel_by_topic.get(message.topic)
        if channel is None:
            return logic.Rejected(RejectReason.UNKNOWN_CHANNEL, f"no channel reads topic {message.topic}")
        # The broker's append time is when the bank received the message; replays keep it.
        received_at = (
            datetime.fromtimestamp(message.timestamp_ms / 1000, UTC) if message.timestamp_ms else datetime.now(UTC)
        )
        return logic.normalise(
            channel,
            message.value,
            received_at=received_at,
            max_body_bytes=settings.intake_max_body_bytes,
            pii_key=pii_key,
        )

    async def handle(messages: list[InboundMessage]) -> None:
        accepted: list[tuple[logic.Accepted, Record]] = []
        rejected: list[tuple[InboundMessage, logic.Rejected, RedactedBytes]] = []
        for message in messages:
            outcome = normalise(message)
            if isinstance(outcome, logic.Rejected):
                rejected.append((message, outcome, redact_bytes(message.value, pii_key)))
            else:
                accepted.append((outcome, event_record(received_topic, outcome.key, outcome.event)))
        new = await store.accept_once(app.pool, accepted)
        if len(accepted) > new:
            app.counters["duplicates"] += len(accepted) - new
            log.info("repeats dropped", extra={"count": len(accepted) - new})
        # A rejected record goes back to its channel team; personal data in it stays in the vault.
        holding_pii = [(m, r, red) for m, r, red in rejected if red.spans]
        await store.keep_rejected(
            app.pool, [(red.original_ref, f"{m.topic}/{m.partition}/{m.offset}", m.value) for m, _, red in holding_pii]
        )
        await asyncio.gather(
            *(
                app.dead_letter(
                    message,
                    reason.reason,
                    reason.detail,
                    masked_value=redacted.value if redacted.spans else None,
                    original_ref=redacted.original_ref if redacted.spans else None,
                )
                for message, reason, redacted in rejected
            )
        )

    app.consume_topics(channel_by_topic, handle)

    return app
