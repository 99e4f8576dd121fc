"""``plan.requested`` and ``plan.proposed``: repayment and settlement plans, exact to the cent."""

from __future__ import annotations

from enum import StrEnum
from typing import Literal
from uuid import UUID

from pydantic import Field, NonNegativeInt, PositiveInt

from schemas.base import PublishedModel
from schemas.envelope import CloudEvent
from schemas.values import AgentId, ApprovalTier, Day, Jurisdiction, Money, PlanKind, PlanKinds, Probability, Rate

__all__ = ["Jurisdiction"]  # re-exported: plans were its first users


class Product(StrEnum):
    PERSONAL_LOAN = "personal_loan"
    MORTGAGE = "mortgage"
    BUSINESS_LOAN = "business_loan"
    CREDIT_CARD = "credit_card"
    CONSUMER_CREDIT = "consumer_credit"


class HardshipReason(StrEnum):
    ILLNESS = "illness"
    JOB_LOSS = "job_loss"
    BUSINESS_DOWNTURN = "business_downturn"
    INCOME_REDUCTION = "income_reduction"
    FAMILY_EVENT = "family_event"
    DISASTER = "disaster"
    OTHER = "other"


class Debt(PublishedModel):
    product: Product
    outstanding_principal: Money
    arrears: Money = Field(description="Instalments due and unpaid")
    accrued_interest: Money
    penalty_interest: Money
    fees: Money
    annual_rate: Rate
    remaining_term_months: NonNegativeInt
    contractual_instalment: Money
    next_due_date: Day
    days_past_due: NonNegativeInt = 0


class IncomeAndExpenditure(PublishedModel):
    """Monthly figures from the customer's statement; missing essentials take household defaults."""

    monthly_income: Money
    essential_expenditure: Money | None = None
    other_debt_payments: Money | None = None
    household_size: PositiveInt = 1
    savings_available: Money | None = Field(
        default=None,
        description="What the customer could pay at once (savings, family help): a lump-sum settlement needs it",
    )


class PlanRequested(PublishedModel):
    request_id: UUID
    case_id: UUID
    customer_ref: str | None = None
    requested_by: Literal["tracker"] | AgentId = Field(description="'tracker', or the agent who asked")
    jurisdiction: Jurisdiction
    hardship_reason: HardshipReason | None = None
    debt: Debt
    income: IncomeAndExpenditure | None = None
    preferred_instalment: Money | None = Field(default=None, description="What the customer says they can pay")
    preferred_kinds: PlanKinds = Field(default_factory=list, description="The customer's choice, if stated")
    as_of: Day
    preferred_term_months: PositiveInt | None = Field(
        default=None,
        description="The whole term the customer asks for, in months from the next due date (a counter-offer's)",
    )
    method: Literal["annuity", "equal_principal"] | None = Field(
        default=None, description="Schedule method; unset: the plan policy's for the product and jurisdiction"
    )
    day_count: Literal["30/360", "actual/365", "actual/360"] | None = Field(
        default=None, description="Day-count convention; unset: the plan policy's for the product and jurisdiction"
    )


class PlanRequestedEvent(CloudEvent[PlanRequested]):
    type: Literal["com.parley.plan.requested.v1"] = "com.parley.plan.requested.v1"


class Instalment(PublishedModel):
    number: PositiveInt
    due_date: Day
    payment: Money
    principal: Money
    interest: Money
    fees: Money
    remaining_balance: Money


class PlanComponent(PublishedModel):
    kind: PlanKind
    description: str = Field(max_length=500, description="The component in words an agent reads to a customer")


class PlanProposal(PublishedModel):
    plan_id: UUID
    rank: PositiveInt = Field(description="1 is the best for both sides")
    components: list[PlanComponent] = Field(min_length=1, description="Applied in the documented waterfall order")
    method: Literal["annuity", "equal_principal", "lump_sum", "custom"]
    day_count: Literal["30/360", "actual/365", "actual/360"]
    instalment: Money = Field(description="The regular payment (the largest, when they differ)")
    term_months: NonNegativeInt
    total_repayable: Money
    interest_waived: Money
    fees_waived: Money
    affordable: bool
    keep_probability: Probability
    net_present_value: Money
    loss_vs_contract: Money = Field(description="What the bank gives up against the contract, in present value")
    approval_tier: ApprovalTier
    schedule: list[Instalment] = Field(min_length=1)
    opening_balance: Money | None = Field(
        default=None,
        description="Principal the plan repays (capitalised arrears included): the schedule's principal plus "
        "principal_waived equals it exactly",
    )
    principal_waived: Money | None = Field(default=None, description="Principal a settlement forgives")
    annual_rate: Rate | None = Field(default=None, description="The lowest yearly rate the plan charges")
    first_due_date: Day | None = None


class RefusedOption(PublishedModel):
    kind: PlanKind
    reason: str = Field(max_length=500, description="Why the engine did not propose it (policy cap, unaffordable …)")


class PlanProposed(PublishedModel):
    request_id: UUID
    case_id: UUID
    monthly_surplus: Money = Field(description="Income less essentials and other debts, before the margin")
    affordable_instalment: Money | None = Field(
        default=None, description="The surplus less the policy's margin: what a plan's month may take at most"
    )
    total_owed: Money | None = Field(
        default=None, description="Principal, accrued interest, penalty interest and fees on the request's date"
    )
    surplus_from_defaults: bool = Field(description="True when household defaults filled missing expenditure")
    expected_recovery_without_plan: Money
    proposals: list[PlanProposal] = Field(description="Ranked; empty when nothing is affordable and allowed")
    refused: list[RefusedOption] = Field(default_factory=list)
    policy_version: str = Field(max_length=50)


class PlanProposedEvent(CloudEvent[PlanProposed]):
    type: Literal["com.parley.plan.proposed.v1"] = "com.parley.plan.proposed.v1"
