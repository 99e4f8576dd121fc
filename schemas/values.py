"""Value types shared by many events: money, rates, scores, people's roles, the case's enums.

Money is a decimal **string** with a currency, never a JSON number: a float cannot hold 0.10
exactly, and a bank's ledger must. Decimal inputs that are JSON numbers are refused.
"""

from __future__ import annotations

import re
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, Field, PlainSerializer, WithJsonSchema

from schemas.base import ConsumedModel, PublishedModel

_DECIMAL_TEXT = re.compile(r"-?(0|[1-9][0-9]*)(\.[0-9]+)?")
DECIMAL_PATTERN = r"^-?(0|[1-9][0-9]*)(\.[0-9]+)?$"


def _decimal_text_only(value: Any) -> Any:
    if isinstance(value, Decimal):
        return value
    if not isinstance(value, str):
        raise ValueError('a decimal must be a JSON string such as "1234.50", never a number')
    if not _DECIMAL_TEXT.fullmatch(value):
        raise ValueError("a decimal must look like 1234.50 (digits, optional minus and fraction; no exponent)")
    return value


def _decimal_to_text(value: Decimal) -> str:
    return format(value, "f")


DecimalString = Annotated[
    Decimal,
    BeforeValidator(_decimal_text_only),
    PlainSerializer(_decimal_to_text, return_type=str),
    WithJsonSchema({"type": "string", "pattern": DECIMAL_PATTERN, "examples": ["1234.50"]}),
]

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
    BeforeValidator(_decimal_text_only),
    PlainSerializer(_decimal_to_text, return_type=str),
    WithJsonSchema(
        {
            "type": "string",
            "pattern": DECIMAL_PATTERN,
            "description": "A yearly rate as a fraction: 0.0435 is 4.35 %",
            "examples": ["0.0435"],
        }
    ),
]

Probability = Annotated[float, Field(ge=0.0, le=1.0)]
Score = Annotated[float, Field(ge=-1.0, le=1.0)]
ReasonText = Annotated[str, Field(min_length=3, max_length=1000)]
AgentId = Annotated[str, Field(min_length=1, max_length=100, description="The agent's staff id, or a bot's id")]


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
    """SLA clocks a case can run; each policy gives them deadlines."""

    FIRST_CONTACT = "first_contact"
    RESOLUTION = "resolution"
    REGULATOR_RESPONSE = "regulator_response"
    PLAN_DECISION = "plan_decision"


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


class ApprovalTier(StrEnum):
    AGENT = "agent"
    TEAM_LEAD = "team_lead"
    RISK_COMMITTEE = "risk_committee"
