"""The plan policy as data (deploy/config/plan-policy.yaml), validated when loaded.

A mistake in the file stops the planner at start with the file, the field and what is wrong.
Money and rates must be quoted decimals ("0.10"): a bare YAML number is a float, and a float
cannot hold 0.10 exactly.
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, field_validator, model_validator

from schemas.plans import HardshipReason, Product
from schemas.values import ApprovalTier, Jurisdiction, PlanKind
from services.planner.schedule import DayCount, Grace, Method
from services.runtime.errors import ConfigurationError, describe_validation_error

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def _quoted_decimal(value: Any) -> Any:
    if isinstance(value, bool | int | float):
        raise ValueError(f'write decimals as quoted strings, e.g. "{value}" (a bare number is a float)')
    return value


ExactDecimal = Annotated[Decimal, BeforeValidator(_quoted_decimal)]
Share = Annotated[ExactDecimal, Field(ge=0, le=1)]
Amount = Annotated[ExactDecimal, Field(ge=0, decimal_places=2)]
YearlyRate = Annotated[ExactDecimal, Field(ge=0, le=1)]
Chance = Annotated[float, Field(ge=0.0, le=1.0)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class HouseholdEssentials(_Strict):
    first_person: Amount
    each_additional: Amount


class Affordability(_Strict):
    margin: Annotated[ExactDecimal, Field(ge=0, lt=1)]
    household_essentials: dict[str, HouseholdEssentials]
    share_of_instalment_without_statement: Share


class KeepProbability(_Strict):
    at_no_load: Chance
    at_full_load: Chance
    per_year_of_term: float = Field(ge=-1.0, le=0.0)
    deferral_when_temporary: float = Field(ge=0.0, le=1.0)
    lump_sum: Chance
    by_reason: dict[HardshipReason, Annotated[float, Field(ge=-1.0, le=1.0)]]
    minimum: Chance
    maximum: Chance

    @model_validator(mode="after")
    def _ordered(self) -> KeepProbability:
        if not self.minimum <= self.maximum:
            raise ValueError("minimum must not exceed maximum")
        if not self.at_full_load <= self.at_no_load:
            raise ValueError("at_full_load must not exceed at_no_load: a heavier plan is not kept more often")
        return self


class NoPlan(_Strict):
    cure_probability: Chance
    months_to_recover: int = Field(ge=0, le=120)
    collection_cost_share: Share
    recovery_rate: dict[Product, Share]

    @field_validator("recovery_rate")
    @classmethod
    def _every_product(cls, table: dict[Product, Decimal]) -> dict[Product, Decimal]:
        missing = sorted(set(Product) - set(table))
        if missing:
            raise ValueError(f"no recovery rate for {', '.join(missing)}")
        return table


class BankView(_Strict):
    discount_rate: YearlyRate
    no_plan: NoPlan
    refuse_below_no_plan: bool


class CapitaliseArrears(_Strict):
    charges_spread_months: int = Field(ge=1, le=120)


class Holiday(_Strict):
    months: int = Field(ge=1, le=24)
    grace: Grace


class Deferral(_Strict):
    by_reason: dict[HardshipReason, Holiday]
    on_request: Holiday
    deferred_interest_spread_months: int = Field(ge=1, le=120)


class RateReduction(_Strict):
    step_up_after_months: int = Field(ge=0, le=120)


class CardInstalment(_Strict):
    interest_continues: bool
    fees_continue: bool
    monthly_fee_rate: Annotated[ExactDecimal, Field(ge=0, le=Decimal("0.05"))]


class PromiseToPay(_Strict):
    max_days: int = Field(ge=1, le=90)
    max_payments: int = Field(ge=1, le=6)


class Settlement(_Strict):
    min_days_past_due: int = Field(ge=0)
    pay_within_days: int = Field(ge=1, le=180)
    above_no_plan_recovery: Share
    instalment_surcharge: Share
    max_instalments: int = Field(ge=2, le=36)


class Tier(_Strict):
    tier: ApprovalTier
    max_loss_share: Share | None = None
    max_loss: dict[str, Amount] | None = None


class Caps(_Strict):
    kinds: list[PlanKind] = Field(min_length=1)
    max_term_months: int = Field(ge=1, le=600)
    min_rate: YearlyRate
    max_deferral_months: int = Field(ge=0, le=24)
    max_waiver_share: Share
    max_settlement_discount: Share
    day_count: DayCount = DayCount.THIRTY_360
    method: Method = Method.ANNUITY

    @field_validator("kinds")
    @classmethod
    def _distinct(cls, kinds: list[PlanKind]) -> list[PlanKind]:
        if len(set(kinds)) != len(kinds):
            raise ValueError("each kind may appear only once")
        return kinds


class PlanPolicy(_Strict):
    version: str = Field(min_length=1, max_length=50)
    currencies: list[Annotated[str, Field(pattern=r"^[A-Z]{3}$")]] = Field(min_length=1)
    max_proposals: int = Field(ge=1, le=20)
    affordability: Affordability
    keep_probability: KeepProbability
    bank_view: BankView
    capitalise_arrears: CapitaliseArrears
    deferral: Deferral
    rate_reduction: RateReduction
    card_instalment: CardInstalment
    promise_to_pay: PromiseToPay
    settlement: Settlement
    approval_tiers: list[Tier]
    caps: dict[Jurisdiction, dict[Product, Caps]]

    @model_validator(mode="after")
    def _consistent(self) -> PlanPolicy:
        self._check_currencies()
        self._check_tiers()
        self._check_caps()
        return self

    def _check_currencies(self) -> None:
        missing = sorted(set(self.currencies) - set(self.affordability.household_essentials))
        if missing:
            raise ValueError(f"affordability.household_essentials: no figures for {', '.join(missing)}")

    def _check_tiers(self) -> None:
        order = [tier.tier for tier in self.approval_tiers]
        if order != list(ApprovalTier):
            raise ValueError(
                f"approval_tiers: give {', '.join(ApprovalTier)} once each, in that order (got {', '.join(order)})"
            )
        previous: Tier | None = None
        for tier in self.approval_tiers:
            if tier.max_loss is not None:
                missing = sorted(set(self.currencies) - set(tier.max_loss))
                if missing:
                    raise ValueError(f"approval_tiers.{tier.tier}.max_loss: no limit for {', '.join(missing)}")
            if previous is not None:
                _check_wider(previous, tier)
            previous = tier

    def _check_caps(self) -> None:
        for jurisdiction in Jurisdiction:
            products = self.caps.get(jurisdiction)
            if products is None:
                raise ValueError(f"caps: no caps for jurisdiction {jurisdiction}")
            for product in Product:
                caps = products.get(product)
                if caps is None:
                    raise ValueError(f"caps.{jurisdiction}: no caps for product {product}")
                where = f"caps.{jurisdiction}.{product}"
                if (PlanKind.CARD_INSTALMENT in caps.kinds) != (product is Product.CREDIT_CARD):
                    raise ValueError(f"{where}.kinds: card_instalment is for credit cards, and only for them")
                if product is Product.CREDIT_CARD and PlanKind.TERM_EXTENSION in caps.kinds:
                    raise ValueError(f"{where}.kinds: a credit card has no term to extend; use card_instalment")
                if caps.max_deferral_months >= caps.max_term_months:
                    raise ValueError(f"{where}: max_deferral_months must be below max_term_months")


def _check_wider(lower: Tier, higher: Tier) -> None:
    """A higher tier may approve at least what a lower one may."""
    if lower.max_loss_share is None and higher.max_loss_share is not None:
        raise ValueError(f"approval_tiers.{higher.tier}: max_loss_share below {lower.tier}'s (none)")
    if (
        lower.max_loss_share is not None
        and higher.max_loss_share is not None
        and higher.max_loss_share < lower.max_loss_share
    ):
        raise ValueError(f"approval_tiers.{higher.tier}.max_loss_share is below {lower.tier}'s")
    if lower.max_loss is None and higher.max_loss is not None:
        raise ValueError(f"approval_tiers.{higher.tier}: max_loss below {lower.tier}'s (none)")
    if lower.max_loss is not None and higher.max_loss is not None:
        for currency, limit in lower.max_loss.items():
            if higher.max_loss.get(currency, limit) < limit:
                raise ValueError(f"approval_tiers.{higher.tier}.max_loss.{currency} is below {lower.tier}'s")


def resolve_path(path: Path) -> Path:
    """A relative path is taken from the working directory, else from the project root."""
    if path.is_absolute() or path.exists():
        return path
    return PROJECT_ROOT / path


def parse_policy(text: str, source: str) -> PlanPolicy:
    """Validate a policy document; ``source`` names it in error messages."""
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigurationError(f"{source}: not valid YAML: {exc}") from exc
    if not isinstance(document, dict):
        raise ConfigurationError(f"{source}: expected a mapping of policy sections at the top")
    try:
        return PlanPolicy.model_validate(document)
    except ValidationError as exc:
        raise ConfigurationError(f"{source}: {describe_validation_error(exc, limit=10)}") from exc


def load_policy(path: Path) -> PlanPolicy:
    resolved = resolve_path(path)
    try:
        text = resolved.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigurationError(
            f"plan policy {path}: cannot read it ({exc.strerror}); set PARLEY_PLAN_POLICY_PATH"
        ) from exc
    return parse_policy(text, str(path))
