"""``case.tracking``: the life of a case, one event per step, in order (the key is the case id).

Every event names the case and the status it is in after the step; the CloudEvents ``time`` is
when the step happened.
"""

from __future__ import annotations

from typing import Literal
from uuid import UUID

from pydantic import Field, NonNegativeInt, PositiveInt

from schemas.base import PublishedModel
from schemas.channels import Channel
from schemas.envelope import CloudEvent
from schemas.values import (
    AgentId,
    CaseStatus,
    Category,
    ContactChannel,
    Day,
    Flags,
    Jurisdiction,
    Money,
    Priority,
    Queue,
    ReasonText,
    Resolution,
    Timestamp,
)


class TrackingData(PublishedModel):
    case_id: UUID
    status: CaseStatus = Field(description="The case's status after this step")


class CaseOpened(TrackingData):
    """A new case, opened by the feedback that raised it."""

    customer_ref: str | None = None
    channel: Channel = Field(description="The channel of the feedback that opened the case.")
    feedback_id: UUID = Field(description="Event id of the feedback.received that opened the case.")
    opened_at: Timestamp
    jurisdiction: Jurisdiction | None = Field(default=None, description="Whose complaint rules and clocks apply")
    regulator_deadline: Timestamp | None = Field(
        default=None, description="A regulator referral's own response deadline, which then applies"
    )


class CaseMerged(TrackingData):
    """Feedback joined an open case of the same customer and problem instead of opening a new one."""

    feedback_id: UUID = Field(description="The feedback that joined this case")
    channel: Channel
    match_basis: Literal["customer_token", "explicit_reference"]
    new_facts: bool = Field(description="The feedback adds facts; a regulatory clock may restart")


class CaseSplit(TrackingData):
    """A wrong merge undone: the feedback left this case for a new one."""

    feedback_id: UUID = Field(description="The feedback taken out of this case")
    new_case_id: UUID
    agent_id: AgentId
    reason: ReasonText


class CaseTriagedStep(TrackingData):
    """The case was triaged: category, priority and risk flags."""

    category: Category
    priority: Priority
    flags: Flags = Field(default_factory=list)


class CaseRoutedStep(TrackingData):
    """The case was routed to an agent queue (or escalated to the next)."""

    queue: Queue
    priority: Priority
    escalation_level: NonNegativeInt = 0
    lane: Literal["primary", "public_opinion"] = Field(
        default="primary",
        description="primary: the case's own queue; public_opinion: a copy for the PR desk (the case keeps its queue)",
    )


class FirstContact(TrackingData):
    """An agent reached the customer for the first time; stops the first-contact clock."""

    agent_id: AgentId
    contact_channel: ContactChannel
    seconds_since_opened: NonNegativeInt


class ContactAttemptFailed(TrackingData):
    """An attempt to reach the customer failed; repeated silence is an early warning."""

    agent_id: AgentId
    contact_channel: ContactChannel
    failed_attempts: PositiveInt = Field(description="Unanswered attempts so far: silence made visible")


class PlanProposedStep(TrackingData):
    """The planner proposed plans for the case."""

    request_id: UUID
    proposals: NonNegativeInt
    best_plan_id: UUID | None = None


class PlanAccepted(TrackingData):
    """The customer accepted a plan."""

    plan_id: UUID
    agent_id: AgentId


class PlanActive(TrackingData):
    """An accepted plan is in force, with its first due date."""

    plan_id: UUID
    instalments: PositiveInt
    instalment: Money
    first_due_date: Day


class InstalmentPaid(TrackingData):
    """An instalment of the active plan was paid."""

    plan_id: UUID
    instalment_number: PositiveInt
    amount: Money


class InstalmentMissed(TrackingData):
    """An instalment of the active plan was not paid by its due date."""

    plan_id: UUID
    instalment_number: PositiveInt
    amount_due: Money
    due_date: Day


class PlanBroken(TrackingData):
    """The plan failed: too many missed instalments."""

    plan_id: UUID
    missed_instalments: PositiveInt
    reason: ReasonText


class PlanCompleted(TrackingData):
    """Every instalment of the plan was paid."""

    plan_id: UUID
    total_repaid: Money


class CaseResolved(TrackingData):
    """The problem was solved (a plan agreed, an explanation given, a refund made …)."""

    resolution: Resolution
    agent_id: AgentId


class FollowedUp(TrackingData):
    """The customer was asked afterwards how it went, with a satisfaction score."""

    satisfaction: int = Field(ge=1, le=5)
    comment: str | None = Field(default=None, max_length=2000)


class CaseClosed(TrackingData):
    """The case is closed; no clock runs."""

    reason: ReasonText


class CaseReopened(TrackingData):
    """A closed or resolved case opened again (new facts, a complaint about the outcome)."""

    reason: ReasonText
    agent_id: AgentId | None = None


class PlanOfferedStep(TrackingData):
    """An agent offered one of the proposed plans to the customer."""

    plan_id: UUID
    agent_id: AgentId
    instalment: Money
    instalments: PositiveInt


class PlanDeclined(TrackingData):
    """The customer declined the offered plan."""

    plan_id: UUID
    agent_id: AgentId
    reason: ReasonText


class PlanCountered(TrackingData):
    """The customer answered the offer with terms of their own; new proposals are asked for."""

    plan_id: UUID
    agent_id: AgentId
    proposed_instalment: Money | None = None
    proposed_term_months: PositiveInt | None = None
    replan_requested: bool = Field(
        description="True when a new plan.requested went out (the tracker knows the customer's debt)"
    )


class FollowUpRequested(TrackingData):
    """The configured time after resolution has passed: ask the customer how it went."""

    resolved_at: Timestamp
    resolution: Resolution | None = None


class TransitionRejected(TrackingData):
    """An event the case cannot take in its status (or that contradicts its record): refused, nothing changed."""

    rejected_type: str = Field(max_length=200, description="The CloudEvents type of the refused event")
    rejected_id: UUID = Field(description="The CloudEvents id of the refused event")
    agent_id: AgentId | None = None
    reason: ReasonText


class CaseOpenedEvent(CloudEvent[CaseOpened]):
    type: Literal["com.parley.tracking.opened.v1"] = "com.parley.tracking.opened.v1"


class CaseMergedEvent(CloudEvent[CaseMerged]):
    type: Literal["com.parley.tracking.merged.v1"] = "com.parley.tracking.merged.v1"


class CaseSplitEvent(CloudEvent[CaseSplit]):
    type: Literal["com.parley.tracking.split.v1"] = "com.parley.tracking.split.v1"


class CaseTriagedStepEvent(CloudEvent[CaseTriagedStep]):
    type: Literal["com.parley.tracking.triaged.v1"] = "com.parley.tracking.triaged.v1"


class CaseRoutedStepEvent(CloudEvent[CaseRoutedStep]):
    type: Literal["com.parley.tracking.routed.v1"] = "com.parley.tracking.routed.v1"


class FirstContactEvent(CloudEvent[FirstContact]):
    type: Literal["com.parley.tracking.first_contact.v1"] = "com.parley.tracking.first_contact.v1"


class ContactAttemptFailedEvent(CloudEvent[ContactAttemptFailed]):
    type: Literal["com.parley.tracking.contact_attempt_failed.v1"] = "com.parley.tracking.contact_attempt_failed.v1"


class PlanProposedStepEvent(CloudEvent[PlanProposedStep]):
    type: Literal["com.parley.tracking.plan_proposed.v1"] = "com.parley.tracking.plan_proposed.v1"


class PlanAcceptedEvent(CloudEvent[PlanAccepted]):
    type: Literal["com.parley.tracking.plan_accepted.v1"] = "com.parley.tracking.plan_accepted.v1"


class PlanActiveEvent(CloudEvent[PlanActive]):
    type: Literal["com.parley.tracking.plan_active.v1"] = "com.parley.tracking.plan_active.v1"


class InstalmentPaidEvent(CloudEvent[InstalmentPaid]):
    type: Literal["com.parley.tracking.instalment_paid.v1"] = "com.parley.tracking.instalment_paid.v1"


class InstalmentMissedEvent(CloudEvent[InstalmentMissed]):
    type: Literal["com.parley.tracking.instalment_missed.v1"] = "com.parley.tracking.instalment_missed.v1"


class PlanBrokenEvent(CloudEvent[PlanBroken]):
    type: Literal["com.parley.tracking.plan_broken.v1"] = "com.parley.tracking.plan_broken.v1"


class PlanCompletedEvent(CloudEvent[PlanCompleted]):
    type: Literal["com.parley.tracking.plan_completed.v1"] = "com.parley.tracking.plan_completed.v1"


class CaseResolvedEvent(CloudEvent[CaseResolved]):
    type: Literal["com.parley.tracking.resolved.v1"] = "com.parley.tracking.resolved.v1"


class FollowedUpEvent(CloudEvent[FollowedUp]):
    type: Literal["com.parley.tracking.followed_up.v1"] = "com.parley.tracking.followed_up.v1"


class CaseClosedEvent(CloudEvent[CaseClosed]):
    type: Literal["com.parley.tracking.closed.v1"] = "com.parley.tracking.closed.v1"


class CaseReopenedEvent(CloudEvent[CaseReopened]):
    type: Literal["com.parley.tracking.reopened.v1"] = "com.parley.tracking.reopened.v1"


class PlanOfferedStepEvent(CloudEvent[PlanOfferedStep]):
    type: Literal["com.parley.tracking.plan_offered.v1"] = "com.parley.tracking.plan_offered.v1"


class PlanDeclinedEvent(CloudEvent[PlanDeclined]):
    type: Literal["com.parley.tracking.plan_declined.v1"] = "com.parley.tracking.plan_declined.v1"


class PlanCounteredEvent(CloudEvent[PlanCountered]):
    type: Literal["com.parley.tracking.plan_countered.v1"] = "com.parley.tracking.plan_countered.v1"


class FollowUpRequestedEvent(CloudEvent[FollowUpRequested]):
    type: Literal["com.parley.tracking.follow_up_requested.v1"] = "com.parley.tracking.follow_up_requested.v1"


class TransitionRejectedEvent(CloudEvent[TransitionRejected]):
    type: Literal["com.parley.tracking.transition_rejected.v1"] = "com.parley.tracking.transition_rejected.v1"
