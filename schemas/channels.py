"""What channel systems publish on ``feedback.raw.<channel>``, and the channel details we keep.

Raw models read tolerantly (unknown fields ignored) because channel teams evolve on their own
schedule. Each channel's specific fields live in one field-set class that serves both the raw
model (read) and the closed details model carried by ``feedback.received`` (published).
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Literal
from uuid import UUID

from pydantic import BaseModel, Field, NonNegativeInt

from schemas.base import ConsumedModel, PublishedModel
from schemas.values import Timestamp

ShortText = Annotated[str, Field(max_length=200)]


class Channel(StrEnum):
    HOTLINE = "hotline"
    APP = "app"
    SOCIAL = "social"
    BRANCH = "branch"
    LETTER = "letter"
    REGULATOR = "regulator"


class SocialPlatform(StrEnum):
    WEIBO = "weibo"
    WECHAT = "wechat"
    DOUYIN = "douyin"
    XIAOHONGSHU = "xiaohongshu"
    OTHER = "other"


class Regulator(StrEnum):
    NFRA_12378 = "nfra_12378"  # National Financial Regulatory Administration consumer hotline
    PBOC = "pboc"
    OTHER = "other"


class SocialReachFields(BaseModel):
    """Audience figures of a social post at the time the channel system read them."""

    followers: NonNegativeInt
    reposts: NonNegativeInt = 0
    comments: NonNegativeInt = 0
    likes: NonNegativeInt = 0
    views: NonNegativeInt | None = None


class SocialReach(ConsumedModel, SocialReachFields):
    """Reach as a channel sends it (unknown figures ignored)."""


class PublishedSocialReach(PublishedModel, SocialReachFields):
    """Reach as we publish it."""


# ---- channel-specific field sets (shared by raw and details models) ----


class HotlineFields(BaseModel):
    caller_number: ShortText | None = None
    ivr_path: list[ShortText] = Field(default_factory=list, max_length=50)
    duration_seconds: NonNegativeInt | None = None


class AppFields(BaseModel):
    kind: Literal["chat", "form"]
    session_id: ShortText | None = None
    platform: Literal["ios", "android", "web", "harmonyos"] | None = None
    app_version: ShortText | None = None
    form_subject: ShortText | None = None


class SocialFields(BaseModel):
    platform: SocialPlatform
    post_id: ShortText
    author_handle: ShortText
    url: Annotated[str, Field(max_length=2000)] | None = None
    posted_at: Timestamp


class BranchFields(BaseModel):
    branch_code: ShortText
    staff_id: ShortText | None = None


class LetterFields(BaseModel):
    kind: Literal["letter", "email"]
    sender_name: ShortText | None = None
    sender_email: ShortText | None = None
    subject: ShortText | None = None


class RegulatorFields(BaseModel):
    regulator: Regulator
    source_reference: ShortText
    response_due_by: Timestamp | None = None


# ---- raw events (consumed, tolerant) ----


class RawFeedback(ConsumedModel):
    """Fields every channel sends."""

    message_id: Annotated[str, Field(min_length=1, max_length=200)]
    """The channel system's own id for this message; a retry must repeat it."""
    sent_at: Timestamp
    channel: str | None = None
    """Optional; when present it must name the topic's channel."""
    customer_id: ShortText | None = None
    """The bank's customer number, when the channel knows the customer."""
    case_id: UUID | None = None
    """An existing case this message is about, when the channel knows it."""
    language: ShortText | None = None

    def feedback_text(self) -> str:
        raise NotImplementedError


class HotlineRaw(RawFeedback, HotlineFields):
    transcript: str

    def feedback_text(self) -> str:
        return self.transcript


class AppRaw(RawFeedback, AppFields):
    text: str

    def feedback_text(self) -> str:
        return self.text


class SocialRaw(RawFeedback, SocialFields):
    reach: SocialReach
    text: str

    def feedback_text(self) -> str:
        return self.text


class BranchRaw(RawFeedback, BranchFields):
    text: str

    def feedback_text(self) -> str:
        return self.text


class LetterRaw(RawFeedback, LetterFields):
    body: str

    def feedback_text(self) -> str:
        return self.body


class RegulatorRaw(RawFeedback, RegulatorFields):
    text: str

    def feedback_text(self) -> str:
        return self.text


RAW_MODELS: dict[Channel, type[RawFeedback]] = {
    Channel.HOTLINE: HotlineRaw,
    Channel.APP: AppRaw,
    Channel.SOCIAL: SocialRaw,
    Channel.BRANCH: BranchRaw,
    Channel.LETTER: LetterRaw,
    Channel.REGULATOR: RegulatorRaw,
}


# ---- details carried by feedback.received (published, closed) ----


class HotlineDetails(PublishedModel, HotlineFields):
    channel: Literal[Channel.HOTLINE]


class AppDetails(PublishedModel, AppFields):
    channel: Literal[Channel.APP]


class SocialDetails(PublishedModel, SocialFields):
    channel: Literal[Channel.SOCIAL]
    reach: PublishedSocialReach


class BranchDetails(PublishedModel, BranchFields):
    channel: Literal[Channel.BRANCH]


class LetterDetails(PublishedModel, LetterFields):
    channel: Literal[Channel.LETTER]


class RegulatorDetails(PublishedModel, RegulatorFields):
    channel: Literal[Channel.REGULATOR]


ChannelDetails = Annotated[
    HotlineDetails | AppDetails | SocialDetails | BranchDetails | LetterDetails | RegulatorDetails,
    Field(discriminator="channel"),
]

DETAILS_MODELS: dict[Channel, type[PublishedModel]] = {
    Channel.HOTLINE: HotlineDetails,
    Channel.APP: AppDetails,
    Channel.SOCIAL: SocialDetails,
    Channel.BRANCH: BranchDetails,
    Channel.LETTER: LetterDetails,
    Channel.REGULATOR: RegulatorDetails,
}
