"""Pure tracker rules: what a consumed event does to a case, and which lifecycle events it emits."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from schemas.channels import Channel
from schemas.feedback import FeedbackReceivedEvent
from schemas.tracking import CaseOpened, CaseOpenedEvent
from schemas.values import CaseStatus

SOURCE = "/parley/tracker"
# Case and event ids derive from the feedback that caused them, so a replay yields the same ids.
CASE_ID_NAMESPACE = uuid.UUID("0d6f1e53-8a47-4c1b-b0f2-3e9c2a7d5f10")
EVENT_ID_NAMESPACE = uuid.UUID("9a3e2b71-64c5-4f08-8e1d-c27b5a90d3e4")


@dataclass(frozen=True)
class CaseState:
    case_id: uuid.UUID
    status: CaseStatus


@dataclass(frozen=True)
class OpenCase:
    case_id: uuid.UUID
    customer_ref: str | None
    channel: Channel
    opened_at: datetime
    opened_event: CaseOpenedEvent


@dataclass(frozen=True)
class AttachToCase:
    """New feedback on a case that is already open: recorded on it, nothing new opens."""

    case_id: uuid.UUID
    at: datetime


Decision = OpenCase | AttachToCase


def case_id_for(feedback_id: uuid.UUID) -> uuid.UUID:
    return uuid.uuid5(CASE_ID_NAMESPACE, str(feedback_id))


def lifecycle_event_id(case_id: uuid.UUID, name: str, sequence: int = 0) -> uuid.UUID:
    return uuid.uuid5(EVENT_ID_NAMESPACE, f"{case_id}:{name}:{sequence}")


def on_feedback(feedback: FeedbackReceivedEvent, referenced_case: CaseState | None) -> Decision:
    """Feedback naming an existing case attaches to it; any other feedback opens a case.

    The time of every resulting fact is the feedback's event time, never the wall clock, so a
    replay of the log records the same history.
    """
    if referenced_case is not None:
        return AttachToCase(case_id=referenced_case.case_id, at=feedback.time)
    case_id = case_id_for(feedback.id)
    data = feedback.data
    opened = CaseOpenedEvent(
        id=lifecycle_event_id(case_id, "opened"),
        source=SOURCE,
        time=feedback.time,
        subject=str(case_id),
        data=CaseOpened(
            case_id=case_id,
            status=CaseStatus.OPENED,
            customer_ref=data.customer_ref,
            channel=data.channel,
            feedback_id=feedback.id,
            opened_at=feedback.time,
        ),
    )
    return OpenCase(
        case_id=case_id,
        customer_ref=data.customer_ref,
        channel=data.channel,
        opened_at=feedback.time,
        opened_event=opened,
    )
