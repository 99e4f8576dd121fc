"""The plan policy file: the shipped one is valid, and each kind of mistake stops the planner with the field."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from schemas.plans import Product
from schemas.values import Jurisdiction, PlanKind
from services.planner.policy import PROJECT_ROOT, load_policy, parse_policy, resolve_path
from services.runtime.errors import ConfigurationError
from services.runtime.settings import Settings

SHIPPED = PROJECT_ROOT / "deploy" / "config" / "plan-policy.yaml"


def shipped() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(SHIPPED.read_text(encoding="utf-8"))
    return document


def problem(document: dict[str, Any]) -> str:
    with pytest.raises(ConfigurationError) as raised:
        parse_policy(yaml.safe_dump(document, allow_unicode=True), "plan-policy.yaml")
    return str(raised.value)


def test_the_shipped_policy_is_valid_and_found_from_the_setting() -> None:
    policy = load_policy(Settings().plan_policy_path)
    assert policy.version
    assert resolve_path(Settings().plan_policy_path) == SHIPPED or Settings().plan_policy_path.resolve() == SHIPPED
    for jurisdiction in Jurisdiction:
        assert set(policy.caps[jurisdiction]) == set(Product)


def test_a_credit_card_plan_stops_at_five_years_in_china() -> None:
    caps = load_policy(SHIPPED).caps[Jurisdiction.CN][Product.CREDIT_CARD]
    assert caps.max_term_months == 60
    assert PlanKind.CARD_INSTALMENT in caps.kinds


def test_a_missing_file_names_the_setting() -> None:
    with pytest.raises(ConfigurationError, match="PARLEY_PLAN_POLICY_PATH"):
        load_policy(Path("/nonexistent/plan-policy.yaml"))


def test_not_yaml_is_named() -> None:
    with pytest.raises(ConfigurationError, match=r"plan-policy.yaml: not valid YAML"):
        parse_policy("caps: [unclosed", "plan-policy.yaml")
    with pytest.raises(ConfigurationError, match="expected a mapping"):
        parse_policy("- a list", "plan-policy.yaml")


def test_a_bare_number_for_money_is_refused() -> None:
    document = shipped()
    document["affordability"]["margin"] = 0.1
    assert "affordability.margin" in problem(document)
    assert "quoted strings" in problem(document)


def test_a_missing_product_or_jurisdiction_is_named() -> None:
    document = shipped()
    del document["caps"]["UK"]["mortgage"]
    assert "caps.UK: no caps for product mortgage" in problem(document)
    document = shipped()
    del document["caps"]["US"]
    assert "no caps for jurisdiction US" in problem(document)


def test_tiers_must_come_in_order_and_widen() -> None:
    document = shipped()
    document["approval_tiers"].reverse()
    assert "give agent, team_lead, risk_committee once each, in that order" in problem(document)
    document = shipped()
    document["approval_tiers"][1]["max_loss_share"] = "0.01"
    assert "approval_tiers.team_lead.max_loss_share is below agent's" in problem(document)
    document = shipped()
    del document["approval_tiers"][0]["max_loss"]["GBP"]
    assert "approval_tiers.agent.max_loss: no limit for GBP" in problem(document)


def test_card_instalments_are_for_cards_only() -> None:
    document = shipped()
    document["caps"]["CN"]["personal_loan"]["kinds"].append("card_instalment")
    assert "caps.CN.personal_loan.kinds: card_instalment is for credit cards" in problem(document)


def test_unknown_fields_and_values_are_named() -> None:
    document = shipped()
    document["caps"]["CN"]["mortgage"]["max_term"] = 300
    assert "caps.CN.mortgage.max_term" in problem(document)
    document = shipped()
    document["caps"]["CN"]["mortgage"]["day_count"] = "actual/actual"
    assert "caps.CN.mortgage.day_count" in problem(document)
    document = shipped()
    document["caps"]["CN"]["mortgage"]["kinds"] = ["haircut"]
    assert "caps.CN.mortgage.kinds.0" in problem(document)


def test_impossible_figures_are_named() -> None:
    document = shipped()
    document["keep_probability"]["at_full_load"] = 0.99
    assert "at_full_load must not exceed at_no_load" in problem(document)
    document = shipped()
    document["caps"]["CN"]["credit_card"]["max_term_months"] = 12
    document["caps"]["CN"]["credit_card"]["max_deferral_months"] = 12
    assert "max_deferral_months must be below max_term_months" in problem(document)
    document = shipped()
    document["affordability"]["household_essentials"].pop("USD")
    assert "household_essentials: no figures for USD" in problem(document)
    document = shipped()
    del document["bank_view"]["no_plan"]["recovery_rate"]["mortgage"]
    assert "no recovery rate for mortgage" in problem(document)
