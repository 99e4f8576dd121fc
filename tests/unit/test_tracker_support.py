"""Builders shared by the tracker's unit tests: routed deliveries, agent actions, proposals, account snapshots.

(No tests here; the other test_tracker_* modules import these.)
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import schemas
from schemas.plans import (
    Debt,
    IncomeAndExpenditure,
    Instalment,
    PlanComponent,
    PlanProposal,
    PlanProposed,
    PlanProposedEvent,
    Product,
)
from schemas.routing import CaseRoutedEvent
from schemas.values import CaseStatus, Money, PlanKind
from services.tracker.accounts import AccountSnapshot
from services.tracker.audit import canonical_text, chain_hash, row_content
from services.tracker.logic import (
    AGENT_EVENT_MODELS,
    Batch,
    CaseState,
    Incoming,
    Outcome,
    PlanState,
    PlanStatus,
    ProposalRecord,
    TrackerConfig,
    World,
    case_id_for,
)

T0 = datetime(2026, 11, 22, 1, 12, 5, tzinfo=UTC)
CUSTOMER = "C20458813"
CONFIG = TrackerConfig(follow_up_after=timedelta(days=7), close_after=timedelta(days=14), plan_broken_after_missed=2)
EXAMPLES = Path(schemas.__file__).resolve().parent / "examples"
_ROUTED = json.loads((EXAMPLES / "com.parley.case.routed.v1.json").read_text(encoding="utf-8"))
_REGULATOR_DETAILS = {
    "channel": "regulator",
    "regulator": "nfra_12378",
    "source_reference": "12378-20261122-000123",
    "response_due_by": "2026-12-07T00:00:00+08:00",
}


def ids(prefix: str, count: int = 1) -> list[uuid.UUID]:
    return [uuid.uuid5(uuid.NAMESPACE_URL, f"test:{prefix}:{n}") for n in range(count)]


def an_id(name: str) -> uuid.UUID:
    return uuid.uuid5(uuid.NAMESPACE_URL, f"test:{name}")


def routed(
    feedback_id: uuid.UUID,
    *,
    kind: str = "new_case",
    case_id: uuid.UUID | None = None,
    at: datetime = T0,
    received_at: datetime | None = None,
    category: str = "repayment_hardship",
    customer_ref: str | None = CUSTOMER,
    queue: str = "repayment_hardship",
    escalation_level: int = 0,
    regulator: bool = False,
    event_id: uuid.UUID | None = None,
    lane: str = "primary",
    flags: list[str] | None = None,
    **link: Any,
) -> Incoming:
    body = json.loads(json.dumps(_ROUTED))
    data = body["data"]
    body["id"] = str(
        event_id or an_id(f"routed:{feedback_id}:{kind}:{queue}:{escalation_level}:{at.isoformat()}:{lane}")
    )
    body["time"] = at.isoformat()
    data.update(
        case_id=str(case_id or case_id_for(feedback_id)),
        feedback_id=str(feedback_id),
        category=category,
        customer_ref=customer_ref,
        queue=queue,
        escalation_level=escalation_level,
        routed_at=at.isoformat(),
        lane=lane,
        link={"kind": kind, **{k: str(v) if isinstance(v, uuid.UUID) else v for k, v in link.items()}},
    )
    if received_at is not None:
        data["received_at"] = received_at.isoformat()
    if flags is not None:
        data["flags"] = flags
    if regulator:
        data["channel"] = "regulator"
        data["details"] = dict(_REGULATOR_DETAILS)
    value = json.dumps(body, ensure_ascii=False).encode()
    return Incoming("routed", CaseRoutedEvent.model_validate_json(value), value)


def action(name: str, case_id: uuid.UUID, at: datetime, event_id: uuid.UUID | None = None, **data: Any) -> Incoming:
    event_type = f"com.parley.agent.{name}.v1"
    body = {
        "specversion": "1.0",
        "id": str(event_id or an_id(f"action:{name}:{case_id}:{at.isoformat()}:{sorted(data.items())}")),
        "source": "/desk/test",
        "type": event_type,
        "time": at.isoformat(),
        "subject": str(case_id),
        "data": {"case_id": str(case_id), "agent_id": data.pop("agent_id", "E3172"), **_jsonable(data)},
    }
    value = json.dumps(body).encode()
    return Incoming("agent_action", AGENT_EVENT_MODELS[event_type].model_validate_json(value), value)


def _jsonable(data: dict[str, Any]) -> dict[str, Any]:
    return json.loads(json.dumps(data, default=str))


def proposal(plan_id: uuid.UUID, *, rank: int = 1, instalments: int = 3, amount: str = "1000.00") -> PlanProposal:
    payment = Decimal(amount)
    schedule = [
        Instalment(
            number=n,
            due_date=date(2026, 12, 10) + timedelta(days=30 * (n - 1)),
            payment=Money(amount=payment, currency="CNY"),
            principal=Money(amount=payment, currency="CNY"),
            interest=Money(amount=Decimal("0.00"), currency="CNY"),
            fees=Money(amount=Decimal("0.00"), currency="CNY"),
            remaining_balance=Money(amount=payment * (instalments - n), currency="CNY"),
        )
        for n in range(1, instalments + 1)
    ]
    total = Money(amount=payment * instalments, currency="CNY")
    return PlanProposal(
        plan_id=plan_id,
        rank=rank,
        components=[PlanComponent(kind=PlanKind.TERM_EXTENSION, description="longer term")],
        method="annuity",
        day_count="30/360",
        instalment=Money(amount=payment, currency="CNY"),
        term_months=instalments,
        total_repayable=total,
        interest_waived=Money(amount=Decimal("0.00"), currency="CNY"),
        fees_waived=Money(amount=Decimal("0.00"), currency="CNY"),
        affordable=True,
        keep_probability=0.68,
        net_present_value=total,
        loss_vs_contract=Money(amount=Decimal("7.48"), currency="CNY"),
        approval_tier="agent",
        schedule=schedule,
    )


def proposed(case_id: uuid.UUID, request_id: uuid.UUID, plans: list[PlanProposal], at: datetime) -> Incoming:
    event = PlanProposedEvent(
        id=an_id(f"proposed:{request_id}"),
        source="/parley/planner",
        time=at,
        subject=str(case_id),
        data=PlanProposed(
            request_id=request_id,
            case_id=case_id,
            monthly_surplus=Money(amount=Decimal("1800.00"), currency="CNY"),
            surplus_from_defaults=False,
            expected_recovery_without_plan=Money(amount=Decimal("5681.56"), currency="CNY"),
            proposals=plans,
            policy_version="test-1",
        ),
    )
    value = event.to_json_bytes()
    return Incoming("plan_proposed", PlanProposedEvent.model_validate_json(value), value)


def account(customer_ref: str = CUSTOMER) -> AccountSnapshot:
    cny = "CNY"
    return AccountSnapshot(
        customer_ref=customer_ref,
        as_of=date(2026, 11, 20),
        debt=Debt(
            product=Product.PERSONAL_LOAN,
            outstanding_principal=Money(amount=Decimal("10200.00"), currency=cny),
            arrears=Money(amount=Decimal("3450.00"), currency=cny),
            accrued_interest=Money(amount=Decimal("47.20"), currency=cny),
            penalty_interest=Money(amount=Decimal("7.50"), currency=cny),
            fees=Money(amount=Decimal("0.00"), currency=cny),
            annual_rate=Decimal("0.0435"),
            remaining_term_months=2,
            contractual_instalment=Money(amount=Decimal("3450.00"), currency=cny),
            next_due_date=date(2026, 12, 10),
            days_past_due=12,
        ),
        income=IncomeAndExpenditure(monthly_income=Money(amount=Decimal("5200.00"), currency=cny), household_size=3),
    )


def case_in(status: CaseStatus, case_id: uuid.UUID, feedback_id: uuid.UUID, **changes: Any) -> CaseState:
    from schemas.channels import Channel
    from schemas.values import Category, Jurisdiction, Priority, Queue

    base = CaseState(
        case_id=case_id,
        customer_ref=CUSTOMER,
        channel=Channel.HOTLINE,
        status=status,
        opened_at=T0,
        updated_at=T0,
        category=Category.REPAYMENT_HARDSHIP,
        priority=Priority.P2,
        queue=Queue.REPAYMENT_HARDSHIP,
        jurisdiction=Jurisdiction.CN,
        feedback_ids=frozenset({feedback_id}),
    )
    from dataclasses import replace

    return replace(base, **changes)


def plan_state(plan: PlanProposal, case_id: uuid.UUID, status: PlanStatus, **changes: Any) -> PlanState:
    from dataclasses import replace

    record = ProposalRecord(plan.plan_id, case_id, an_id("request"), plan, T0)
    state = PlanState(
        plan_id=plan.plan_id,
        case_id=case_id,
        request_id=record.request_id,
        status=status,
        currency="CNY",
        instalment=plan.instalment.amount,
        schedule=record.schedule(),
        offered_at=T0,
        updated_at=T0,
    )
    return replace(state, **changes)


def run(world: World, *incomings: Incoming, config: TrackerConfig = CONFIG) -> Outcome:
    batch = Batch(world, config)
    for incoming in incomings:
        batch.apply(incoming)
    return as_models_write_it(batch.finish())


def as_models_write_it(outcome: Outcome) -> Outcome:
    """Each emitted event's record value, and its audit row, are exactly what its model writes: the logic writes
    the events on every routed case's path from their fields, without the model."""
    for row in outcome.audit_rows:
        content = row_content(row.case_id, row.seq, row.event_id, row.event_type, row.occurred_at, row.payload_text)
        assert row.row_hash == chain_hash(row.prev_hash, content), f"{row.event_type}: the row's hash does not verify"
        assert row.payload_text == canonical_text(row.payload)
    rows = {row.event_id: row for row in outcome.audit_rows}
    for emitted in outcome.emitted:
        event = emitted.event
        assert type(event).model_validate_json(emitted.value) == event
        assert emitted.value == event.to_json_bytes(), f"{event.type}: the record differs from the model's JSON"
        row = rows[event.id]
        assert row.payload == event.model_dump(mode="json"), f"{event.type}: the audit payload differs"
        assert (row.event_type, row.occurred_at) == (event.type, event.time)
    return outcome


def tracking_types(outcome: Outcome) -> list[str]:
    """Short names of what was emitted, in order: 'tracking.opened', 'plan.requested', …"""
    return [e.event.type.removeprefix("com.parley.").removesuffix(".v1") for e in outcome.emitted]


def emitted_of(outcome: Outcome, short_type: str) -> list[Any]:
    return [e.event for e in outcome.emitted if e.event.type == f"com.parley.{short_type}.v1"]
