"""The CloudEvents 1.0 envelope and how it travels on Kafka.

Mode: **structured**. The Kafka record value is one JSON document holding every CloudEvents
attribute and the event's ``data``; the record carries the header
``content-type: application/cloudevents+json; charset=utf-8``. One self-describing document is
what a team in another language can validate with a single JSON Schema, and it survives tools
that drop headers. The record key is the case id (or the customer reference before a case
exists), so one case's events stay on one partition, in order.
"""

from __future__ import annotations

from typing import Generic, Literal, TypeVar
from uuid import UUID

from pydantic import BaseModel, Field

from schemas.base import ConsumedModel, PublishedModel
from schemas.values import Timestamp

CONTENT_TYPE_HEADER = "content-type"
STRUCTURED_CONTENT_TYPE = "application/cloudevents+json; charset=utf-8"
TYPE_PREFIX = "com.parley."

DataT = TypeVar("DataT", bound=BaseModel)


class CloudEventAttributes(BaseModel):
    """The CloudEvents 1.0 context attributes we use, on every event of every topic."""

    specversion: Literal["1.0"] = "1.0"
    id: UUID = Field(description="Minted once, when the fact happened; consumers deduplicate on it.")
    source: str = Field(min_length=1, description="URI-reference of the processor that emitted it.")
    type: str = Field(description="Reverse-DNS event type ending in its major version, e.g. .v1.")
    time: Timestamp = Field(description="When the fact happened (event time, not processing time).")
    subject: str | None = Field(default=None, description="The case id, when there is a case.")
    datacontenttype: Literal["application/json"] = "application/json"

    def to_json_bytes(self) -> bytes:
        return self.model_dump_json().encode()


class CloudEvent(PublishedModel, CloudEventAttributes, Generic[DataT]):
    """An event we publish: closed, every unknown attribute or field is an error."""

    data: DataT


class ReceivedCloudEvent(ConsumedModel, CloudEventAttributes, Generic[DataT]):
    """An event others publish to us: unknown attributes and fields are ignored."""

    data: DataT


def event_type(name: str, version: int) -> str:
    return f"{TYPE_PREFIX}{name}.v{version}"
