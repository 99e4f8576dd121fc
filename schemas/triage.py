"""``case.triaged``: what the problem is, how urgent, which risks — with the reasons that decided it."""

from __future__ import annotations

from enum import StrEnum
from typing import Literal
from uuid import UUID

from pydantic import Field

from schemas.base import PublishedModel
from schemas.channels import Channel, ChannelDetails
from schemas.envelope import CloudEvent
from schemas.feedback import Language
from schemas.values import Category, Flags, Priority, Probability, Score, Timestamp


class SentimentLabel(StrEnum):
    NEGATIVE = "negative"
    NEUTRAL = "neutral"
    POSITIVE = "positive"


class Sentiment(PublishedModel):
    label: SentimentLabel
    score: Score = Field(description="-1 most negative … 1 most positive")


class TriageReason(PublishedModel):
    """One piece of evidence: which rule or cue decided which part of the triage."""

    decided: Literal["category", "flag", "sentiment", "priority", "human_required"]
    value: str = Field(max_length=100, description="What it decided, e.g. repayment_hardship, self_harm, P1")
    rule: str = Field(max_length=200, description="The rule, lexicon entry or score-table row")
    cue: str | None = Field(default=None, max_length=200, description="The words that matched (masked text)")
    weight: int | None = Field(default=None, description="Points it added to the priority score")


class CaseTriaged(PublishedModel):
    feedback_id: UUID = Field(description="The feedback.received event that was triaged")
    case_id: UUID | None = Field(default=None, description="The case, when the feedback named one")
    customer_ref: str | None = None
    channel: Channel
    language: Language
    text: str = Field(min_length=1, description="The masked text, as it travels")
    details: ChannelDetails
    category: Category
    category_confidence: Probability
    flags: Flags = Field(default_factory=list, description="Risk flags, each at most once")
    sentiment: Sentiment
    priority: Priority
    priority_score: int = Field(description="Sum of the score table's rows that applied")
    human_required: bool = Field(description="True for self_harm and live_fraud: never the AI lane")
    reasons: list[TriageReason] = Field(min_length=1)
    triaged_at: Timestamp
    received_at: Timestamp | None = Field(
        default=None, description="When intake received the feedback (its feedback.received time): the case's start"
    )
    ruleset_version: str = Field(max_length=200, description="Versions of the rules and the model used")


class CaseTriagedEvent(CloudEvent[CaseTriaged]):
    type: Literal["com.parley.case.triaged.v1"] = "com.parley.case.triaged.v1"
