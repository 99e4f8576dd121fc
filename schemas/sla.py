"""``sla.alerts``: every SLA clock's life and the alerts on-call acts on (the key is the case id)."""

from __future__ import annotations

from enum import StrEnum
from typing import Literal
from uuid import UUID

from pydantic import Field, NonNegativeInt, PositiveInt

from schemas.base import PublishedModel
from schemas.envelope import CloudEvent
from schemas.values import ClockName, Priority, Queue, ReasonText, Timestamp


class Severity(StrEnum):
    INFO = "info"
    WARNING = "warning"
    CRITICAL = "critical"


class ClockData(PublishedModel):
    case_id: UUID
    clock: ClockName
    policy_id: str = Field(max_length=100, description="The SLA policy, e.g. cn-nfra-complaint")
    deadline: Timestamp = Field(description="When the clock runs out, on the policy's calendar")
    severity: Severity = Severity.INFO


class ClockStarted(ClockData):
    """An SLA clock started for a case, with its deadline on the policy calendar."""

    started_at: Timestamp
    calendar: str = Field(max_length=100, description="Business calendar the deadline counts on, e.g. cn-workdays")


class ClockPaused(ClockData):
    """An SLA clock was paused, for a stated reason (e.g. waiting for the customer's documents)."""

    reason: ReasonText
    remaining_seconds: NonNegativeInt


class ClockResumed(ClockData):
    """A paused SLA clock runs again; the deadline moved by the paused time."""

    reason: ReasonText
    paused_seconds: NonNegativeInt


class ClockMet(ClockData):
    """The clock's goal was reached before its deadline."""

    met_at: Timestamp
    seconds_to_spare: NonNegativeInt


class SlaWarning(ClockData):
    """A deadline is near: act before it is breached."""

    remaining_seconds: NonNegativeInt
    elapsed_fraction: float = Field(ge=0, le=1, description="Share of the allowed time used, e.g. 0.8")
    priority: Priority
    queue: Queue | None = None
    severity: Severity = Severity.WARNING


class SlaBreached(ClockData):
    """A deadline passed with the goal unmet."""

    overdue_seconds: NonNegativeInt
    priority: Priority
    queue: Queue | None = None
    severity: Severity = Severity.CRITICAL


class SlaEscalated(ClockData):
    """A breach or an unanswered warning went up a level (a senior desk or a duty manager)."""

    level: PositiveInt
    escalated_to: str = Field(max_length=100, description="A queue or a role, e.g. senior_complaints, duty_manager")
    reason: ReasonText
    severity: Severity = Severity.CRITICAL


class ClockStartedEvent(CloudEvent[ClockStarted]):
    type: Literal["com.parley.sla.clock_started.v1"] = "com.parley.sla.clock_started.v1"


class ClockPausedEvent(CloudEvent[ClockPaused]):
    type: Literal["com.parley.sla.clock_paused.v1"] = "com.parley.sla.clock_paused.v1"


class ClockResumedEvent(CloudEvent[ClockResumed]):
    type: Literal["com.parley.sla.clock_resumed.v1"] = "com.parley.sla.clock_resumed.v1"


class ClockMetEvent(CloudEvent[ClockMet]):
    type: Literal["com.parley.sla.clock_met.v1"] = "com.parley.sla.clock_met.v1"


class SlaWarningEvent(CloudEvent[SlaWarning]):
    type: Literal["com.parley.sla.warning.v1"] = "com.parley.sla.warning.v1"


class SlaBreachedEvent(CloudEvent[SlaBreached]):
    type: Literal["com.parley.sla.breached.v1"] = "com.parley.sla.breached.v1"


class SlaEscalatedEvent(CloudEvent[SlaEscalated]):
    type: Literal["com.parley.sla.escalated.v1"] = "com.parley.sla.escalated.v1"
