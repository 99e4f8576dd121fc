"""``reputation.alerts``: a social post about a case is spreading (the key is the case id).

Routing raises one alert when a post's virality score first passes the warning threshold and one
more when it passes the critical threshold; later reach updates change the score on the case's
routed events, not the number of alerts.
"""

from __future__ import annotations

from typing import Literal
from uuid import UUID

from pydantic import Field, NonNegativeFloat

from schemas.base import PublishedModel
from schemas.channels import PublishedSocialReach, ShortText, SocialPlatform
from schemas.envelope import CloudEvent
from schemas.sla import Severity
from schemas.triage import SentimentLabel
from schemas.values import Flags, Priority, Queue, Timestamp


class ViralityComponents(PublishedModel):
    """The points each part of the score added (they sum to the score)."""

    reach: NonNegativeFloat = Field(description="From followers and engagement (reposts, comments, likes)")
    velocity: NonNegativeFloat = Field(description="From reposts per hour against the baseline")
    sentiment: NonNegativeFloat = Field(description="From negative sentiment")
    threats: NonNegativeFloat = Field(description="From media, regulator and legal threat flags")


class ViralPost(PublishedModel):
    """A social post about a case passed a virality threshold: the PR desk has the case as well."""

    case_id: UUID
    feedback_id: UUID = Field(description="The feedback (post or post update) whose figures passed the threshold")
    platform: SocialPlatform
    post_id: ShortText
    url: str | None = Field(default=None, max_length=2000)
    virality_score: NonNegativeFloat
    threshold: NonNegativeFloat = Field(description="The threshold it passed (warning or critical)")
    severity: Severity
    components: ViralityComponents
    reach: PublishedSocialReach
    reposts_per_hour: NonNegativeFloat = Field(description="Repost growth per hour at this observation")
    baseline_reposts_per_hour: NonNegativeFloat = Field(description="What is usual for the account or the topic")
    baseline: Literal["account", "topic", "default"] = Field(
        description="account: the author's earlier posts; topic: earlier posts of the same category; default: the "
        "configured value (too few observations)"
    )
    sentiment: SentimentLabel
    flags: Flags = Field(default_factory=list)
    priority: Priority
    queue: Queue = Field(description="The queue that now has the case for public opinion")
    observed_at: Timestamp = Field(description="When the reach figures were read")


class ViralPostEvent(CloudEvent[ViralPost]):
    type: Literal["com.parley.reputation.viral_post.v1"] = "com.parley.reputation.viral_post.v1"
