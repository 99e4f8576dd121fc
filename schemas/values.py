"""Value types shared by many events: money, rates, scores, people's roles, the case's enums.

Money is a decimal **string** with a currency, never a JSON number: a float cannot hold 0.10
exactly, and a bank's ledger must. Decimal inputs that are JSON numbers are refused.
"""

from __future__ import annotations

import re
from datetime import date
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Any, TypeVar

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    Field,
    PlainSerializer,
    WithJsonSchema,
)

from schemas.base import ConsumedModel, PublishedModel

_NUMERIC_TEXT = re.compile(r"\s*[-+]?\d+(\.\d*)?\s*")


def _is_a_number(value: object) -> bool:
    return isinstance(value, int | float) or (isinstance(value, str) and _NUMERIC_TEXT.fullmatch(value) is not None)


def _iso_8601_only(value: object) -> object:
    """Times arrive as ISO 8601 text; a number, or digits in a string, is a sender's bug
    (pydantic would read it as epoch seconds, and a phone number as a date in 2407)."""
    if _is_a_number(value):
        raise ValueError("a time must be ISO 8601 text with a UTC offset, e.g. 2026-11-22T09:15:00+08:00")
    return value


def _iso_date_only(value: object) -> object:
    if _is_a_number(value):
        raise ValueError("a date must be ISO 8601 text, e.g. 2026-12-15")
    return value


Timestamp = Annotated[AwareDatetime, BeforeValidator(_iso_8601_only)]
"""An instant with its UTC offset, as ISO 8601 text."""

Day = Annotated[date, BeforeValidator(_iso_date_only)]
"""A calendar date (a due date), as ISO 8601 text."""

AMOUNT_PATTERN = r"^-?(0|[1-9][0-9]*)(\.[0-9]{1,4})?$"
RATE_PATTERN = r"^(0|[1-9][0-9]*)(\.[0-9]{1,8})?$"


def _decimal_text(value: Any, pattern: str, places: int) -> Any:
    if isinstance(value, Decimal):
        return value
    if not isinstance(value, str):
        raise ValueError('a decimal must be a JSON string such as "1234.50", never a number')
    if not re.fullmatch(pattern, value):
        raise ValueError(f"a decimal must look like 1234.50: digits, at most {places} decimal places, no exponent")
    return value


def _amount_text(value: Any) -> Any:
    return _decimal_text(value, AMOUNT_PATTERN, 4)


def _rate_text(value: Any) -> Any:
    return _decimal_text(value, RATE_PATTERN, 8)


def _decimal_to_text(value: Decimal) -> str:
    return format(value, "f")


DecimalString = Annotated[
    Decimal,
    BeforeValidator(_amount_text),
    PlainSerializer(_decimal_to_text, return_type=str),
    WithJsonSchema({"type": "string", "pattern": AMOUNT_PATTERN, "examples": ["1234.50"]}),
]
"""An exact amount: at most 4 decimal places (no currency has more than 3 minor digits)."""

CurrencyCode = Annotated[str, Field(pattern=r"^[A-Z]{3}$", description="ISO 4217, e.g. CNY", examples=["CNY"])]


class MoneyFields(BaseModel):
    amount: DecimalString
    currency: CurrencyCode


class Money(PublishedModel, MoneyFields):
    """An amount and its currency, in what we publish; the amount is exact (a decimal string)."""


class ReceivedMoney(ConsumedModel, MoneyFields):
    """An amount and its currency, in what others publish to us."""


Rate = Annotated[
    Decimal,
    BeforeValidator(_rate_text),
    PlainSerializer(_decimal_to_text, return_type=str),
    WithJsonSchema(
        {
            "type": "string",
            "pattern": RATE_PATTERN,
            "description": "A yearly rate as a fraction: 0.0435 is 4.35 %",
            "examples": ["0.0435"],
        }
    ),
]

T = TypeVar("T")


def no_repeats(items: list[T]) -> list[T]:
    if len(set(items)) != len(items):
        raise ValueError("each value may appear only once")
    return items


UNIQUE_ITEMS: dict[str, Any] = {"uniqueItems": True}
"""With ``AfterValidator(no_repeats)``: a JSON array of distinct values, order kept."""

Probability = Annotated[float, Field(ge=0.0, le=1.0)]
Score = Annotated[float, Field(ge=-1.0, le=1.0)]
ReasonText = Annotated[str, Field(min_length=3, max_length=1000)]
AgentId = Annotated[str, Field(min_length=1, max_length=100, description="The agent's staff id, or a bot's id")]


class Jurisdiction(StrEnum):
    """Whose rules apply to a case or a plan: its clocks and its caps."""

    CN = "CN"
    UK = "UK"
    US = "US"


class Priority(StrEnum):
    P1 = "P1"
    P2 = "P2"
    P3 = "P3"
    P4 = "P4"


class Category(StrEnum):
    REPAYMENT_HARDSHIP = "repayment_hardship"
    LOAN_APPROVAL = "loan_approval"
    INTEREST_FEES = "interest_fees"
    WEALTH_PRODUCT = "wealth_product"
    CARD_PAYMENT_ACCOUNT = "card_payment_account"
    FRAUD_SECURITY = "fraud_security"
    PRIVACY_DATA = "privacy_data"
    COLLECTION_CONDUCT = "collection_conduct"
    SERVICE_QUALITY = "service_quality"
    GENERAL_INQUIRY = "general_inquiry"


class Flag(StrEnum):
    REGULATOR_THREAT = "regulator_threat"
    MEDIA_THREAT = "media_threat"
    LEGAL_THREAT = "legal_threat"
    VULNERABLE = "vulnerable"
    SELF_HARM = "self_harm"
    LIVE_FRAUD = "live_fraud"


class Queue(StrEnum):
    """Agent queues; each has its own topic ``case.routed.<queue>``."""

    REPAYMENT_HARDSHIP = "repayment_hardship"
    LOANS = "loans"
    WEALTH_PRODUCTS = "wealth_products"
    CARDS_PAYMENTS = "cards_payments"
    FRAUD = "fraud"
    PRIVACY = "privacy"
    COLLECTIONS_CONDUCT = "collections_conduct"
    PUBLIC_OPINION = "public_opinion"
    SENIOR_COMPLAINTS = "senior_complaints"
    AI_ASSISTANT = "ai_assistant"


class PiiKind(StrEnum):
    """Kinds of personal data that intake masks; a queue sees only the kinds it is allowed."""

    RESIDENT_ID = "resident_id"
    MOBILE = "mobile"
    BANK_CARD = "bank_card"
    EMAIL = "email"
    NAME = "name"


class CaseStatus(StrEnum):
    OPENED = "opened"
    TRIAGED = "triaged"
    ROUTED = "routed"
    CONTACTED = "contacted"
    NEGOTIATING = "negotiating"
    PLAN_ACTIVE = "plan_active"
    RESOLVED = "resolved"
    FOLLOWED_UP = "followed_up"
    CLOSED = "closed"
    REOPENED = "reopened"


class ClockName(StrEnum):
    """SLA clocks a case can run; each policy gives them deadlines.

    first_contact: an agent reaches the customer; resolution: the complaint is decided;
    regulator_response: a regulator referral is answered; plan_decision: a proposed plan is
    decided; first_response: the first answer to the customer (e.g. CFPB 15 days);
    next_response: the periodic update while a case is open; summary_resolution: resolved
    within a short window that allows a summary answer (e.g. FCA 3 business days);
    final_response: the final answer (e.g. FCA 8 weeks, CFPB 60 days).
    """

    FIRST_CONTACT = "first_contact"
    RESOLUTION = "resolution"
    REGULATOR_RESPONSE = "regulator_response"
    PLAN_DECISION = "plan_decision"
    FIRST_RESPONSE = "first_response"
    NEXT_RESPONSE = "next_response"
    SUMMARY_RESOLUTION = "summary_resolution"
    FINAL_RESPONSE = "final_response"


class ContactChannel(StrEnum):
    PHONE = "phone"
    SMS = "sms"
    APP_MESSAGE = "app_message"
    EMAIL = "email"
    WECHAT = "wechat"
    LETTER = "letter"
    BRANCH_VISIT = "branch_visit"
    HOME_VISIT = "home_visit"


class PlanKind(StrEnum):
    """Building blocks of a repayment or settlement plan; a plan combines one or more."""

    DEFERRAL = "deferral"
    TERM_EXTENSION = "term_extension"
    RATE_REDUCTION = "rate_reduction"
    FEE_WAIVER = "fee_waiver"
    CARD_INSTALMENT = "card_instalment"
    CAPITALISE_ARREARS = "capitalise_arrears"
    SETTLEMENT_LUMP_SUM = "settlement_lump_sum"
    SETTLEMENT_INSTALMENTS = "settlement_instalments"
    PROMISE_TO_PAY = "promise_to_pay"


class Resolution(StrEnum):
    PLAN_AGREED = "plan_agreed"
    EXPLAINED = "explained"
    REFUNDED = "refunded"
    PROCESS_FIXED = "process_fixed"
    NO_ACTION_NEEDED = "no_action_needed"
    LEGAL_ACTION = "legal_action"
    WITHDRAWN = "withdrawn"


class ApprovalTier(StrEnum):
    AGENT = "agent"
    TEAM_LEAD = "team_lead"
    RISK_COMMITTEE = "risk_committee"


Flags = Annotated[list[Flag], AfterValidator(no_repeats), Field(json_schema_extra=UNIQUE_ITEMS)]
PiiKinds = Annotated[list[PiiKind], AfterValidator(no_repeats), Field(json_schema_extra=UNIQUE_ITEMS)]
PlanKinds = Annotated[list[PlanKind], AfterValidator(no_repeats), Field(json_schema_extra=UNIQUE_ITEMS)]
