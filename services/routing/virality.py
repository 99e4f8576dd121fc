"""Pure public-opinion scoring: how fast a social post about a case is spreading, against what is usual.

score = reach points + velocity points + negative-sentiment points + threat points, where reach counts
the audience (followers plus weighted engagement) on a log scale, and velocity compares the post's
repost growth per hour with the account's usual rate (or the topic's, or a default) on a log scale,
capped. Every part is returned, so the reasons and the alert can show what made the score.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from schemas.triage import SentimentLabel
from schemas.values import Flag
from services.routing.rules import Baseline, ViralityWeights

BaselineSource = Literal["account", "topic", "default"]


@dataclass(frozen=True)
class Reach:
    followers: int
    reposts: int
    comments: int
    likes: int


@dataclass(frozen=True)
class Observation:
    """A post's reach figures, as read at ``observed_at``."""

    reach: Reach
    observed_at: datetime


@dataclass(frozen=True)
class RateAverage:
    """A moving average of reposts per hour, for one account or one topic."""

    reposts_per_hour: float
    observations: int

    def updated(self, rate: float, smoothing: float) -> RateAverage:
        return RateAverage(self.reposts_per_hour + smoothing * (rate - self.reposts_per_hour), self.observations + 1)


def first_average(rate: float) -> RateAverage:
    return RateAverage(rate, 1)


@dataclass(frozen=True)
class Virality:
    score: float
    reach_points: float
    velocity_points: float
    sentiment_points: float
    threat_points: float
    reposts_per_hour: float
    baseline_reposts_per_hour: float
    baseline_source: BaselineSource

    def describe(self) -> str:
        return (
            f"virality {self.score:.1f} = reach {self.reach_points:.1f} + velocity {self.velocity_points:.1f} "
            f"({self.reposts_per_hour:.1f} reposts/h against the {self.baseline_source} baseline "
            f"{self.baseline_reposts_per_hour:.1f}/h) + sentiment {self.sentiment_points:.1f} "
            f"+ threats {self.threat_points:.1f}"
        )


def reposts_per_hour(
    current: Observation, previous: Observation | None, posted_at: datetime, min_elapsed_minutes: float
) -> float:
    """Repost growth per hour since the previous observation, or since the post was published."""
    if previous is not None:
        growth = max(current.reach.reposts - previous.reach.reposts, 0)
        since = previous.observed_at
    else:
        growth = current.reach.reposts
        since = posted_at
    hours = max((current.observed_at - since).total_seconds() / 3600, min_elapsed_minutes / 60)
    return growth / hours


def baseline_rate(
    account: RateAverage | None, topic: RateAverage | None, settings: Baseline
) -> tuple[float, BaselineSource]:
    """The account's usual rate once it has enough history, else the topic's, else the configured default."""
    floor = settings.default_reposts_per_hour / 10  # a near-silent account must not make every post "viral"
    if account is not None and account.observations >= settings.min_observations:
        return max(account.reposts_per_hour, floor), "account"
    if topic is not None and topic.observations >= settings.min_observations:
        return max(topic.reposts_per_hour, floor), "topic"
    return settings.default_reposts_per_hour, "default"


def score(
    reach: Reach,
    rate: float,
    baseline: tuple[float, BaselineSource],
    sentiment: SentimentLabel,
    flags: frozenset[Flag],
    weights: ViralityWeights,
) -> Virality:
    engagement = weights.engagement
    audience = (
        reach.followers
        + reach.reposts * engagement.reposts
        + reach.comments * engagement.comments
        + reach.likes * engagement.likes
    )
    reach_points = weights.reach_per_decade * math.log10(1 + audience)
    baseline_value, source = baseline
    velocity_points = min(weights.velocity_cap, weights.velocity_per_doubling * math.log2(1 + rate / baseline_value))
    sentiment_points = weights.negative_sentiment if sentiment is SentimentLabel.NEGATIVE else 0.0
    threat_points = sum(points for flag, points in weights.threats.items() if flag in flags)
    total = reach_points + velocity_points + sentiment_points + threat_points
    return Virality(
        score=round(total, 1),
        reach_points=round(reach_points, 1),
        velocity_points=round(velocity_points, 1),
        sentiment_points=round(sentiment_points, 1),
        threat_points=round(threat_points, 1),
        reposts_per_hour=round(rate, 1),
        baseline_reposts_per_hour=round(baseline_value, 1),
        baseline_source=source,
    )
