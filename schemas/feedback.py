"""Canonical feedback (``feedback.received``) and the rejection contract (``feedback.rejected``)."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Literal
from uuid import UUID

from pydantic import ConfigDict, Field, NonNegativeInt, PlainSerializer, WithJsonSchema

from schemas.base import PublishedModel
from schemas.channels import Channel, ChannelDetails
from schemas.envelope import CloudEvent, event_type
from schemas.values import PiiKind, Probability, Timestamp


class Language(StrEnum):
    ZH_HANS = "zh-Hans"
    ZH_HANT = "zh-Hant"
    YUE = "yue"  # Cantonese
    EN = "en"
    UNDETERMINED = "und"


class PiiToken(PublishedModel):
    """A piece of personal data intake masked: the text shows ``[KIND#token]`` in its place."""

    kind: PiiKind
    token: str = Field(pattern=r"^[0-9a-f]{16}$", description="Keyed hash: the same value always has the same token")
    confidence: Probability


class FeedbackReceived(PublishedModel):
    channel: Channel
    channel_message_id: str = Field(min_length=1, max_length=200)
    customer_ref: str | None = Field(
        default=None, description="Stable reference of the customer; absent for anonymous posts."
    )
    case_id: UUID | None = Field(default=None, description="A case the channel says this is about.")
    text: str = Field(min_length=1, description="Personal data masked as [KIND#token]")
    language: Language
    sent_at: Timestamp = Field(description="When the customer sent it, by the channel's clock.")
    details: ChannelDetails
    pii: list[PiiToken] = Field(
        default_factory=list, description="What was masked, in text and details; originals stay in the vault"
    )


FEEDBACK_RECEIVED_TYPE = event_type("feedback.received", 1)


class FeedbackReceivedEvent(CloudEvent[FeedbackReceived]):
    type: Literal["com.parley.feedback.received.v1"] = "com.parley.feedback.received.v1"


class RejectReason(StrEnum):
    """Why intake refused a raw message; the value travels in the ``parley-reason`` header."""

    INVALID_ENCODING = "invalid_encoding"  # not UTF-8
    INVALID_JSON = "invalid_json"
    NOT_AN_OBJECT = "not_an_object"  # valid JSON, but not a JSON object
    TOO_LARGE = "too_large"
    UNKNOWN_CHANNEL = "unknown_channel"
    CHANNEL_MISMATCH = "channel_mismatch"  # body names a known channel other than the topic's
    SCHEMA_VIOLATION = "schema_violation"  # a field missing or of the wrong type
    EMPTY_TEXT = "empty_text"
    UNHANDLED_ERROR = "unhandled_error"  # a fault on our side; the record is kept for replay


REJECTION_HEADER_PREFIX = "parley-"


def rejection_header(field_name: str) -> str:
    """``source_topic`` travels as the header ``parley-source-topic``."""
    return REJECTION_HEADER_PREFIX + field_name.replace("_", "-")


HeaderNumber = Annotated[
    NonNegativeInt,
    PlainSerializer(str, return_type=str),
    WithJsonSchema({"type": "string", "pattern": "^(0|[1-9][0-9]*)$", "description": "A number, as header text"}),
]
"""Kafka header values are bytes: numbers travel as their decimal text."""

HeaderFlag = Annotated[
    bool,
    PlainSerializer(lambda flag: "true" if flag else "false", return_type=str),
    WithJsonSchema({"type": "string", "enum": ["true", "false"]}),
]


class DeadLetterHeaders(PublishedModel):
    """Headers on every dead-lettered record (``feedback.rejected`` and ``deadletter.<processor>``).

    The record's value and key are the original bytes, unchanged; the original record's own
    headers follow these. On ``feedback.rejected`` the reason is a ``RejectReason`` value.
    Field names are the header names (``parley-source-topic``); Python code may use either.
    """

    model_config = ConfigDict(alias_generator=rejection_header, validate_by_name=True, validate_by_alias=True)

    reason: str = Field(pattern=r"^[a-z][a-z0-9_]*$", max_length=100)
    detail: str = Field(max_length=1000, description="Human-readable; never contains the message text.")
    source_topic: str
    source_partition: HeaderNumber
    source_offset: HeaderNumber
    rejected_at: Timestamp
    processor: str
    masked: HeaderFlag = Field(
        default=False, description="True when personal data in the value was masked; the original is in the vault"
    )
    original_ref: str | None = Field(
        default=None, pattern=r"^[0-9a-f]{64}$", description="SHA-256 of the original bytes, its key in the vault"
    )

    def to_kafka_headers(self) -> list[tuple[str, bytes]]:
        values = self.model_dump(mode="json", by_alias=True, exclude_none=True)
        return [(name, str(value).encode()) for name, value in values.items()]
