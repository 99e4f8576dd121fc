"""``case.routed.<queue>``: a case delivered to an agent queue, with only the personal data it may see."""

from __future__ import annotations

from typing import Literal
from uuid import UUID

from pydantic import Field, NonNegativeInt, PositiveInt

from schemas.base import PublishedModel
from schemas.channels import Channel, ChannelDetails
from schemas.envelope import CloudEvent
from schemas.feedback import Language
from schemas.triage import SentimentLabel
from schemas.values import Category, Flags, PiiKinds, Priority, Queue, Timestamp


class RoutingReason(PublishedModel):
    kind: Literal["filter", "target", "overflow", "escalation", "public_opinion", "default", "merge"]
    detail: str = Field(
        max_length=500,
        description="Which filter matched, which target, why it overflowed; merge: why the feedback joined a case "
        "(or why it did not) and which facts are new",
    )


class CaseLink(PublishedModel):
    """How this delivery relates to the case: what the tracker records for it."""

    kind: Literal["new_case", "merged", "split", "escalated", "post_update"] = Field(
        description="new_case: the feedback opened the case; merged: it joined an open case; split: an agent undid "
        "a merge and the feedback now has a case of its own; escalated: nobody accepted in time, next target; "
        "post_update: new reach figures of a social post already on the case"
    )
    match_basis: Literal["customer_token", "explicit_reference"] | None = Field(
        default=None, description="For merged and post_update: what matched the open case"
    )
    new_facts: bool = Field(
        default=False, description="Merged feedback that adds facts (may restart a regulatory clock)"
    )
    split_from_case_id: UUID | None = Field(default=None, description="For split: the case the feedback left")
    split_by: str | None = Field(default=None, max_length=100, description="For split: the agent who undid the merge")


class CaseRouted(PublishedModel):
    case_id: UUID
    feedback_id: UUID
    queue: Queue
    priority: Priority
    target_index: NonNegativeInt = Field(description="Which target of the matched filter (0 = first)")
    accept_within_seconds: PositiveInt = Field(description="Escalates to the next target when not accepted by then")
    escalation_level: NonNegativeInt = 0
    overflow: bool = Field(default=False, description="Sent to the AI-assistant lane because its queue was full")
    reasons: list[RoutingReason] = Field(min_length=1)
    customer_ref: str | None = None
    channel: Channel
    language: Language
    category: Category
    flags: Flags = Field(default_factory=list)
    sentiment: SentimentLabel
    virality_score: float | None = Field(default=None, ge=0, description="Social posts only")
    text: str = Field(min_length=1, description="Masked except for the kinds in visible_pii")
    visible_pii: PiiKinds = Field(default_factory=list, description="Personal-data kinds this queue may see")
    details: ChannelDetails
    routed_at: Timestamp
    link: CaseLink = Field(default_factory=lambda: CaseLink(kind="new_case"))
    received_at: Timestamp | None = Field(default=None, description="When the feedback arrived: the case's start")
    priority_score: int | None = Field(default=None, description="The triage score table's sum")
    lane: Literal["primary", "public_opinion"] = Field(
        default="primary",
        description="primary: the case's own queue; public_opinion: a copy for the PR desk because a social post of "
        "the case is spreading (the case is the same: open it once, count it once)",
    )


class CaseRoutedEvent(CloudEvent[CaseRouted]):
    type: Literal["com.parley.case.routed.v1"] = "com.parley.case.routed.v1"
