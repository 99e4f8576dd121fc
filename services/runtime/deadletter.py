"""Dead letters: the original record, unchanged, with headers that say why and where it came from."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TypeVar

from pydantic import BaseModel, ValidationError

from schemas.feedback import REJECTION_HEADER_PREFIX, DeadLetterHeaders, RejectReason
from services.runtime.errors import PermanentError, describe_validation_error
from services.runtime.kafka import Headers, Record

EventT = TypeVar("EventT", bound=BaseModel)


@dataclass(frozen=True)
class InboundMessage:
    """A consumed record, free of any client library's types."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    headers: Headers
    timestamp_ms: int | None = None

    def parse(self, model: type[EventT]) -> EventT:
        """The record's value as ``model``; a value that is not one is a permanent schema_violation."""
        try:
            return model.model_validate_json(self.value)
        except ValidationError as exc:
            raise PermanentError(RejectReason.SCHEMA_VIOLATION, describe_validation_error(exc)) from exc

    def header(self, name: str) -> bytes | None:
        for header_name, value in self.headers:
            if header_name == name:
                return value
        return None


def dead_letter_record(
    message: InboundMessage,
    *,
    target_topic: str,
    reason: str,
    detail: str,
    processor: str,
    now: datetime,
    masked_value: bytes | None = None,
    original_ref: str | None = None,
) -> Record:
    """The original record with reason headers; ``masked_value`` replaces a value that held personal data."""
    headers = DeadLetterHeaders(
        reason=reason,
        detail=detail[:1000],
        source_topic=message.topic,
        source_partition=message.partition,
        source_offset=message.offset,
        rejected_at=now,
        processor=processor,
        masked=masked_value is not None,
        original_ref=original_ref,
    ).to_kafka_headers()
    # Keep the original headers (a channel's trace ids), minus any rejection headers of an earlier hop.
    kept = [(name, value) for name, value in message.headers if not name.startswith(REJECTION_HEADER_PREFIX)]
    value = message.value if masked_value is None else masked_value
    return Record(target_topic, message.key, value, headers + kept)
