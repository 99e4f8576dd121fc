"""Pure triage: (masked text, channel, details) -> category, flags, sentiment, priority and reasons.

Category and sentiment come from the linear classifiers (services/triage/model.py), flags from the
lexicon rules, priority from the additive score table (rules/priority.yaml). One rule overrides the
classifier: a live fraud is a fraud case. Every decision carries the cues, n-grams or table rows
that made it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from schemas.channels import Channel, SocialDetails
from schemas.triage import SentimentLabel, TriageReason
from schemas.values import Category, Flag, Priority
from services.triage.model import CUE_PREFIX, PII_MARK, Scores, TextModels, cue_tokens, load_models
from services.triage.rules import (
    CategoryCues,
    CueMatcher,
    FlagDetector,
    FlagMatch,
    PriorityTable,
    category_cues,
    flag_detector,
    priority_table,
)
from services.triage.text import normalise


@dataclass(frozen=True)
class TriageResult:
    category: Category
    category_confidence: float
    flags: tuple[Flag, ...]
    sentiment: SentimentLabel
    sentiment_score: float
    priority: Priority
    priority_score: int
    human_required: bool
    reasons: tuple[Reason, ...]


@dataclass(frozen=True)
class Triage:
    """Everything triage needs, loaded once; ``assess`` is a pure function of its arguments."""

    models: TextModels
    flags: FlagDetector
    table: PriorityTable
    cues: CategoryCues
    every_cue: CueMatcher = field(init=False, repr=False)

    def __post_init__(self) -> None:
        # One automaton pass per text finds the category cues and every flag's cues together.
        object.__setattr__(self, "every_cue", CueMatcher([*self.cues.cues, *self.flags.cues]))

    @classmethod
    def shipped(cls) -> Triage:
        """The rules and the model that ship with the package, each loaded and validated once."""
        return cls(load_models(), flag_detector(), priority_table(), category_cues())

    @property
    def ruleset_version(self) -> str:
        return (
            f"flags {self.flags.version}; categories {self.cues.version}; priority {self.table.version}; "
            f"model {self.models.version}"
        )

    def assess(self, masked_text: str, channel: Channel, social: SocialDetails | None = None) -> TriageResult:
        return self.assess_many([(masked_text, channel, social)])[0]

    def assess_many(self, items: Sequence[tuple[str, Channel, SocialDetails | None]]) -> list[TriageResult]:
        """Triage a batch: the classifiers score every text of it at once (services/triage/model.py)."""
        texts = [normalise(masked_text) for masked_text, _, _ in items]
        found = [self.every_cue.found(text) for text in texts]
        cue_words = [self.cues.owners_in(cues) for cues in found]
        scores = self.models.score(texts, [[CUE_PREFIX + cue for cue in cue_tokens(words)] for words in cue_words])
        return [
            self._result(channel, social, words, self.flags.detect_in(cues), score)
            for (_, channel, social), cues, words, score in zip(items, found, cue_words, scores, strict=True)
        ]

    def _result(
        self,
        channel: Channel,
        social: SocialDetails | None,
        cue_words: dict[Category, list[str]],
        matches: list[FlagMatch],
        scores: Scores,
    ) -> TriageResult:
        reasons: list[Reason] = []
        predicted = scores.category
        category, confidence = Category(predicted.label), predicted.confidence
        reasons.append(
            Reason(
                decided="category",
                value=category.value,
                rule="classifier: character n-grams",
                cue=_cue_text(predicted.top_features),
            )
        )
        if category in cue_words:
            reasons.append(
                Reason(
                    decided="category",
                    value=category.value,
                    rule="categories.yaml cues",
                    cue=", ".join(cue_words[category])[:200],
                )
            )

        flags = tuple(match.flag for match in matches)
        for match in matches:
            reasons.append(
                Reason(decided="flag", value=match.flag.value, rule=match.rule, cue=", ".join(match.cues)[:200])
            )
        # The flag classifiers catch what no cue list foresaw (indirect wording); thresholds favour recall.
        for name, probability, top in scores.flags:
            flag = Flag(name)
            if flag not in flags:
                flags = (*flags, flag)
                threshold = self.models.flag_thresholds[name]
                reasons.append(
                    Reason(
                        decided="flag",
                        value=flag.value,
                        rule=f"classifier: p={probability:.2f} ≥ {threshold:.2f}",
                        cue=_cue_text(top),
                    )
                )
        if channel is Channel.REGULATOR and Flag.REGULATOR_THREAT not in flags:
            # A referral from the regulator: the customer has complained to a regulator already.
            flags = (*flags, Flag.REGULATOR_THREAT)
            reasons.append(
                Reason(
                    decided="flag", value=Flag.REGULATOR_THREAT.value, rule="channel regulator: a regulator referral"
                )
            )
        if any(m.flag is Flag.LIVE_FRAUD for m in matches) and category is not Category.FRAUD_SECURITY:
            reasons.append(
                Reason(
                    decided="category",
                    value=Category.FRAUD_SECURITY.value,
                    rule=f"live_fraud overrides the classifier ({category.value})",
                )
            )
            category, confidence = Category.FRAUD_SECURITY, 1.0

        mood = scores.sentiment
        sentiment = SentimentLabel(mood.label)
        score = _sentiment_score(sentiment, mood.confidence)
        reasons.append(
            Reason(
                decided="sentiment",
                value=sentiment.value,
                rule="classifier: character n-grams",
                cue=_cue_text(mood.top_features),
            )
        )

        points, rows = self._points(category, flags, sentiment, channel, social)
        forced = [flag for flag in self.table.always_p1_and_human if flag in flags]
        priority = self._priority(points)
        for rule, value in rows:
            reasons.append(Reason(decided="priority", value=f"{value:+d}", rule=rule, weight=value))
        if forced:
            priority = Priority.P1
            rule = f"always_p1_and_human: {', '.join(f.value for f in forced)}"
            reasons.append(Reason(decided="priority", value="P1", rule=rule))
            reasons.append(Reason(decided="human_required", value="true", rule=rule))
        else:
            reasons.append(
                Reason(
                    decided="priority",
                    value=priority.value,
                    rule=f"total {points} against thresholds {self._thresholds_text()}",
                )
            )
        return TriageResult(
            category, round(confidence, 4), flags, sentiment, score, priority, points, bool(forced), tuple(reasons)
        )

    def _points(
        self,
        category: Category,
        flags: tuple[Flag, ...],
        sentiment: SentimentLabel,
        channel: Channel,
        social: SocialDetails | None,
    ) -> tuple[int, list[tuple[str, int]]]:
        table = self.table
        rows = [(f"priority.category.{category.value}", table.category[category])]
        rows += [(f"priority.flags.{flag.value}", table.flags[flag]) for flag in flags if flag in table.flags]
        rows.append((f"priority.sentiment.{sentiment.value}", table.sentiment.get(sentiment, 0)))
        rows.append((f"priority.channel.{channel.value}", table.channel.get(channel, 0)))
        if social is not None:
            for index, row in enumerate(table.social_reach):
                if social.reach.followers >= row.followers or social.reach.reposts >= row.reposts:
                    rows.append(
                        (
                            f"priority.social_reach[{index}] (followers {social.reach.followers}, "
                            f"reposts {social.reach.reposts})",
                            row.points,
                        )
                    )
                    break
        rows = [(rule, value) for rule, value in rows if value]
        return sum(value for _, value in rows), rows

    def _priority(self, points: int) -> Priority:
        for priority in (Priority.P1, Priority.P2, Priority.P3):
            if points >= self.table.thresholds[priority]:
                return priority
        return Priority.P4

    def _thresholds_text(self) -> str:
        return ", ".join(f"{p.value}≥{v}" for p, v in self.table.thresholds.items())


def _cue_text(top: tuple[tuple[str, float], ...]) -> str | None:
    shown = [
        feature.replace(CUE_PREFIX, "cues of ")
        if feature.startswith(CUE_PREFIX)
        else f"“{feature.replace(PII_MARK, '[PII]')}”"
        for feature, _ in top[:5]
    ]
    return " ".join(shown)[:200] or None


def _sentiment_score(label: SentimentLabel, confidence: float) -> float:
    """-1 … 1: the sign from the label, the size from how sure the classifier is."""
    sign = {SentimentLabel.NEGATIVE: -1.0, SentimentLabel.NEUTRAL: 0.0, SentimentLabel.POSITIVE: 1.0}[label]
    return round(sign * confidence, 4) if not math.isnan(confidence) else 0.0


@dataclass(frozen=True, slots=True)
class Reason:
    """One piece of evidence (the published form is schemas.triage.TriageReason)."""

    decided: Literal["category", "flag", "sentiment", "priority", "human_required"]
    value: str
    rule: str
    cue: str | None = None
    weight: int | None = None

    def published(self) -> TriageReason:
        # Built from our own bounded values (cues cut to 200 characters), so it skips re-validation:
        # with eight or nine reasons a text, validating them cost as much as triage itself.
        return TriageReason.model_construct(
            decided=self.decided, value=self.value, rule=self.rule, cue=self.cue, weight=self.weight
        )
