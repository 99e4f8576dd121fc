"""The plan engine: a plan.requested in, ranked plans the customer can afford and the policy allows out.

Pure: no I/O, no clock (the request's ``as_of`` is the day everything is computed from).

**The waterfall.** Plans are built from levers, always combined in this fixed order:

1. ``promise_to_pay`` - the arrears paid on promised dates, the contract unchanged (a plan of its own);
2. ``capitalise_arrears`` - accrued interest added to the principal, the account re-aged; penalty
   interest and fees left are collected with the first instalments, without interest;
3. ``fee_waiver`` - penalty interest and fees waived, the smallest share (in 5 % steps) that is
   enough, at most the policy's;
4. ``deferral`` - a payment holiday, for hardships expected to pass (the policy's reasons) or
   when the customer asks; its length comes from the policy;
5. ``term_extension`` (loans) or ``card_instalment`` (credit cards) - the fewest months that make
   the plan affordable, at most the policy's term cap;
6. ``rate_reduction`` - the highest rate (in basis points) that makes it affordable, at least the
   policy's floor; optionally stepping back up to the contract rate later;
7. ``settlement_instalments``, then ``settlement_lump_sum`` - the last resort, for debts late
   enough, forgiving at most the policy's share.

The waterfall's answer is the first affordable of: the promise to pay (1); levers 2-6 applied one
after another, stopping as soon as the plan is affordable; the settlement in instalments (7); the
lump sum. Beside it the engine builds alternatives (with or without the holiday, at the customer's
preferred instalment, with the kinds the customer asked for, one lever alone, a step-up rate,
the other whole-plan kinds), checks each against the caps and approval tiers, values it for the
bank, and ranks what is affordable and allowed by expected value, always keeping the waterfall's
answer and the customer's choice among those shown; the rest is listed as refused, with the reason.

**Affordable** means every calendar month's payments fit in the monthly surplus (income less
essentials, household defaults filling what the statement leaves out, less other debts) less the
policy's margin. A lump sum must fit in the savings the customer declared.

**The bank's view.** A plan's expected value discounts its payments at the policy's rate, each
weighted by the chance the customer is still keeping the plan (a constant monthly chance that
compounds to the plan's keep probability); when a plan breaks, collections recover the policy's
share of the principal then owed, months later, at a cost. Without a plan the customer cures alone
with the policy's chance, otherwise collections recover their share of everything owed.
``loss_vs_contract`` is the present value of the contract's payments less the plan's (never below
zero), and decides the approval tier.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from functools import cached_property
from typing import Any, Literal, NamedTuple

from pydantic_core import to_json

from schemas.plans import HardshipReason, PlanProposed, PlanRequested, Product
from schemas.values import ApprovalTier, Jurisdiction, Money, PlanKind
from services.planner.describe import Describer
from services.planner.policy import Caps, PlanPolicy
from services.planner.schedule import (
    ZERO,
    DayCount,
    Grace,
    Method,
    Row,
    Terms,
    add_months,
    cents,
    cents_down,
    cents_text,
    from_cents,
    holiday_interest,
    schedule,
    schedule_within,
    to_cents,
)

PLAN_ID_NAMESPACE = uuid.UUID("5b0e7c2a-91d4-4f3e-a6b8-2d7c9e1f4a60")

WATERFALL_ORDER: tuple[PlanKind, ...] = (
    PlanKind.PROMISE_TO_PAY,
    PlanKind.CAPITALISE_ARREARS,
    PlanKind.FEE_WAIVER,
    PlanKind.DEFERRAL,
    PlanKind.TERM_EXTENSION,
    PlanKind.CARD_INSTALMENT,
    PlanKind.RATE_REDUCTION,
    PlanKind.SETTLEMENT_INSTALMENTS,
    PlanKind.SETTLEMENT_LUMP_SUM,
)
RESTRUCTURING: tuple[PlanKind, ...] = (
    PlanKind.CAPITALISE_ARREARS,
    PlanKind.FEE_WAIVER,
    PlanKind.DEFERRAL,
    PlanKind.TERM_EXTENSION,
    PlanKind.CARD_INSTALMENT,
    PlanKind.RATE_REDUCTION,
)
_ORDER_INDEX = {kind: index for index, kind in enumerate(WATERFALL_ORDER)}
_TIER_ORDER = {tier: index for index, tier in enumerate(ApprovalTier)}
PlanMethod = Literal["annuity", "equal_principal", "lump_sum", "custom"]
_ORIGIN_WEIGHT = {"alternative": 0, "preferred": 1, "waterfall": 2}
WAIVER_STEP = Decimal("0.05")
BASIS_POINT = Decimal("0.0001")
MAX_REFUSED = 12
_DAYS_PER_MONTH = 365.25 / 12
# A month's share of the yearly rate, on average, as each convention counts interest.
_MONTH_FRACTION = {
    DayCount.THIRTY_360: 1 / 12,
    DayCount.ACTUAL_365: _DAYS_PER_MONTH / 365,
    DayCount.ACTUAL_360: _DAYS_PER_MONTH / 360,
}


class PlanRequestError(ValueError):
    """The request can never give a plan (a negative balance, mixed currencies …): say what is wrong."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


# --------------------------------------------------------------------------------------------- inputs


@dataclass(frozen=True, slots=True)
class Position:
    """What the customer owes on the request's date, read from the request once."""

    currency: str
    product: Product
    jurisdiction: Jurisdiction
    reason: HardshipReason | None
    principal: Decimal
    accrued_interest: Decimal
    penalty: Decimal
    fees: Decimal
    overdue_principal: Decimal
    """The principal part of the arrears (arrears less the accrued interest): due now under the contract."""
    rate: Decimal
    remaining_term: int
    contractual_instalment: Decimal
    as_of: date
    first_due: date
    days_past_due: int
    savings: Decimal | None
    preferred_instalment: Decimal | None
    preferred_kinds: frozenset[PlanKind]

    @property
    def total_owed(self) -> Decimal:
        return self.principal + self.accrued_interest + self.penalty + self.fees

    @property
    def charges(self) -> Decimal:
        return self.penalty + self.fees

    @property
    def overdue_total(self) -> Decimal:
        return self.overdue_principal + self.accrued_interest + self.penalty + self.fees


def _amount(money: Money, path: str, currency: str) -> Decimal:
    if money.currency != currency:
        raise PlanRequestError(f"{path}: currency {money.currency} differs from the debt's {currency}")
    if money.amount < 0:
        raise PlanRequestError(f"{path}: must not be negative")
    if money.amount != money.amount.quantize(Decimal("0.01")):
        raise PlanRequestError(f"{path}: amounts are in cents (at most 2 decimal places)")
    return money.amount


def _first_due(next_due: date, as_of: date) -> date:
    """The contract's next due date, or the first one after the request's date on the same day of the month."""
    months = 0
    due = next_due
    while due <= as_of:
        months += 1
        due = add_months(next_due, months)
    return due


def read_position(request: PlanRequested, policy: PlanPolicy) -> Position:
    debt = request.debt
    currency = debt.outstanding_principal.currency
    if currency not in policy.currencies:
        raise PlanRequestError(
            f"debt.outstanding_principal: currency {currency} is not one the plan policy covers "
            f"({', '.join(policy.currencies)})"
        )
    principal = _amount(debt.outstanding_principal, "debt.outstanding_principal", currency)
    arrears = _amount(debt.arrears, "debt.arrears", currency)
    accrued = _amount(debt.accrued_interest, "debt.accrued_interest", currency)
    penalty = _amount(debt.penalty_interest, "debt.penalty_interest", currency)
    fees = _amount(debt.fees, "debt.fees", currency)
    instalment = _amount(debt.contractual_instalment, "debt.contractual_instalment", currency)
    if debt.annual_rate > 1:
        raise PlanRequestError("debt.annual_rate: above 1 (100 % a year); rates are fractions, 0.0435 is 4.35 %")
    if debt.remaining_term_months > 600:
        raise PlanRequestError("debt.remaining_term_months: more than 600 months")
    if principal + accrued + penalty + fees == 0:
        raise PlanRequestError("debt: nothing is owed (principal, interest, penalty interest and fees are all zero)")
    savings = None
    if request.income is not None:
        for path, money in (
            ("income.monthly_income", request.income.monthly_income),
            ("income.essential_expenditure", request.income.essential_expenditure),
            ("income.other_debt_payments", request.income.other_debt_payments),
            ("income.savings_available", request.income.savings_available),
        ):
            if money is not None:
                _amount(money, path, currency)
        if request.income.savings_available is not None:
            savings = request.income.savings_available.amount
    preferred = None
    if request.preferred_instalment is not None:
        preferred = _amount(request.preferred_instalment, "preferred_instalment", currency)
    return Position(
        currency=currency,
        product=debt.product,
        jurisdiction=request.jurisdiction,
        reason=request.hardship_reason,
        principal=principal,
        accrued_interest=accrued,
        penalty=penalty,
        fees=fees,
        overdue_principal=min(max(arrears - accrued, ZERO), principal),
        rate=debt.annual_rate,
        remaining_term=debt.remaining_term_months,
        contractual_instalment=instalment,
        as_of=request.as_of,
        first_due=_first_due(debt.next_due_date, request.as_of),
        days_past_due=debt.days_past_due,
        savings=savings,
        preferred_instalment=preferred,
        preferred_kinds=frozenset(request.preferred_kinds),
    )


@dataclass(frozen=True, slots=True)
class Surplus:
    monthly: Decimal
    """Income less essentials and other debts (may be negative)."""
    available: Decimal
    """What a month of a plan may take: the surplus less the margin, never below zero."""
    from_defaults: bool


def monthly_surplus(request: PlanRequested, position: Position, policy: PlanPolicy) -> Surplus:
    """The surplus from the income-and-expenditure statement, with household defaults where it is silent."""
    rules = policy.affordability
    keep = 1 - rules.margin
    statement = request.income
    if statement is None:
        # No statement: what the customer says they can pay, else a share of the contractual instalment.
        available = position.preferred_instalment
        if available is None:
            available = cents(position.contractual_instalment * rules.share_of_instalment_without_statement)
        return Surplus(cents(available / keep), available, True)
    essentials = statement.essential_expenditure.amount if statement.essential_expenditure is not None else None
    from_defaults = essentials is None
    if essentials is None:
        defaults = rules.household_essentials[position.currency]
        essentials = defaults.first_person + defaults.each_additional * (statement.household_size - 1)
    other = statement.other_debt_payments.amount if statement.other_debt_payments is not None else ZERO
    surplus = statement.monthly_income.amount - essentials - other
    return Surplus(surplus, max(cents_down(surplus * keep), ZERO), from_defaults)


# ---------------------------------------------------------------------------------------------- plans


class Shape(NamedTuple):
    """Every choice that defines a plan; its key names the plan (the plan id is derived from it).

    A named tuple: immutable, cheap to make and to hash (the solvers make many).
    """

    kinds: tuple[PlanKind, ...] = ()
    capitalise: bool = False
    waiver_share: Decimal = ZERO
    holiday: int = 0
    grace: Grace = Grace.PRINCIPAL_AND_INTEREST
    months: int = 1
    rate: Decimal = ZERO
    step_up: bool = False
    card: bool = False
    promise_payments: int = 0
    settlement_amount: Decimal | None = None
    settlement_instalments: int = 0

    def adding(self, kind: PlanKind, **changes: Any) -> Shape:
        kinds = tuple(sorted({*self.kinds, kind}, key=_ORDER_INDEX.__getitem__))
        return self._replace(kinds=kinds, **changes)

    @property
    def total_months(self) -> int:
        return self.holiday + self.months

    def key(self) -> str:
        return (
            f"{'+'.join(self.kinds)}|cap={int(self.capitalise)}|waive={self.waiver_share}|hol={self.holiday}:"
            f"{self.grace}|months={self.months}|rate={self.rate}|step={int(self.step_up)}|card={int(self.card)}|"
            f"ptp={self.promise_payments}|settle={self.settlement_amount}x{self.settlement_instalments}"
        )


@dataclass
class Built:
    """A plan's schedule and the figures read from it."""

    shape: Shape
    rows: list[Row]
    method: PlanMethod
    opening_balance: Decimal
    principal_waived: Decimal
    interest_waived: Decimal
    fees_waived: Decimal
    annual_rate: Decimal
    components: list[tuple[PlanKind, str]]

    @cached_property
    def instalment(self) -> Decimal:
        return from_cents(max(row.payment_cents for row in self.rows))

    @property
    def total_repayable(self) -> Decimal:
        return from_cents(sum(row.payment_cents for row in self.rows))

    @property
    def lump_sum(self) -> bool:
        return self.method == "lump_sum"

    @cached_property
    def largest_month(self) -> Decimal:
        """The most that falls due in one calendar month."""
        if self.method in ("annuity", "equal_principal"):
            return self.instalment  # monthly due dates: one instalment a month
        months: dict[tuple[int, int], int] = {}
        for row in self.rows:
            key = (row.due_date.year, row.due_date.month)
            months[key] = months.get(key, 0) + row.payment_cents
        return from_cents(max(months.values()))


@dataclass(slots=True)
class Assessed:
    built: Built
    origin: str
    affordable: bool
    keep_probability: float
    value: Decimal
    loss: Decimal
    tier: ApprovalTier | None
    refusal: str | None
    plan_id: uuid.UUID


class Candidate(NamedTuple):
    shape: Shape
    origin: str
    """waterfall (the waterfall's answer), preferred (the customer's choice), alternative."""
    notes: tuple[str, ...] = ()
    """Why a lever stopped short (a cap, a floor): part of the refusal when it stays unaffordable."""
    hopeless: bool = False
    """Even every lever at its limit does not make it affordable."""
    fits: bool = False
    """Affordable (its heaviest month fits the target it was built for; a lump sum, the savings)."""


# --------------------------------------------------------------------------------------------- engine


class PlanEngine:
    """Plans for any request under one policy; build once at start, call ``propose`` per request."""

    def __init__(self, policy: PlanPolicy) -> None:
        self.policy = policy

    def plan(self, request: PlanRequested) -> dict[str, Any]:
        """The ``data`` of the plan.proposed event for ``request``, ready for JSON (amounts as decimal strings).

        Raises PlanRequestError when the request can never give a plan. Built as plain data because a
        schedule has hundreds of amounts; ``propose`` gives the same answer as a validated model.
        """
        return _Planner(self.policy, request).plan()

    def plan_json(self, request: PlanRequested) -> bytes:
        """``plan(request)`` as compact UTF-8 JSON, schedules written as text directly (what the processor
        publishes: a long schedule costs less this way than as thousands of small dicts)."""
        planner = _Planner(self.policy, request)
        schedules: list[str] = []
        document = to_json(planner.plan(schedules))
        for index, text in enumerate(schedules):
            document = document.replace(_schedule_marker(index), text.encode(), 1)
        return document

    def propose(self, request: PlanRequested) -> PlanProposed:
        """Ranked proposals for ``request`` as the published model (validated)."""
        return PlanProposed.model_validate(self.plan(request))


class _Planner:
    """One request's planning: its position, caps, target and the schedules built so far."""

    def __init__(self, policy: PlanPolicy, request: PlanRequested) -> None:
        self.policy = policy
        self.request = request
        self.position = position = read_position(request, policy)
        self.caps: Caps = policy.caps[position.jurisdiction][position.product]
        self.method = Method(request.method) if request.method else self.caps.method
        self.day_count = DayCount(request.day_count) if request.day_count else self.caps.day_count
        self.surplus = monthly_surplus(request, position, policy)
        self.target = self.surplus.available
        self.describe = Describer(position.jurisdiction, position.currency)
        self._rows: dict[Terms, list[Row]] = {}
        self._peaks: dict[Terms, int] = {}
        self._above: dict[Terms, int] = {}
        """The highest limit (cents) a schedule is known to exceed somewhere, from a search that stopped early."""
        self._terms_of: dict[Shape, Terms] = {}
        self._built: dict[Shape, Built] = {}
        view = policy.bank_view
        self.discount_rate = float(view.discount_rate)
        self.recovery_rate = float(view.no_plan.recovery_rate[position.product])
        self.recovery_net = self.recovery_rate * (1 - float(view.no_plan.collection_cost_share))
        self.recovery_delay_days = view.no_plan.months_to_recover * _DAYS_PER_MONTH
        self._daily_discount = (1 + self.discount_rate) ** (-1 / 365)
        self._as_of_ordinal = position.as_of.toordinal()
        self._recovery_discount = self._daily_discount**self.recovery_delay_days
        self.contract = Shape(months=max(position.remaining_term, 1), rate=position.rate)
        self.contract_value = self._contract_present_value()
        self.no_plan_value = self._no_plan_value()
        self.no_plan_amount = cents(Decimal(repr(self.no_plan_value)))
        self.temporary = position.reason is not None and position.reason in policy.deferral.by_reason

    # ------------------------------------------------------------------------------ the whole answer

    def plan(self, schedules_as_text: list[str] | None = None) -> dict[str, Any]:
        """The plan.proposed data; with ``schedules_as_text``, each schedule is a marker in the data and its
        JSON text is appended to that list (see PlanEngine.plan_json)."""
        assessed: dict[str, Assessed] = {}
        for candidate in self._with_step_ups(self._candidates()):
            key = candidate.shape.key()
            if not candidate.shape.kinds:
                continue
            known = assessed.get(key)
            if known is None:
                assessed[key] = self._assess(candidate)
            elif _ORIGIN_WEIGHT[candidate.origin] > _ORIGIN_WEIGHT[known.origin]:
                known.origin = candidate.origin  # the same plan, reached as the waterfall's or the customer's
        proposals = self._ranked([a for a in assessed.values() if a.refusal is None])
        refused = self._refused([a for a in assessed.values() if a.refusal is not None], proposals)
        currency = self.position.currency
        return {
            "request_id": str(self.request.request_id),
            "case_id": str(self.request.case_id),
            "monthly_surplus": _money(self.surplus.monthly, currency),
            "affordable_instalment": _money(self.target, currency),
            "total_owed": _money(self.position.total_owed, currency),
            "surplus_from_defaults": self.surplus.from_defaults,
            "expected_recovery_without_plan": _money(self.no_plan_amount, currency),
            "proposals": [self._published(rank, a, schedules_as_text) for rank, a in enumerate(proposals, start=1)],
            "refused": refused,
            "policy_version": self.policy.version,
        }

    def _ranked(self, allowed: list[Assessed]) -> list[Assessed]:
        ranked = sorted(
            allowed,
            key=lambda a: (-a.value, len(a.built.shape.kinds), _TIER_ORDER[a.tier or ApprovalTier.RISK_COMMITTEE]),
        )
        kept = ranked[: self.policy.max_proposals]
        # The waterfall's own answer and the customer's choice are always shown, if allowed.
        for must in ("waterfall", "preferred"):
            chosen = next((a for a in ranked if a.origin == must), None)
            if chosen is not None and chosen not in kept:
                kept[-1] = chosen
                kept.sort(key=ranked.index)
        return kept

    def _refused(self, refused: list[Assessed], proposals: list[Assessed]) -> list[dict[str, str]]:
        offered = {kind for a in proposals for kind in a.built.shape.kinds}
        # One reason a kind: the customer's own choice first, then the waterfall's, then the other variants.
        reasons: dict[PlanKind, str] = dict(self._ineligible_preferences())
        reasons.update((kind, reason) for kind, reason in self._not_needed() if kind not in reasons)
        for a in sorted(refused, key=lambda a: -_ORIGIN_WEIGHT[a.origin]):
            kind = a.built.shape.kinds[-1]
            if kind in reasons or (kind in offered and a.origin != "preferred"):
                continue  # explained already, or another plan with this lever was proposed
            assert a.refusal is not None
            reasons[kind] = a.refusal[:500]
        ordered = sorted(reasons.items(), key=lambda item: _ORDER_INDEX[item[0]])
        return [{"kind": kind.value, "reason": reason} for kind, reason in ordered[:MAX_REFUSED]]

    def _not_needed(self) -> Iterator[tuple[PlanKind, str]]:
        """When the contract as it stands fits, restructuring is not needed: say so rather than stay silent."""
        if not self._fits(self.contract, self.target):
            return
        heaviest = self.describe.money(self._build(self.contract).instalment)
        for kind in (PlanKind.TERM_EXTENSION, PlanKind.CARD_INSTALMENT, PlanKind.RATE_REDUCTION):
            if kind in self.caps.kinds:
                yield (
                    kind,
                    (
                        f"not needed: the contract's own heaviest month ({heaviest}) fits the affordable "
                        f"{self.describe.money(self.target)}"
                    ),
                )

    def _ineligible_preferences(self) -> Iterator[tuple[PlanKind, str]]:
        position = self.position
        months = self.request.preferred_term_months
        if months is not None and months > self.caps.max_term_months:
            lever = PlanKind.CARD_INSTALMENT if position.product is Product.CREDIT_CARD else PlanKind.TERM_EXTENSION
            yield (
                lever,
                (
                    f"the customer asked for {months} months; the policy's cap for {position.product} in "
                    f"{position.jurisdiction} is {self.caps.max_term_months}"
                ),
            )
        for kind in sorted(position.preferred_kinds, key=_ORDER_INDEX.__getitem__):
            if kind not in self.caps.kinds:
                yield (
                    kind,
                    (
                        f"the customer asked for it, but the policy does not allow {kind} for {position.product} "
                        f"in {position.jurisdiction}"
                    ),
                )
            elif kind in (PlanKind.SETTLEMENT_INSTALMENTS, PlanKind.SETTLEMENT_LUMP_SUM):
                why = self._settlement_ineligible()
                if why:
                    yield kind, f"the customer asked for it, but {why}"

    # ------------------------------------------------------------------------------ candidates

    def _candidates(self) -> Iterable[Candidate]:
        position, caps = self.position, self.caps
        allowed = set(caps.kinds)
        levers = frozenset(k for k in RESTRUCTURING if k in allowed)
        if not self.temporary and PlanKind.DEFERRAL not in position.preferred_kinds:
            levers -= {PlanKind.DEFERRAL}
        # The waterfall's answer is the first affordable of: the promise, the restructuring, the settlements.
        answered = False
        if PlanKind.PROMISE_TO_PAY in allowed and position.overdue_total > 0:
            promise = self._promise()
            answered = promise.fits
            yield promise._replace(origin="waterfall") if answered else promise
        main = self._waterfall(levers, self.target, "alternative" if answered else "waterfall")
        answered = answered or main.fits
        yield main
        preferred = position.preferred_instalment
        if not main.hopeless:  # otherwise every variant with fewer or weaker levers is hopeless too
            if PlanKind.DEFERRAL in main.shape.kinds:
                yield self._waterfall(levers - {PlanKind.DEFERRAL}, self.target, "alternative")
            elif PlanKind.DEFERRAL in levers:
                yield self._waterfall(levers, self.target, "alternative", force_deferral=True)
            if preferred is not None and preferred < self.target:
                yield self._waterfall(levers, preferred, "alternative")
            for lever in (PlanKind.TERM_EXTENSION, PlanKind.CARD_INSTALMENT, PlanKind.RATE_REDUCTION):
                if lever in levers:
                    yield self._waterfall(levers & {PlanKind.CAPITALISE_ARREARS, lever}, self.target, "alternative")
        wanted = position.preferred_kinds & set(RESTRUCTURING) & allowed
        if wanted:
            target = min(self.target, preferred) if preferred is not None else self.target
            chosen = frozenset(wanted | ({PlanKind.CAPITALISE_ARREARS} & levers))
            yield self._waterfall(chosen, target, "preferred", force_deferral=PlanKind.DEFERRAL in wanted)
        asked_term = self._asked_term(levers)
        if asked_term is not None:
            yield asked_term
        if self._settlement_ineligible() is None:
            for kind, instalments in ((PlanKind.SETTLEMENT_INSTALMENTS, True), (PlanKind.SETTLEMENT_LUMP_SUM, False)):
                if kind in allowed:
                    settlement = self._settlement(instalments=instalments)
                    if settlement.fits and not answered:
                        answered = True
                        settlement = settlement._replace(origin="waterfall")
                    yield settlement

    def _asked_term(self, levers: frozenset[PlanKind]) -> Candidate | None:
        """The whole term the customer asked for (a counter-offer), when it lengthens the plan within the cap:
        the arrears capitalised and the charges waived as far as needed, nothing else changed."""
        months = self.request.preferred_term_months
        lever = PlanKind.CARD_INSTALMENT if self.position.product is Product.CREDIT_CARD else PlanKind.TERM_EXTENSION
        if months is None or lever not in levers or months > self.caps.max_term_months:
            return None
        if lever is PlanKind.CARD_INSTALMENT:
            rate = self.position.rate if self.policy.card_instalment.interest_continues else ZERO
            shape = self.contract.adding(lever, card=True, capitalise=True, rate=rate, months=months)
        elif months > self.contract.months:
            shape = self.contract.adding(lever, months=months)
        else:
            return None
        notes: list[str] = []
        if PlanKind.CAPITALISE_ARREARS in levers and self.position.overdue_total > 0 and not shape.capitalise:
            shape = shape.adding(PlanKind.CAPITALISE_ARREARS, capitalise=True)
        if PlanKind.FEE_WAIVER in levers and not self._fits(shape, self.target):
            shape = self._waive(shape, self.target, notes) or shape
        return Candidate(shape, "preferred", tuple(notes), fits=self._fits(shape, self.target))

    def _with_step_ups(self, candidates: Iterable[Candidate]) -> Iterable[Candidate]:
        """After each affordable plan with a rate reduction, the same with the rate stepping back up to the
        contract's after the policy's months, and the term lengthened as far as that needs (within the cap)."""
        after = self.policy.rate_reduction.step_up_after_months
        for candidate in candidates:
            yield candidate
            shape = candidate.shape
            if not (after and PlanKind.RATE_REDUCTION in shape.kinds and candidate.fits and not shape.step_up):
                continue
            stepped = shape._replace(step_up=True)
            if shape.months > after and self._fits(stepped, self.target):
                yield Candidate(stepped, "alternative", fits=True)
                continue
            lever = PlanKind.CARD_INSTALMENT if shape.card else PlanKind.TERM_EXTENSION
            high = self.caps.max_term_months - shape.holiday
            if lever not in self.caps.kinds or max(shape.months, after) >= high:
                continue
            base = stepped.adding(lever)
            longer = self._solve_months(base, max(shape.months, after) + 1, high, self.target, [], "step-up")
            if self._fits(longer, self.target):
                yield Candidate(longer, "alternative", fits=True)

    # ------------------------------------------------------------------------------ the waterfall

    def _waterfall(
        self, levers: frozenset[PlanKind], target: Decimal, origin: str, *, force_deferral: bool = False
    ) -> Candidate:
        relief = self._most_relief(levers)
        if relief.kinds and not self._surely_fits(relief, target) and not self._fits(relief, target):
            # Nothing in between can fit either: every lever only lowers the heaviest month up to its limit.
            return Candidate(relief, origin, (self._limits_note(relief),), hopeless=True, fits=False)
        shape = self.contract
        notes: list[str] = []
        for kind in RESTRUCTURING:
            if kind not in levers:
                continue
            if self._fits(shape, target):  # the contract itself, when it fits, needs no lever at all
                deferral_pending = force_deferral and PlanKind.DEFERRAL not in shape.kinds
                if not deferral_pending:
                    break
                if kind is not PlanKind.DEFERRAL:
                    continue
            applied = self._apply(kind, shape, target, notes)
            if applied is not None:
                shape = applied
        return Candidate(shape, origin, tuple(notes), fits=bool(shape.kinds) and self._fits(shape, target))

    def _most_relief(self, levers: frozenset[PlanKind]) -> Shape:
        """Every lever that lowers the heaviest month, at its policy limit (a holiday raises it: left out)."""
        position, caps = self.position, self.caps
        shape = self.contract
        if PlanKind.CAPITALISE_ARREARS in levers and position.overdue_total > 0:
            shape = shape.adding(PlanKind.CAPITALISE_ARREARS, capitalise=True)
        if PlanKind.FEE_WAIVER in levers and position.charges > 0 and caps.max_waiver_share > 0:
            shape = shape.adding(PlanKind.FEE_WAIVER, waiver_share=caps.max_waiver_share)
        if PlanKind.TERM_EXTENSION in levers and shape.months < caps.max_term_months:
            shape = shape.adding(PlanKind.TERM_EXTENSION, months=caps.max_term_months)
        if PlanKind.CARD_INSTALMENT in levers and caps.max_term_months >= 2:
            rate = position.rate if self.policy.card_instalment.interest_continues else ZERO
            shape = shape.adding(
                PlanKind.CARD_INSTALMENT, card=True, capitalise=True, rate=rate, months=caps.max_term_months
            )
        if PlanKind.RATE_REDUCTION in levers and shape.rate > caps.min_rate:
            shape = shape.adding(PlanKind.RATE_REDUCTION, rate=caps.min_rate)
        return shape

    def _limits_note(self, relief: Shape) -> str:
        limits = []
        if PlanKind.FEE_WAIVER in relief.kinds:
            limits.append(f"{relief.waiver_share:.0%} of penalty interest and fees waived")
        if PlanKind.TERM_EXTENSION in relief.kinds or PlanKind.CARD_INSTALMENT in relief.kinds:
            limits.append(f"{relief.months} months")
        if PlanKind.RATE_REDUCTION in relief.kinds:
            limits.append(f"a rate of {self.describe.rate(relief.rate)}")
        return "even at the policy's limits" + (f" ({', '.join(limits)})" if limits else "")

    def _apply(self, kind: PlanKind, shape: Shape, target: Decimal, notes: list[str]) -> Shape | None:
        position, caps = self.position, self.caps
        if kind is PlanKind.CAPITALISE_ARREARS:
            if position.overdue_total == 0:
                return None
            return shape.adding(kind, capitalise=True)
        if kind is PlanKind.FEE_WAIVER:
            return self._waive(shape, target, notes)
        if kind is PlanKind.DEFERRAL:
            holiday = self.policy.deferral.on_request
            if position.reason is not None and position.reason in self.policy.deferral.by_reason:
                holiday = self.policy.deferral.by_reason[position.reason]
            months = min(holiday.months, caps.max_deferral_months, caps.max_term_months - shape.months)
            if months <= 0:
                notes.append(f"no payment holiday fits under the {caps.max_term_months}-month term cap")
                return None
            return shape.adding(kind, holiday=months, grace=holiday.grace)
        if kind is PlanKind.TERM_EXTENSION:
            low, high = shape.months + 1, caps.max_term_months - shape.holiday
            if low > high:
                notes.append(f"the term is already at the {caps.max_term_months}-month cap")
                return None
            return self._solve_months(shape.adding(kind), low, high, target, notes, "term extension")
        if kind is PlanKind.CARD_INSTALMENT:
            rate = position.rate if self.policy.card_instalment.interest_continues else ZERO
            base = shape.adding(kind, card=True, capitalise=True, rate=rate)
            low, high = 2, caps.max_term_months - shape.holiday
            if low > high:
                return None
            return self._solve_months(base, low, high, target, notes, "card instalment plan")
        if kind is PlanKind.RATE_REDUCTION:
            if shape.rate <= caps.min_rate:
                notes.append(f"the rate {self.describe.rate(shape.rate)} is already at or below the policy floor")
                return None
            return self._solve_rate(shape.adding(kind), target, notes)
        return None

    def _waive(self, shape: Shape, target: Decimal, notes: list[str]) -> Shape | None:
        most = self.caps.max_waiver_share
        if self.position.charges == 0 or most == 0:
            return None
        steps = [WAIVER_STEP * k for k in range(1, int(most / WAIVER_STEP) + 1)]
        if not steps or steps[-1] != most:
            steps.append(most)

        def make(share: Decimal) -> Shape:
            return shape.adding(PlanKind.FEE_WAIVER, waiver_share=share)

        if not self._fits(make(most), target):
            return make(most)
        # The estimate points at the smallest share; exact schedules confirm it.
        limit = float(target)
        index = next((i for i, share in enumerate(steps) if self._estimate(make(share)) <= limit), len(steps) - 1)
        while (
            index > 0 and self._may_fit(make(steps[index - 1]), target) and self._fits(make(steps[index - 1]), target)
        ):
            index -= 1
        while not self._fits(make(steps[index]), target):
            index += 1
        return make(steps[index])

    def _solve_months(self, base: Shape, low: int, high: int, target: Decimal, notes: list[str], what: str) -> Shape:
        def make(months: int) -> Shape:
            return base._replace(months=months)

        limit = float(target)
        # The estimate finds the neighbourhood; exact schedules decide.
        lo, hi = low, high
        if self._estimate(make(hi)) > limit:
            guess = hi
        else:
            while lo < hi:
                middle = (lo + hi) // 2
                if self._estimate(make(middle)) <= limit:
                    hi = middle
                else:
                    lo = middle + 1
            guess = lo
        months = guess
        if self._fits(make(months), target):
            while months > low and self._may_fit(make(months - 1), target) and self._fits(make(months - 1), target):
                months -= 1
            return make(months)
        for months in range(guess + 1, min(guess + 4, high + 1)):
            if self._fits(make(months), target):
                return make(months)
        notes.append(f"a {what} stops at the policy's {self.caps.max_term_months}-month term cap")
        return make(high)

    def _solve_rate(self, base: Shape, target: Decimal, notes: list[str]) -> Shape:
        floor, ceiling = self.caps.min_rate, base.rate

        def make(rate: Decimal) -> Shape:
            return base._replace(rate=rate)

        if not self._fits(make(floor), target):
            notes.append(f"a rate reduction stops at the policy floor of {self.describe.rate(floor)}")
            return make(floor)
        # The highest rate floor + k basis points below the current rate that fits: the estimate gives a
        # first guess, exact schedules decide (galloping away from the guess, then halving).
        steps = int((ceiling - floor) / BASIS_POINT)
        if floor + steps * BASIS_POINT == ceiling:
            steps -= 1  # the current rate itself does not count as a reduction

        def fits(step: int) -> bool:
            return self._fits(make(floor + step * BASIS_POINT), target)

        limit = float(target)
        low_rate, high_rate = float(floor), float(ceiling)
        for _ in range(30):
            middle = (low_rate + high_rate) / 2
            if self._estimate(make(Decimal(repr(middle)))) <= limit:
                low_rate = middle
            else:
                high_rate = middle
        guess = min(max(int((Decimal(repr(low_rate)) - floor) / BASIS_POINT), 0), steps)
        fitting, failing = 0, steps + 1  # fits(0) is known; steps + 1 stands for the current rate
        if fits(guess):
            fitting, stride = guess, 1
            while fitting + stride <= steps and fits(fitting + stride):
                fitting, stride = fitting + stride, stride * 2
            failing = min(fitting + stride, steps + 1)
        else:
            failing, stride = guess, 1
            while failing - stride > 0 and not fits(failing - stride):
                failing, stride = failing - stride, stride * 2
            fitting = max(failing - stride, 0)
        while failing - fitting > 1:
            middle = (fitting + failing) // 2
            if fits(middle):
                fitting = middle
            else:
                failing = middle
        return make(floor + fitting * BASIS_POINT)

    # ------------------------------------------------------------------------------ schedules

    def _terms(self, shape: Shape) -> Terms:
        terms = self._terms_of.get(shape)
        if terms is None:
            terms = self._terms_of[shape] = self._make_terms(shape)
        return terms

    def _make_terms(self, shape: Shape) -> Terms:
        position = self.position
        waived = self._waived(shape)
        charges_left = position.charges - waived[0] - waived[1]
        monthly_fee = ZERO
        if shape.capitalise:
            balance = position.principal + position.accrued_interest
            if shape.card and self.policy.card_instalment.fees_continue:
                monthly_fee = cents(balance * self.policy.card_instalment.monthly_fee_rate)
            return Terms(
                balance=balance,
                annual_rate=shape.rate,
                months=shape.months,
                start=position.as_of,
                first_due=position.first_due,
                method=self.method,
                day_count=self.day_count,
                holiday_months=shape.holiday,
                holiday_grace=shape.grace,
                deferred_interest_over=self.policy.deferral.deferred_interest_spread_months,
                step_up_after=self.policy.rate_reduction.step_up_after_months if shape.step_up else 0,
                step_up_rate=position.rate if shape.step_up else None,
                spread_charges=charges_left,
                spread_charges_over=self.policy.capitalise_arrears.charges_spread_months,
                monthly_fee=monthly_fee,
            )
        return Terms(
            balance=position.principal - position.overdue_principal,
            annual_rate=shape.rate,
            months=shape.months,
            start=position.as_of,
            first_due=position.first_due,
            method=self.method,
            day_count=self.day_count,
            holiday_months=shape.holiday,
            holiday_grace=shape.grace,
            deferred_interest_over=self.policy.deferral.deferred_interest_spread_months,
            step_up_after=self.policy.rate_reduction.step_up_after_months if shape.step_up else 0,
            step_up_rate=position.rate if shape.step_up else None,
            due_now_principal=position.overdue_principal,
            due_now_interest=position.accrued_interest,
            due_now_fees=charges_left,
        )

    def _waived(self, shape: Shape) -> tuple[Decimal, Decimal]:
        """Penalty interest and fees a shape waives."""
        if shape.waiver_share == 0:
            return ZERO, ZERO
        return cents(self.position.penalty * shape.waiver_share), cents(self.position.fees * shape.waiver_share)

    def _schedule(self, terms: Terms) -> list[Row]:
        rows = self._rows.get(terms)
        if rows is None:
            rows = self._rows[terms] = schedule(terms)
        return rows

    def _fits(self, shape: Shape, target: Decimal) -> bool:
        """Whether every payment of the restructured shape fits ``target`` (exact: its whole schedule)."""
        terms = self._terms(shape)
        limit = to_cents(target)
        peak = self._peaks.get(terms)
        if peak is None:
            exceeded = self._above.get(terms)
            if exceeded is not None and limit <= exceeded:
                return False
            rows = self._rows.get(terms)
            if rows is None:
                # Stop at the first payment above the target: the rows are kept only when complete.
                rows = schedule_within(terms, target)
                if rows is None:
                    self._above[terms] = limit if exceeded is None else max(exceeded, limit)
                    return False
                self._rows[terms] = rows
            peak = self._peaks[terms] = max(row.payment_cents for row in rows)
        return peak <= limit

    def _surely_fits(self, shape: Shape, target: Decimal) -> bool:
        """Whether the estimate is so far below ``target`` that the exact schedule cannot miss it."""
        return self._estimate(shape) <= float(target) * 0.98 - 1.0

    def _may_fit(self, shape: Shape, target: Decimal) -> bool:
        """Whether the estimate leaves a chance that ``shape`` fits: a cheap screen before ``_fits``."""
        return self._estimate(shape) <= float(target) * 1.01 + 1.0

    def _estimate(self, shape: Shape) -> float:
        """The largest payment of a restructured plan, approximately (floats): to search, never to decide."""
        terms = self._terms(shape)
        balance = float(terms.balance)
        monthly = float(terms.annual_rate) * _MONTH_FRACTION[terms.day_count]
        months = terms.months
        if terms.method is Method.ANNUITY:
            level = balance * monthly / (1 - (1 + monthly) ** -months) if monthly else balance / months
        else:
            level = balance / months + balance * monthly
        extras = float(terms.monthly_fee)
        if terms.spread_charges:
            extras += float(terms.spread_charges) / min(terms.spread_charges_over or months, months)
        if terms.holiday_months and terms.holiday_grace is Grace.PRINCIPAL_AND_INTEREST:
            deferred = balance * monthly * terms.holiday_months
            extras += deferred / min(terms.deferred_interest_over or months, months)
        peak = level + extras
        if terms.due_now_principal or terms.due_now_interest or terms.due_now_fees:
            peak += float(terms.due_now_principal + terms.due_now_interest + terms.due_now_fees)
        if terms.step_up_rate is not None and 0 < terms.step_up_after < months:
            after = terms.step_up_after
            stepped = float(terms.step_up_rate) * _MONTH_FRACTION[terms.day_count]
            if terms.method is Method.ANNUITY:
                growth = (1 + monthly) ** after
                left = balance * growth - (level * (growth - 1) / monthly if monthly else level * after)
                rest = months - after
                level_after = left * stepped / (1 - (1 + stepped) ** -rest) if stepped else left / rest
            else:
                level_after = balance / months + balance * (1 - after / months) * stepped
            peak = max(peak, level_after + float(terms.monthly_fee))
        return peak

    # ------------------------------------------------------------------------------ plan kinds of their own

    def _promise(self) -> Candidate:
        """The arrears in up to the policy's number of payments: the fewest that fit the months they fall in."""
        most = self.policy.promise_to_pay.max_payments
        shapes = [
            Shape(
                kinds=(PlanKind.PROMISE_TO_PAY,),
                promise_payments=k,
                rate=self.position.rate,
                months=max(self.position.remaining_term, 1),
            )
            for k in range(1, most + 1)
        ]
        # The promised payments fall in the calendar months of the promise's window: if even the arrears
        # spread evenly over those months do not fit, no number of payments does.
        window = self.policy.promise_to_pay.max_days
        as_of = self.position.as_of
        months = len({(day.year, day.month) for day in (as_of + timedelta(days=d) for d in range(1, window + 1))})
        if self.position.overdue_total > self.target * months:
            return Candidate(shapes[-1], "alternative")
        for shape in shapes:
            if self._build(shape).largest_month <= self.target:
                return Candidate(shape, "alternative", fits=True)
        return Candidate(shapes[-1], "alternative")

    def _settlement_ineligible(self) -> str | None:
        position, rules = self.position, self.policy.settlement
        if self.caps.max_settlement_discount == 0:
            return f"the policy allows no settlement discount for {position.product} in {position.jurisdiction}"
        if position.days_past_due < rules.min_days_past_due:
            return (
                f"a settlement needs at least {rules.min_days_past_due} days past due "
                f"(the debt is {position.days_past_due})"
            )
        return None

    def _settlement_amounts(self) -> tuple[Decimal, Decimal]:
        """The lump sum and the amount in instalments: above the no-plan recovery, within the discount cap."""
        position, rules = self.position, self.policy.settlement
        owed = position.total_owed
        least = cents(owed * (1 - self.caps.max_settlement_discount))
        asked = cents(Decimal(repr(self.no_plan_value)) * (1 + rules.above_no_plan_recovery))
        lump = min(owed, max(least, asked))
        return lump, min(owed, cents(lump * (1 + rules.instalment_surcharge)))

    def _settlement(self, *, instalments: bool) -> Candidate:
        lump, spread = self._settlement_amounts()
        if not instalments:
            savings = self.position.savings
            return Candidate(
                Shape(kinds=(PlanKind.SETTLEMENT_LUMP_SUM,), settlement_amount=lump),
                "alternative",
                fits=savings is not None and lump <= savings,
            )
        most = self.policy.settlement.max_instalments
        shapes = {
            k: Shape(kinds=(PlanKind.SETTLEMENT_INSTALMENTS,), settlement_amount=spread, settlement_instalments=k)
            for k in range(2, most + 1)
        }
        # One instalment a month, in equal parts: none fits with fewer than amount / target of them.
        fewest = most + 1 if self.target <= 0 else max(2, int(-(-spread // self.target)))
        for count in range(fewest, most + 1):
            if self._build(shapes[count]).largest_month <= self.target:
                return Candidate(shapes[count], "alternative", fits=True)
        return Candidate(shapes[most], "alternative")

    # ------------------------------------------------------------------------------ building

    def _build(self, shape: Shape) -> Built:
        built = self._built.get(shape)
        if built is None:
            if shape.settlement_amount is not None:
                built = self._build_settlement(shape)
            elif shape.promise_payments:
                built = self._build_promise(shape)
            else:
                built = self._build_restructured(shape)
            self._built[shape] = built
        return built

    def _build_restructured(self, shape: Shape) -> Built:
        position, describe = self.position, self.describe
        terms = self._terms(shape)
        rows = self._schedule(terms)
        penalty_waived, fees_waived = self._waived(shape)
        components: list[tuple[PlanKind, str]] = []
        for kind in shape.kinds:
            if kind is PlanKind.CAPITALISE_ARREARS:
                text = describe.capitalise_arrears(
                    position.accrued_interest,
                    terms.spread_charges,
                    min(terms.spread_charges_over or terms.months, terms.months),
                )
            elif kind is PlanKind.FEE_WAIVER:
                text = describe.fee_waiver(penalty_waived, fees_waived, shape.waiver_share)
            elif kind is PlanKind.DEFERRAL:
                text = describe.deferral(
                    shape.holiday,
                    shape.grace,
                    position.first_due,
                    holiday_interest(terms),
                    min(terms.deferred_interest_over or terms.months, terms.months),
                )
            elif kind is PlanKind.TERM_EXTENSION:
                text = describe.term_extension(position.remaining_term, shape.total_months, rows[-1].due_date)
            elif kind is PlanKind.CARD_INSTALMENT:
                text = describe.card_instalment(terms.balance, shape.months, shape.rate, terms.monthly_fee)
            else:
                old = position.rate
                text = describe.rate_reduction(
                    old, shape.rate, self.policy.rate_reduction.step_up_after_months if shape.step_up else 0
                )
            components.append((kind, text))
        return Built(
            shape=shape,
            rows=rows,
            method="annuity" if self.method is Method.ANNUITY else "equal_principal",
            opening_balance=terms.opening_balance,
            principal_waived=ZERO,
            interest_waived=penalty_waived,
            fees_waived=fees_waived,
            annual_rate=shape.rate,
            components=components,
        )

    def _build_promise(self, shape: Shape) -> Built:
        position = self.position
        rules = self.policy.promise_to_pay
        count = shape.promise_payments
        overdue = position.overdue_total
        share = cents_down(overdue / count)
        amounts = [share] * (count - 1) + [overdue - share * (count - 1)]
        dates = [position.as_of + timedelta(days=round(rules.max_days * (k + 1) / count)) for k in range(count)]
        # Each payment goes to penalty interest and fees first, then interest, then principal.
        owed = [to_cents(position.charges), to_cents(position.accrued_interest), to_cents(position.overdue_principal)]
        entries: list[tuple[date, int, int, int, int]] = []
        for due, amount in zip(dates, amounts, strict=True):
            paid = []
            left = to_cents(amount)
            for index in range(3):
                part = min(left, owed[index])
                owed[index] -= part
                left -= part
                paid.append(part)
            entries.append((due, to_cents(amount), paid[2], paid[1], paid[0]))
        contract = Terms(
            balance=position.principal - position.overdue_principal,
            annual_rate=position.rate,
            months=shape.months,
            start=position.as_of,
            first_due=position.first_due,
            method=self.method,
            day_count=self.day_count,
        )
        for row in self._schedule(contract):
            entries.append((row.due_date, row.payment_cents, row.principal_cents, row.interest_cents, row.fees_cents))
        entries.sort(key=lambda entry: entry[0])
        rows = []
        balance = to_cents(position.principal)
        for number, (due, payment, principal, interest, fees) in enumerate(entries, start=1):
            balance -= principal
            rows.append(Row(number, due, payment, principal, interest, fees, balance))
        return Built(
            shape=shape,
            rows=rows,
            method="custom",
            opening_balance=position.principal,
            principal_waived=ZERO,
            interest_waived=ZERO,
            fees_waived=ZERO,
            annual_rate=position.rate,
            components=[(PlanKind.PROMISE_TO_PAY, self.describe.promise_to_pay(overdue, dates))],
        )

    def _build_settlement(self, shape: Shape) -> Built:
        position = self.position
        amount = shape.settlement_amount
        assert amount is not None
        count = shape.settlement_instalments or 1
        if shape.settlement_instalments:
            dates = [add_months(position.first_due, k) for k in range(count)]
        else:
            dates = [position.as_of + timedelta(days=self.policy.settlement.pay_within_days)]
        share = cents_down(amount / count)
        amounts = [share] * (count - 1) + [amount - share * (count - 1)]
        # What is paid goes to principal first; interest, penalty interest and fees are forgiven first.
        to_principal = min(amount, position.principal)
        to_interest = min(amount - to_principal, position.accrued_interest + position.penalty)
        owed = [to_principal, to_interest, amount - to_principal - to_interest]
        rows = []
        balance = to_principal
        for number, (due, payment) in enumerate(zip(dates, amounts, strict=True), start=1):
            paid = []
            left = payment
            for index in range(3):
                part = min(left, owed[index])
                owed[index] -= part
                left -= part
                paid.append(part)
            balance -= paid[0]
            rows.append(
                Row(
                    number,
                    due,
                    to_cents(payment),
                    to_cents(paid[0]),
                    to_cents(paid[1]),
                    to_cents(paid[2]),
                    to_cents(balance),
                )
            )
        forgiven = position.total_owed - amount
        describe = self.describe
        if shape.settlement_instalments:
            text = describe.settlement_instalments(amount, count, forgiven)
        else:
            text = describe.settlement_lump_sum(amount, dates[0], forgiven)
        return Built(
            shape=shape,
            rows=rows,
            method="custom" if shape.settlement_instalments else "lump_sum",
            opening_balance=position.principal,
            principal_waived=position.principal - to_principal,
            interest_waived=position.accrued_interest + position.penalty - to_interest,
            fees_waived=position.fees - (amount - to_principal - to_interest),
            annual_rate=ZERO,
            components=[(shape.kinds[0], text)],
        )

    # ------------------------------------------------------------------------------ judging

    def _assess(self, candidate: Candidate) -> Assessed:
        built = self._build(candidate.shape)
        position = self.position
        if built.lump_sum:
            affordable = position.savings is not None and built.total_repayable <= position.savings
        else:
            affordable = built.largest_month <= self.target
        keep = self._keep_probability(built)
        expected, present = self._values(built, keep)
        value = cents(Decimal(repr(expected)))
        loss = max(ZERO, cents(Decimal(repr(self.contract_value - present))))
        tier = self._tier(loss)
        plan_id = uuid.uuid5(PLAN_ID_NAMESPACE, f"{self.request.request_id}|{candidate.shape.key()}")
        refusal = self._cap_breach(built)
        if refusal is None and not affordable:
            refusal = self._unaffordable(built, candidate)
        if refusal is None and tier is None:
            refusal = f"its loss of {self.describe.money(loss)} is beyond what any approver may accept"
        if refusal is None and self.policy.bank_view.refuse_below_no_plan and value < self.no_plan_amount:
            refusal = (
                f"its expected value {self.describe.money(value)} is below the expected recovery without a plan "
                f"({self.describe.money(self.no_plan_amount)})"
            )
        return Assessed(built, candidate.origin, affordable, keep, value, loss, tier, refusal, plan_id)

    def _unaffordable(self, built: Built, candidate: Candidate) -> str:
        describe = self.describe
        if built.lump_sum:
            savings = self.position.savings
            have = (
                "no savings were declared" if savings is None else f"the declared savings are {describe.money(savings)}"
            )
            return f"a lump sum of {describe.money(built.total_repayable)} is needed and {have}"
        levers = " + ".join(built.shape.kinds)
        text = (
            f"{levers} would take {describe.money(built.largest_month)} in its heaviest month, above the "
            f"affordable {describe.money(self.target)}"
        )
        if candidate.notes:
            text += "; " + "; ".join(dict.fromkeys(candidate.notes))
        return text

    def _cap_breach(self, built: Built) -> str | None:
        """Caps hold by construction; this check keeps it so if a lever ever misbehaves."""
        caps, shape, position = self.caps, built.shape, self.position
        where = f"for {position.product} in {position.jurisdiction}"
        outside = [kind for kind in shape.kinds if kind not in caps.kinds]
        if outside:
            return f"the policy does not allow {', '.join(outside)} {where}"
        if len(built.rows) > caps.max_term_months:
            return f"{len(built.rows)} months exceed the term cap of {caps.max_term_months} {where}"
        if PlanKind.RATE_REDUCTION in shape.kinds and shape.rate < caps.min_rate:
            return f"the rate is below the floor of {self.describe.rate(caps.min_rate)} {where}"
        if shape.waiver_share > caps.max_waiver_share:
            return f"the waiver exceeds the policy's {caps.max_waiver_share} share {where}"
        if shape.holiday > caps.max_deferral_months:
            return f"the holiday exceeds {caps.max_deferral_months} months {where}"
        if shape.settlement_amount is not None:
            forgiven = position.total_owed - shape.settlement_amount
            if forgiven > position.total_owed * caps.max_settlement_discount:
                return f"it forgives more than the policy's {caps.max_settlement_discount} share {where}"
        return None

    def _tier(self, loss: Decimal) -> ApprovalTier | None:
        owed = self.position.total_owed
        for tier in self.policy.approval_tiers:
            if tier.max_loss_share is not None and loss > owed * tier.max_loss_share:
                continue
            if tier.max_loss is not None and loss > tier.max_loss[self.position.currency]:
                continue
            return tier.tier
        return None

    def _keep_probability(self, built: Built) -> float:
        rules = self.policy.keep_probability
        if built.lump_sum:
            return rules.lump_sum
        target = float(self.target)
        load = float(built.largest_month) / target if target > 0 else 2.0
        span = rules.at_no_load - rules.at_full_load
        chance = rules.at_no_load - span * load
        years = len(built.rows) / 12
        chance += rules.per_year_of_term * years
        if self.position.reason is not None:
            chance += rules.by_reason.get(self.position.reason, 0.0)
        if PlanKind.DEFERRAL in built.shape.kinds and self.temporary:
            chance += rules.deferral_when_temporary
        return round(min(max(chance, rules.minimum), rules.maximum), 2)

    # ------------------------------------------------------------------------------ money over time

    def _discount_factor(self, day: date) -> float:
        factor: float = self._daily_discount ** max(day.toordinal() - self._as_of_ordinal, 0)
        return factor

    def _present_value(self, rows: list[Row]) -> float:
        discount = self._discount_factor
        return sum(row.payment_cents * discount(row.due_date) for row in rows) / 100

    def _values(self, built: Built, keep: float) -> tuple[float, float]:
        """The plan's expected value for the bank, and the present value of its payments if all are made.

        Payments are weighted by the chance the plan still runs; a break hands the principal then
        owed to collections, whose recovery comes ``months_to_recover`` later.
        """
        rows = built.rows
        monthly_keep = keep ** (1 / len(rows)) if keep > 0 else 0.0
        daily, start = self._daily_discount, self._as_of_ordinal
        recovery = self.recovery_net * self._recovery_discount
        alive = 1.0
        expected = present = 0.0
        exposure = float(built.opening_balance)
        for row in rows:
            factor = daily ** max(row.due_date.toordinal() - start, 0)
            breaks = alive * (1 - monthly_keep)
            expected += breaks * recovery * exposure * factor
            alive -= breaks
            paid = row.payment_cents * factor / 100
            present += paid
            expected += alive * paid
            exposure = row.balance_cents / 100
        return expected, present

    def _contract_present_value(self) -> float:
        """The contract as it stands: the arrears due today, then the remaining instalments."""
        position = self.position
        terms = Terms(
            balance=position.principal - position.overdue_principal,
            annual_rate=position.rate,
            months=max(position.remaining_term, 1),
            start=position.as_of,
            first_due=position.first_due,
            method=self.method,
            day_count=self.day_count,
        )
        return float(position.overdue_total) + self._present_value(self._schedule(terms))

    def _no_plan_value(self) -> float:
        rules = self.policy.bank_view.no_plan
        owed = float(self.position.total_owed)
        collected: float = self.recovery_net * owed * self._recovery_discount
        return rules.cure_probability * self.contract_value + (1 - rules.cure_probability) * collected

    # ------------------------------------------------------------------------------ publishing

    def _published(self, rank: int, assessed: Assessed, schedules_as_text: list[str] | None) -> dict[str, Any]:
        built, currency = assessed.built, self.position.currency
        assert assessed.tier is not None, "a proposal always has its approver"
        rows = built.rows
        published = {
            "plan_id": str(assessed.plan_id),
            "rank": rank,
            "components": [{"kind": kind.value, "description": text} for kind, text in built.components],
            "method": built.method,
            "day_count": self.day_count.value,
            "instalment": _money(built.instalment, currency),
            "term_months": len(rows),
            "total_repayable": _money(built.total_repayable, currency),
            "interest_waived": _money(built.interest_waived, currency),
            "fees_waived": _money(built.fees_waived, currency),
            "affordable": assessed.affordable,
            "keep_probability": assessed.keep_probability,
            "net_present_value": _money(assessed.value, currency),
            "loss_vs_contract": _money(assessed.loss, currency),
            "approval_tier": assessed.tier.value,
            "schedule": _schedule_data(rows, currency) if schedules_as_text is None else "",
            "opening_balance": _money(built.opening_balance, currency),
            "principal_waived": _money(built.principal_waived, currency),
            "annual_rate": format(built.annual_rate, "f"),
            "first_due_date": rows[0].due_date.isoformat(),
        }
        if schedules_as_text is not None:
            published["schedule"] = _SCHEDULE_MARKER.format(len(schedules_as_text))
            schedules_as_text.append(_schedule_text(rows, currency))
        return published


def _money(amount: Decimal, currency: str) -> dict[str, str]:
    return {"amount": format(amount, "f"), "currency": currency}


def _schedule_data(rows: list[Row], currency: str) -> list[dict[str, Any]]:
    return [
        {
            "number": row.number,
            "due_date": row.due_date.isoformat(),
            "payment": {"amount": cents_text(row.payment_cents), "currency": currency},
            "principal": {"amount": cents_text(row.principal_cents), "currency": currency},
            "interest": {"amount": cents_text(row.interest_cents), "currency": currency},
            "fees": {"amount": cents_text(row.fees_cents), "currency": currency},
            "remaining_balance": {"amount": cents_text(row.balance_cents), "currency": currency},
        }
        for row in rows
    ]


# A schedule's place in the data while it is written as text; a NUL cannot occur in our own strings.
_SCHEDULE_MARKER = "\u0000schedule {}\u0000"
_ROW_TEXT = (
    '{{"number":{},"due_date":"{}","payment":{{"amount":"{}","currency":"{c}"}},'
    '"principal":{{"amount":"{}","currency":"{c}"}},"interest":{{"amount":"{}","currency":"{c}"}},'
    '"fees":{{"amount":"{}","currency":"{c}"}},"remaining_balance":{{"amount":"{}","currency":"{c}"}}}}'
)


def _schedule_marker(index: int) -> bytes:
    return to_json(_SCHEDULE_MARKER.format(index))


def _schedule_text(rows: list[Row], currency: str) -> str:
    """The schedule as the JSON text ``_schedule_data`` would encode to (currency codes are [A-Z]{3})."""
    row_text = _ROW_TEXT.replace("{c}", currency).format
    return (
        "["
        + ",".join(
            row_text(
                row.number,
                row.due_date.isoformat(),
                cents_text(row.payment_cents),
                cents_text(row.principal_cents),
                cents_text(row.interest_cents),
                cents_text(row.fees_cents),
                cents_text(row.balance_cents),
            )
            for row in rows
        )
        + "]"
    )
