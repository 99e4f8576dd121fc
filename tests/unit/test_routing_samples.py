"""Triaged feedback for the routing tests, as triage publishes it (text already masked); no tests here."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from schemas.channels import (
    AppDetails,
    Channel,
    ChannelDetails,
    HotlineDetails,
    PublishedSocialReach,
    RegulatorDetails,
    SocialDetails,
)
from schemas.feedback import Language
from schemas.triage import CaseTriaged, CaseTriagedEvent, Sentiment, SentimentLabel, TriageReason
from schemas.values import Category, Flag, Priority

T0 = datetime(2026, 11, 22, 9, 30, tzinfo=UTC)


def feedback_id(name: str) -> uuid.UUID:
    return uuid.uuid5(uuid.NAMESPACE_URL, f"test-feedback:{name}")


def hotline() -> HotlineDetails:
    return HotlineDetails(channel=Channel.HOTLINE, caller_number="[MOBILE#0123456789abcdef]", ivr_path=["main"])


def app() -> AppDetails:
    return AppDetails(channel=Channel.APP, kind="chat")


def social(
    post_id: str,
    *,
    followers: int = 300,
    reposts: int = 2,
    comments: int = 5,
    likes: int = 20,
    posted_at: datetime = T0 - timedelta(hours=1),
    handle: str = "someone",
) -> SocialDetails:
    return SocialDetails(
        channel=Channel.SOCIAL,
        platform="weibo",
        post_id=post_id,
        author_handle=handle,
        url=f"https://weibo.example/{post_id}",
        posted_at=posted_at,
        reach=PublishedSocialReach(followers=followers, reposts=reposts, comments=comments, likes=likes),
    )


def regulator(reference: str) -> RegulatorDetails:
    return RegulatorDetails(channel=Channel.REGULATOR, regulator="nfra_12378", source_reference=reference)


def triaged(
    name: str,
    *,
    customer: str | None = "C100",
    details: ChannelDetails | None = None,
    category: Category = Category.REPAYMENT_HARDSHIP,
    priority: Priority = Priority.P3,
    flags: tuple[Flag, ...] = (),
    human_required: bool = False,
    sentiment: SentimentLabel = SentimentLabel.NEGATIVE,
    case_id: uuid.UUID | None = None,
    at: datetime = T0,
    text: str = "我生病住院了，这个月贷款还不上，手机[MOBILE#0123456789abcdef]",
    **overrides: Any,
) -> CaseTriaged:
    chosen = details if details is not None else hotline()
    return CaseTriaged(
        feedback_id=feedback_id(name),
        case_id=case_id,
        customer_ref=customer,
        channel=chosen.channel,
        language=Language.ZH_HANS,
        text=text,
        details=chosen,
        category=category,
        category_confidence=0.9,
        flags=list(flags),
        sentiment=Sentiment(label=sentiment, score=-0.6 if sentiment is SentimentLabel.NEGATIVE else 0.2),
        priority=priority,
        priority_score=30,
        human_required=human_required,
        reasons=[TriageReason(decided="category", value=category.value, rule="test")],
        triaged_at=at,
        ruleset_version="test",
        **overrides,
    )


def triaged_event(data: CaseTriaged) -> CaseTriagedEvent:
    return CaseTriagedEvent(
        id=uuid.uuid5(uuid.NAMESPACE_URL, f"test-triaged:{data.feedback_id}"),
        source="/parley/triage",
        time=data.triaged_at,
        subject=str(data.case_id) if data.case_id else None,
        data=data,
    )
