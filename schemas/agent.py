"""``agent.actions``: what agents (people or bots) did on a case, sent back by agent desktops.

Published by other teams, so read tolerantly: unknown attributes and fields are ignored. Every
action names the case (the record key is the case id) and the agent who acted; the CloudEvents
``time`` is when the agent acted.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Literal
from uuid import UUID

from pydantic import Field, PositiveInt

from schemas.base import ConsumedModel
from schemas.envelope import ReceivedCloudEvent
from schemas.plans import HardshipReason
from schemas.values import (
    AgentId,
    ClockName,
    ContactChannel,
    Day,
    PlanKinds,
    Queue,
    ReasonText,
    ReceivedMoney,
    Resolution,
)


class AgentAction(ConsumedModel):
    case_id: UUID
    agent_id: AgentId
    queue: Queue | None = Field(default=None, description="The queue the agent works in")


class CaseAccepted(AgentAction):
    """The agent took the case from the queue (stops routing's escalation timer)."""


class Contacted(AgentAction):
    """The agent reached the customer."""

    contact_channel: ContactChannel
    summary: str | None = Field(default=None, max_length=2000)


class ContactFailureOutcome(StrEnum):
    NO_ANSWER = "no_answer"
    REFUSED = "refused"
    BUSY = "busy"
    WRONG_NUMBER = "wrong_number"
    VOICEMAIL = "voicemail"
    UNDELIVERABLE = "undeliverable"


class ContactAttemptFailed(AgentAction):
    """The agent tried to reach the customer and could not."""

    contact_channel: ContactChannel
    outcome: ContactFailureOutcome
    attempt_number: PositiveInt


class NoteAdded(AgentAction):
    """A note on the case, for the audit trail and the next agent."""

    text: str = Field(min_length=1, max_length=5000)


class PlanOffered(AgentAction):
    """The agent offered one of the proposed plans to the customer."""

    plan_id: UUID = Field(description="A plan of a plan.proposed event")
    summary: str | None = Field(default=None, max_length=2000)


class CustomerAccepted(AgentAction):
    """The customer accepted the offered plan."""

    plan_id: UUID


class CustomerDeclined(AgentAction):
    """The customer declined the offered plan."""

    plan_id: UUID
    reason: ReasonText


class CustomerCountered(AgentAction):
    """The customer answered the offer with terms of their own."""

    plan_id: UUID
    proposed_instalment: ReceivedMoney | None = None
    proposed_term_months: PositiveInt | None = None
    comment: str | None = Field(default=None, max_length=2000)


class Resolved(AgentAction):
    """The agent resolved the case."""

    resolution: Resolution
    summary: str | None = Field(default=None, max_length=2000)
    refund: ReceivedMoney | None = None


class FollowUpDone(AgentAction):
    """The follow-up call or survey is done, with the customer's satisfaction."""

    satisfaction: int = Field(ge=1, le=5, description="1 very dissatisfied … 5 very satisfied")
    comment: str | None = Field(default=None, max_length=2000)


class Escalated(AgentAction):
    """The agent passed the case to another queue."""

    to_queue: Queue
    reason: ReasonText


class ClockPaused(AgentAction):
    """The agent paused an SLA clock, with the reason the policy allows."""

    clock: ClockName
    reason: ReasonText = Field(description="Required: why the clock may stop (e.g. waiting for documents)")


class ClockResumed(AgentAction):
    """The agent resumed a paused SLA clock."""

    clock: ClockName
    reason: ReasonText


class ExtensionUnit(StrEnum):
    MINUTES = "minutes"
    HOURS = "hours"
    DAYS = "days"
    WEEKS = "weeks"


class ExtensionTarget(ConsumedModel):
    """A whole allowed time, as a policy writes an extension step's target (e.g. 30 days)."""

    amount: PositiveInt
    unit: ExtensionUnit


class ClockExtended(AgentAction):
    """The agent extended an SLA clock's deadline, as its policy allows (e.g. a complex complaint: 15 to 30 days).

    A further step may need an approver; the SLA engine grants it or refuses it on sla.alerts."""

    clock: ClockName
    reason: ReasonText = Field(description="Required: why more time is needed (the customer is told)")
    approved_by: AgentId | None = Field(
        default=None, description="Who approved the extension, where the policy's step needs an approver"
    )
    new_target: ExtensionTarget | None = Field(
        default=None,
        description="The whole allowed time wanted, one of the policy's extension steps (e.g. 30 days); by default "
        "the next step. A later step, skipping the ones between, only where the clock's policy lets the agent choose",
    )


class Reopened(AgentAction):
    """The agent reopened a resolved or closed case."""

    reason: ReasonText


class MergeUndone(AgentAction):
    """A wrong merge taken back: the named feedback leaves the case for a case of its own."""

    feedback_id: UUID
    reason: ReasonText


class PlanRequestedByAgent(AgentAction):
    """Ask the planner for proposals now (the tracker adds the debt and income it knows)."""

    note: str | None = Field(default=None, max_length=2000)
    hardship_reason: HardshipReason | None = Field(
        default=None, description="What the agent learnt from the customer (illness makes a payment holiday fit)"
    )
    preferred_kinds: PlanKinds = Field(default_factory=list, description="What the customer asked for, if anything")


class PaymentReceived(AgentAction):
    """Reported by the collections system (as agent_id) when a plan instalment is paid."""

    plan_id: UUID
    instalment_number: PositiveInt
    amount: ReceivedMoney


class PaymentMissed(AgentAction):
    """Reported by the collections system when a plan instalment was not paid."""

    plan_id: UUID
    instalment_number: PositiveInt
    due_date: Day


class CaseAcceptedEvent(ReceivedCloudEvent[CaseAccepted]):
    type: Literal["com.parley.agent.case_accepted.v1"] = "com.parley.agent.case_accepted.v1"


class ContactedEvent(ReceivedCloudEvent[Contacted]):
    type: Literal["com.parley.agent.contacted.v1"] = "com.parley.agent.contacted.v1"


class ContactAttemptFailedEvent(ReceivedCloudEvent[ContactAttemptFailed]):
    type: Literal["com.parley.agent.contact_attempt_failed.v1"] = "com.parley.agent.contact_attempt_failed.v1"


class NoteAddedEvent(ReceivedCloudEvent[NoteAdded]):
    type: Literal["com.parley.agent.note_added.v1"] = "com.parley.agent.note_added.v1"


class PlanOfferedEvent(ReceivedCloudEvent[PlanOffered]):
    type: Literal["com.parley.agent.plan_offered.v1"] = "com.parley.agent.plan_offered.v1"


class CustomerAcceptedEvent(ReceivedCloudEvent[CustomerAccepted]):
    type: Literal["com.parley.agent.customer_accepted.v1"] = "com.parley.agent.customer_accepted.v1"


class CustomerDeclinedEvent(ReceivedCloudEvent[CustomerDeclined]):
    type: Literal["com.parley.agent.customer_declined.v1"] = "com.parley.agent.customer_declined.v1"


class CustomerCounteredEvent(ReceivedCloudEvent[CustomerCountered]):
    type: Literal["com.parley.agent.customer_countered.v1"] = "com.parley.agent.customer_countered.v1"


class ResolvedEvent(ReceivedCloudEvent[Resolved]):
    type: Literal["com.parley.agent.resolved.v1"] = "com.parley.agent.resolved.v1"


class FollowUpDoneEvent(ReceivedCloudEvent[FollowUpDone]):
    type: Literal["com.parley.agent.follow_up_done.v1"] = "com.parley.agent.follow_up_done.v1"


class EscalatedEvent(ReceivedCloudEvent[Escalated]):
    type: Literal["com.parley.agent.escalated.v1"] = "com.parley.agent.escalated.v1"


class ClockPausedEvent(ReceivedCloudEvent[ClockPaused]):
    type: Literal["com.parley.agent.clock_paused.v1"] = "com.parley.agent.clock_paused.v1"


class ClockResumedEvent(ReceivedCloudEvent[ClockResumed]):
    type: Literal["com.parley.agent.clock_resumed.v1"] = "com.parley.agent.clock_resumed.v1"


class ClockExtendedEvent(ReceivedCloudEvent[ClockExtended]):
    type: Literal["com.parley.agent.clock_extended.v1"] = "com.parley.agent.clock_extended.v1"


class ReopenedEvent(ReceivedCloudEvent[Reopened]):
    type: Literal["com.parley.agent.reopened.v1"] = "com.parley.agent.reopened.v1"


class MergeUndoneEvent(ReceivedCloudEvent[MergeUndone]):
    type: Literal["com.parley.agent.merge_undone.v1"] = "com.parley.agent.merge_undone.v1"


class PlanRequestedByAgentEvent(ReceivedCloudEvent[PlanRequestedByAgent]):
    type: Literal["com.parley.agent.plan_requested.v1"] = "com.parley.agent.plan_requested.v1"


class PaymentReceivedEvent(ReceivedCloudEvent[PaymentReceived]):
    type: Literal["com.parley.agent.payment_received.v1"] = "com.parley.agent.payment_received.v1"


class PaymentMissedEvent(ReceivedCloudEvent[PaymentMissed]):
    type: Literal["com.parley.agent.payment_missed.v1"] = "com.parley.agent.payment_missed.v1"
