"""The routing rules file: the shipped one is valid, and every mistake is named with its line and field."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from schemas.triage import SentimentLabel
from schemas.values import Category, Flag, Priority, Queue
from services.routing.rules import PROJECT_ROOT, Match, load_rules, parse_rules, resolve_rules_path
from services.routing.virality import (
    Observation,
    RateAverage,
    Reach,
    baseline_rate,
    first_average,
    reposts_per_hour,
    score,
)
from services.runtime.errors import ConfigurationError
from services.runtime.settings import Settings

SHIPPED = PROJECT_ROOT / "deploy" / "config" / "routing.yaml"
TEXT = SHIPPED.read_text(encoding="utf-8")
RULES = load_rules(SHIPPED)


def line_of(text: str, fragment: str) -> int:
    return text[: text.index(fragment)].count("\n") + 1


def error_of(text: str) -> str:
    with pytest.raises(ConfigurationError) as caught:
        parse_rules(text, "routing.yaml")
    return str(caught.value)


def test_the_setting_names_the_shipped_file_from_any_directory() -> None:
    assert resolve_rules_path(Settings().routing_rules_path).resolve() == SHIPPED.resolve()


def test_the_shipped_rules_cover_every_queue_and_keep_personal_data_masked() -> None:
    assert set(RULES.queues) == set(Queue)
    assert all(settings.visible_pii == [] for settings in RULES.queues.values())
    assert RULES.overflow.lane is Queue.AI_ASSISTANT
    assert Priority.P1 not in (RULES.overflow.allow.priority or [])
    assert RULES.public_opinion.targets[0].queue is Queue.PUBLIC_OPINION
    assert [rule.name for rule in RULES.filters][:2] == ["live-fraud", "self-harm"]
    assert RULES.filters[0].targets[0].timeout == 300


@pytest.mark.parametrize(
    ("before", "after", "field", "message"),
    [
        (
            "{queue: fraud, priority: P1, timeout: 5m}",
            "{queue: frauds, priority: P1, timeout: 5m}",
            "filters[0].targets[0].queue",
            "Input should be",
        ),
        (
            "{queue: fraud, priority: P1, timeout: 5m}",
            "{queue: fraud, priority: P1, timeout: soon}",
            "filters[0].targets[0].timeout",
            "a duration is a number of seconds",
        ),
        ("match: {flags_any: [live_fraud]}", "match: {flag_any: [live_fraud]}", "filters[0].match.flag_any", "Extra"),
        (
            "  loans: {backlog_limit: 400, visible_pii: []}",
            "  loans: {backlog_limit: 0, visible_pii: []}",
            "queues.loans.backlog_limit",
            "greater than 0",
        ),
        (
            "  loans: {backlog_limit: 400, visible_pii: []}",
            "  loans: {backlog_limit: 400, visible_pii: [phone]}",
            "queues.loans.visible_pii[0]",
            "Input should be",
        ),
        ("  - name: privacy\n", "  - name: fraud\n", "filters[5].name", "also the name of filter 4"),
        ("    priority: [P3, P4]\n", "    priority: [P1, P3, P4]\n", "overflow.allow.priority", "P1 never overflows"),
        (
            "    human_required: false\n",
            "    human_required: true\n",
            "overflow.allow.human_required",
            "never overflows",
        ),
        (
            "default_filter: {queue: cards_payments, timeout: 4h}",
            "default_filter: {queue: ai_assistant, timeout: 4h}",
            "default_filter.queue",
            "must reach people",
        ),
        ("  critical_threshold: 85\n", "  critical_threshold: 50\n", "public_opinion.critical_threshold", "at least"),
        (
            "    cards_and_fraud: [card_payment_account, fraud_security]",
            "    cards_and_fraud: [card_payment_account, fraud_security, loan_approval]",
            "merge.problem_groups.cards_and_fraud",
            "already in group lending",
        ),
    ],
)
def test_a_mistake_names_the_line_and_the_field(before: str, after: str, field: str, message: str) -> None:
    assert before in TEXT
    broken = TEXT.replace(before, after, 1)
    error = error_of(broken)
    assert f"({field})" in error, error
    assert message in error, error
    line = int(re.search(r"routing\.yaml line (\d+)", error).group(1))  # type: ignore[union-attr]
    assert line == line_of(TEXT, before), error


def test_a_missing_queue_is_named() -> None:
    error = error_of(TEXT.replace("  privacy: {backlog_limit: 150, visible_pii: []}\n", ""))
    assert "missing: privacy" in error
    assert "(queues)" in error


def test_yaml_syntax_and_shape_errors() -> None:
    assert "not valid YAML" in error_of("filters: [\n")
    assert "expected a mapping" in error_of("- just a list\n")
    assert "version" in error_of("queues: {}\n")


def test_an_unreadable_file_is_a_configuration_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="cannot read the routing rules"):
        load_rules(tmp_path / "absent.yaml")


def test_durations() -> None:
    rules = parse_rules(TEXT.replace("timeout: 5m}", "timeout: 1h30m}", 1))
    assert rules.filters[0].targets[0].timeout == 5400
    rules = parse_rules(TEXT.replace("timeout: 5m}", "timeout: 45}", 1))
    assert rules.filters[0].targets[0].timeout == 45


def test_match_conditions() -> None:
    from schemas.channels import Channel
    from schemas.feedback import Language
    from services.routing.rules import CaseView

    view = CaseView(
        category=Category.LOAN_APPROVAL,
        channel=Channel.APP,
        priority=Priority.P3,
        sentiment=SentimentLabel.NEGATIVE,
        language=Language.ZH_HANS,
        flags=frozenset({Flag.VULNERABLE}),
        human_required=False,
    )
    assert Match().holds(view)
    assert Match.model_validate({"category": "loan_approval"}).holds(view)
    assert not Match.model_validate({"category": ["wealth_product"]}).holds(view)
    assert Match.model_validate({"flags_any": ["vulnerable", "self_harm"]}).holds(view)
    assert not Match.model_validate({"flags_none": ["vulnerable"]}).holds(view)
    assert not Match.model_validate({"no_flags": True}).holds(view)
    assert Match.model_validate({"no_flags": False, "priority": ["P3"], "channel": "app"}).holds(view)
    assert not Match.model_validate({"human_required": True}).holds(view)
    assert Match.model_validate({"category": "loan_approval", "no_flags": False}).describe() == (
        "category loan_approval; no_flags false"
    )


# ---- virality ----

T0 = datetime(2026, 11, 22, 9, 30, tzinfo=UTC)
WEIGHTS = RULES.public_opinion.weights
BASELINE = RULES.public_opinion.baseline


def test_repost_velocity_is_growth_per_hour_over_at_least_the_minimum_time() -> None:
    posted = T0 - timedelta(hours=2)
    first = Observation(Reach(1000, 100, 0, 0), T0)
    assert reposts_per_hour(first, None, posted, 30) == pytest.approx(50.0)
    later = Observation(Reach(1000, 400, 0, 0), T0 + timedelta(hours=3))
    assert reposts_per_hour(later, first, posted, 30) == pytest.approx(100.0)
    soon = Observation(Reach(1000, 130, 0, 0), T0 + timedelta(minutes=5))
    assert reposts_per_hour(soon, first, posted, 30) == pytest.approx(60.0), "30 reposts over the 30-minute floor"
    fewer = Observation(Reach(1000, 90, 0, 0), T0 + timedelta(hours=1))
    assert reposts_per_hour(fewer, first, posted, 30) == 0.0


def test_the_baseline_is_the_accounts_then_the_topics_then_the_default() -> None:
    account = RateAverage(40.0, 5)
    topic = RateAverage(12.0, 50)
    assert baseline_rate(account, topic, BASELINE) == (40.0, "account")
    assert baseline_rate(RateAverage(40.0, 1), topic, BASELINE) == (12.0, "topic")
    assert baseline_rate(None, RateAverage(12.0, 2), BASELINE) == (5.0, "default")
    assert baseline_rate(RateAverage(0.0, 9), None, BASELINE) == (0.5, "account"), "a floor under silent accounts"
    average = first_average(10.0).updated(20.0, 0.2)
    assert average == RateAverage(12.0, 2)


def test_score_grows_with_reach_velocity_negativity_and_threats() -> None:
    reach = Reach(1000, 10, 10, 10)
    calm = score(reach, 5.0, (5.0, "default"), SentimentLabel.NEUTRAL, frozenset(), WEIGHTS)
    assert calm.velocity_points == pytest.approx(8.0)  # at the baseline: one doubling of (1 + 1)
    faster = score(reach, 500.0, (5.0, "default"), SentimentLabel.NEUTRAL, frozenset(), WEIGHTS)
    angrier = score(reach, 5.0, (5.0, "default"), SentimentLabel.NEGATIVE, frozenset(), WEIGHTS)
    threat = score(reach, 5.0, (5.0, "default"), SentimentLabel.NEUTRAL, frozenset({Flag.MEDIA_THREAT}), WEIGHTS)
    bigger = score(Reach(1_000_000, 10, 10, 10), 5.0, (5.0, "default"), SentimentLabel.NEUTRAL, frozenset(), WEIGHTS)
    assert faster.score > calm.score
    assert angrier.score == calm.score + 10
    assert threat.score == calm.score + 15
    assert bigger.reach_points == pytest.approx(60.0, abs=0.1)
    capped = score(reach, 1e9, (5.0, "default"), SentimentLabel.NEUTRAL, frozenset(), WEIGHTS)
    assert capped.velocity_points == WEIGHTS.velocity_cap
    usual = score(reach, 500.0, (500.0, "account"), SentimentLabel.NEUTRAL, frozenset(), WEIGHTS)
    assert usual.velocity_points == pytest.approx(8.0), "fast for most, usual for this account"
    assert "account baseline 500.0/h" in usual.describe()
