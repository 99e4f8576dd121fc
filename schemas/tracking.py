"""Case lifecycle events on ``case.tracking``."""

from __future__ import annotations

from typing import Literal
from uuid import UUID

from pydantic import AwareDatetime, Field

from schemas.base import PublishedModel
from schemas.channels import Channel
from schemas.envelope import CloudEvent


class CaseOpened(PublishedModel):
    case_id: UUID
    customer_ref: str | None = None
    channel: Channel = Field(description="The channel of the feedback that opened the case.")
    feedback_id: UUID = Field(description="Event id of the feedback.received that opened the case.")
    opened_at: AwareDatetime


class CaseOpenedEvent(CloudEvent[CaseOpened]):
    type: Literal["com.parley.case.opened.v1"] = "com.parley.case.opened.v1"
