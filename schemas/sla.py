"""``sla.alerts``: every SLA clock's life and the alerts on-call acts on (the key is the case id)."""

from __future__ import annotations

from enum import StrEnum
from typing import Literal
from uuid import UUID

from pydantic import Field, NonNegativeInt, PositiveInt

from schemas.base import PublishedModel
from schemas.envelope import CloudEvent
from schemas.values import AgentId, ClockName, Priority, Queue, ReasonText, Timestamp


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
    policy_version: PositiveInt | None = Field(
        default=None, description="The policy version in force when the clock started; the clock keeps it"
    )
    cycle: NonNegativeInt | None = Field(
        default=None, description="Which run of this clock on the case (a periodic or reopened clock runs again)"
    )
    dedup_key: str | None = Field(
        default=None,
        max_length=300,
        description="Names this alert: a repeat of the same alert carries the same key (and the same event id)",
    )
    remaining_seconds: NonNegativeInt | None = Field(
        default=None, description="Time left before the deadline, at the event's time"
    )
    overdue_seconds: NonNegativeInt | None = Field(
        default=None, description="Time past the deadline, at the event's time"
    )


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
    level: PositiveInt | None = Field(default=None, description="Which of the policy's warning thresholds, from 1")
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
    recipients: list[str] | None = Field(
        default=None, description="Who the policy names for this level (addresses, rotas or roles)"
    )


class ClockCancelled(ClockData):
    """A clock stopped without its goal being met or missed (the case was closed or withdrawn)."""

    reason: ReasonText


class ClockExtended(ClockData):
    """A deadline was extended, as the policy allows (e.g. a complex complaint, with approval)."""

    previous_deadline: Timestamp
    extension: PositiveInt = Field(description="How many extensions the clock has had, this one included")
    approved_by: AgentId | None = None
    reason: ReasonText
    agent_id: AgentId | None = Field(default=None, description="The agent who asked for the extension")


class ClockPauseRefused(ClockData):
    """An agent asked to pause a clock for a reason its policy does not allow; the clock runs on."""

    reason: ReasonText = Field(description="The reason the agent gave")
    refusal: ReasonText = Field(description="Why the pause was refused")
    agent_id: AgentId | None = None


class ClockExtensionRefused(ClockData):
    """An agent asked to extend a clock's deadline and its policy does not allow it; the deadline stands.

    Why is in ``refusal``: no step left, no approver, the regulator's own deadline, a deadline already passed."""

    reason: ReasonText = Field(description="The reason the agent gave")
    refusal: ReasonText = Field(description="Why the extension was refused")
    agent_id: AgentId | None = None
    approved_by: AgentId | None = None
    severity: Severity = Severity.WARNING


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


class ClockCancelledEvent(CloudEvent[ClockCancelled]):
    type: Literal["com.parley.sla.clock_cancelled.v1"] = "com.parley.sla.clock_cancelled.v1"


class ClockExtendedEvent(CloudEvent[ClockExtended]):
    type: Literal["com.parley.sla.clock_extended.v1"] = "com.parley.sla.clock_extended.v1"


class ClockPauseRefusedEvent(CloudEvent[ClockPauseRefused]):
    type: Literal["com.parley.sla.clock_pause_refused.v1"] = "com.parley.sla.clock_pause_refused.v1"


class ClockExtensionRefusedEvent(CloudEvent[ClockExtensionRefused]):
    type: Literal["com.parley.sla.clock_extension_refused.v1"] = "com.parley.sla.clock_extension_refused.v1"
