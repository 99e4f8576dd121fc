"""Tracker's SQL: cases, the hash-chained audit trail, plans, timers, account snapshots, parked events.

A batch loads what it touches in a few statements (the cases locked), the pure logic decides, and
everything it decided is written back with multi-row statements in the same transaction as the
idempotency claims and the outbox rows.

Locking: a batch first takes a transaction-scoped advisory lock per case id it names, in key
order. Two workers touching one case (a case's topics are not one partition) therefore take turns:
one cannot park an event for a case the other is opening, and no two open the same case. The timer
poller takes due timers and their cases with SKIP LOCKED and never waits for a batch.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import asyncpg

from schemas.channels import Channel
from schemas.plans import Debt, IncomeAndExpenditure, PlanProposal
from schemas.values import CaseStatus, Category, Jurisdiction, Priority, Queue, Resolution
from services.runtime.db import add_to_outbox, claim_messages
from services.runtime.kafka import Record
from services.tracker.accounts import AccountSnapshot
from services.tracker.audit import StoredRow
from services.tracker.logic import (
    CaseState,
    DueTimer,
    InboundKind,
    Outcome,
    PlanState,
    PlanStatus,
    ProposalRecord,
    ScheduledPayment,
    TimerKind,
)

if TYPE_CHECKING:
    from services.runtime.db import DbConnection

CONSUMER = "tracker"

CASE_COLUMNS = (
    ("case_id", "uuid"),
    ("customer_ref", "text"),
    ("channel", "text"),
    ("status", "text"),
    ("opened_at", "timestamptz"),
    ("updated_at", "timestamptz"),
    ("feedback_count", "integer"),
    ("category", "text"),
    ("priority", "text"),
    ("queue", "text"),
    ("escalation_level", "integer"),
    ("jurisdiction", "text"),
    ("regulator_deadline", "timestamptz"),
    ("assigned_agent", "text"),
    ("first_contact_at", "timestamptz"),
    ("failed_contact_attempts", "integer"),
    ("resolved_at", "timestamptz"),
    ("resolution", "text"),
    ("audit_seq", "bigint"),
    ("audit_head", "bytea"),
)
_NAMES = ", ".join(name for name, _ in CASE_COLUMNS)
_UNNEST = ", ".join(f"${n}::{kind}[]" for n, (_, kind) in enumerate(CASE_COLUMNS, start=1))
INSERT_CASES = f"INSERT INTO cases ({_NAMES}) SELECT * FROM unnest({_UNNEST})"
UPDATE_CASES = (
    f"UPDATE cases AS c SET {', '.join(f'{name} = u.{name}' for name, _ in CASE_COLUMNS[1:])} "
    f"FROM unnest({_UNNEST}) AS u({_NAMES}) WHERE c.case_id = u.case_id"
)


def _case_columns(cases: Sequence[CaseState]) -> list[list[Any]]:
    # The enums are StrEnums: the driver writes a str subclass as its text, which is the value (reading .value
    # costs a Python call per field).
    rows = [
        (
            c.case_id,
            c.customer_ref,
            c.channel,
            c.status,
            c.opened_at,
            c.updated_at,
            c.feedback_count,
            c.category,
            c.priority,
            c.queue,
            c.escalation_level,
            c.jurisdiction,
            c.regulator_deadline,
            c.assigned_agent,
            c.first_contact_at,
            c.failed_contact_attempts,
            c.resolved_at,
            c.resolution,
            c.audit_seq,
            c.audit_head,
        )
        for c in cases
    ]
    return [list(column) for column in zip(*rows, strict=True)] if rows else [[] for _ in CASE_COLUMNS]


def _case_from(row: asyncpg.Record, feedback_ids: frozenset[uuid.UUID]) -> CaseState:
    return CaseState(
        case_id=row["case_id"],
        customer_ref=row["customer_ref"],
        channel=Channel(row["channel"]),
        status=CaseStatus(row["status"]),
        opened_at=row["opened_at"],
        updated_at=row["updated_at"],
        feedback_count=row["feedback_count"],
        category=Category(row["category"]) if row["category"] else None,
        priority=Priority(row["priority"]) if row["priority"] else None,
        queue=Queue(row["queue"]) if row["queue"] else None,
        escalation_level=row["escalation_level"],
        jurisdiction=Jurisdiction(row["jurisdiction"]) if row["jurisdiction"] else None,
        regulator_deadline=row["regulator_deadline"],
        assigned_agent=row["assigned_agent"],
        first_contact_at=row["first_contact_at"],
        failed_contact_attempts=row["failed_contact_attempts"],
        resolved_at=row["resolved_at"],
        resolution=Resolution(row["resolution"]) if row["resolution"] else None,
        audit_seq=row["audit_seq"],
        audit_head=row["audit_head"],
        feedback_ids=feedback_ids,
    )


@dataclass(frozen=True)
class ParkedRow:
    case_id: uuid.UUID
    kind: InboundKind
    value: bytes


async def claim(conn: DbConnection, event_ids: list[str]) -> set[str]:
    return await claim_messages(conn, CONSUMER, event_ids)


async def lock_case_ids(conn: DbConnection, case_ids: Iterable[uuid.UUID]) -> None:
    """Advisory locks on the case ids, in key order (OFFSET 0 keeps the sort below the lock calls)."""
    await conn.execute(
        """SELECT pg_advisory_xact_lock(k) FROM (
               SELECT DISTINCT hashtextextended(id::text, 0) AS k FROM unnest($1::uuid[]) AS id ORDER BY 1 OFFSET 0
           ) AS keys""",
        list(case_ids),
    )


async def load_cases(
    conn: DbConnection, case_ids: list[uuid.UUID], *, skip_locked: bool = False
) -> dict[uuid.UUID, CaseState]:
    lock = "FOR UPDATE SKIP LOCKED" if skip_locked else "FOR UPDATE"
    # The case's feedback comes in the same statement (one round trip, not two); FOR UPDATE locks the cases only.
    rows = await conn.fetch(
        f"""SELECT {_NAMES}, ARRAY(SELECT f.feedback_id FROM tracker.case_feedback AS f
                                   WHERE f.case_id = c.case_id) AS feedback_ids
            FROM cases AS c WHERE case_id = ANY($1::uuid[]) ORDER BY case_id {lock}""",
        case_ids,
    )
    return {row["case_id"]: _case_from(row, frozenset(row["feedback_ids"])) for row in rows}


async def load_parked(conn: DbConnection, case_ids: list[uuid.UUID]) -> list[ParkedRow]:
    if not case_ids:
        return []
    rows = await conn.fetch(
        "SELECT case_id, kind, value FROM tracker.parked WHERE case_id = ANY($1::uuid[]) ORDER BY id", case_ids
    )
    return [ParkedRow(row["case_id"], row["kind"], row["value"]) for row in rows]


def _schedule_from(items: Any) -> tuple[ScheduledPayment, ...]:
    return tuple(ScheduledPayment(int(n), date.fromisoformat(day), Decimal(amount)) for n, day, amount in items)


def _plan_from(row: asyncpg.Record) -> PlanState:
    return PlanState(
        plan_id=row["plan_id"],
        case_id=row["case_id"],
        request_id=row["request_id"],
        status=PlanStatus(row["status"]),
        currency=row["currency"],
        instalment=row["instalment"],
        schedule=_schedule_from(row["schedule"]),
        offered_at=row["offered_at"],
        updated_at=row["updated_at"],
        paid=frozenset(row["paid"]),
        missed=frozenset(row["missed"]),
        paid_total=row["paid_total"],
    )


async def load_plans(conn: DbConnection, case_ids: list[uuid.UUID]) -> dict[uuid.UUID, PlanState]:
    if not case_ids:
        return {}
    rows = await conn.fetch("SELECT * FROM tracker.plans WHERE case_id = ANY($1::uuid[])", case_ids)
    return {row["plan_id"]: _plan_from(row) for row in rows}


async def load_proposals(conn: DbConnection, plan_ids: list[uuid.UUID]) -> dict[uuid.UUID, ProposalRecord]:
    if not plan_ids:
        return {}
    rows = await conn.fetch(
        "SELECT plan_id, case_id, request_id, proposal, proposed_at FROM tracker.proposals WHERE plan_id = ANY($1)",
        plan_ids,
    )
    return {
        row["plan_id"]: ProposalRecord(
            row["plan_id"],
            row["case_id"],
            row["request_id"],
            PlanProposal.model_validate(row["proposal"]),
            row["proposed_at"],
        )
        for row in rows
    }


def _snapshot_from(row: asyncpg.Record) -> AccountSnapshot:
    return AccountSnapshot(
        customer_ref=row["customer_ref"],
        as_of=row["as_of"],
        debt=Debt.model_validate(row["debt"]),
        income=IncomeAndExpenditure.model_validate(row["income"]) if row["income"] is not None else None,
    )


async def load_accounts(conn: DbConnection, customer_refs: list[str]) -> dict[str, AccountSnapshot]:
    if not customer_refs:
        return {}
    rows = await conn.fetch("SELECT * FROM tracker.accounts WHERE customer_ref = ANY($1::text[])", customer_refs)
    return {row["customer_ref"]: _snapshot_from(row) for row in rows}


async def write(conn: DbConnection, outcome: Outcome, records: list[Record]) -> None:
    """Everything a batch decided (``Batch.finish``), in an order that satisfies the foreign keys."""
    if outcome.cases_to_insert:
        await conn.execute(INSERT_CASES, *_case_columns(outcome.cases_to_insert))
    if outcome.cases_to_update:
        await conn.execute(UPDATE_CASES, *_case_columns(outcome.cases_to_update))
    await _write_feedback(conn, outcome)
    if outcome.audit_rows:
        rows = outcome.audit_rows
        await conn.execute(
            """INSERT INTO case_events (event_id, case_id, event_type, occurred_at, payload, seq, prev_hash, row_hash)
               SELECT e, c, t, o, p::jsonb, s, ph, rh
               FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::timestamptz[], $5::text[], $6::bigint[],
                           $7::bytea[], $8::bytea[]) AS u(e, c, t, o, p, s, ph, rh)""",
            [r.event_id for r in rows],
            [r.case_id for r in rows],
            [r.event_type for r in rows],
            [r.occurred_at for r in rows],
            [r.payload_text for r in rows],
            [r.seq for r in rows],
            [r.prev_hash for r in rows],
            [r.row_hash for r in rows],
        )
    await _write_proposals(conn, outcome)
    await write_plans(conn, outcome)
    await write_timers(conn, outcome.timers)
    await _write_parked(conn, outcome)
    await add_to_outbox(conn, CONSUMER, records)


async def _write_feedback(conn: DbConnection, outcome: Outcome) -> None:
    final: dict[tuple[uuid.UUID, uuid.UUID], datetime | None] = {}
    for case_id, feedback_id, at in outcome.feedback_added:
        final[(case_id, feedback_id)] = at
    for case_id, feedback_id in outcome.feedback_removed:
        final[(case_id, feedback_id)] = None  # removals follow additions in one batch (a split undoes a merge)
    added = [(key, at) for key, at in final.items() if at is not None]
    removed = [key for key, at in final.items() if at is None]
    if added:
        await conn.execute(
            """INSERT INTO tracker.case_feedback (case_id, feedback_id, joined_at)
               SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::timestamptz[]) ON CONFLICT DO NOTHING""",
            [key[0] for key, _ in added],
            [key[1] for key, _ in added],
            [at for _, at in added],
        )
    if removed:
        await conn.execute(
            """DELETE FROM tracker.case_feedback AS f USING unnest($1::uuid[], $2::uuid[]) AS r(case_id, feedback_id)
               WHERE f.case_id = r.case_id AND f.feedback_id = r.feedback_id""",
            [key[0] for key in removed],
            [key[1] for key in removed],
        )


async def _write_proposals(conn: DbConnection, outcome: Outcome) -> None:
    if not outcome.proposals_to_insert:
        return
    # The proposals themselves are in the audit trail too; the table is what an offer looks up.
    await conn.executemany(
        """INSERT INTO tracker.proposals (plan_id, case_id, request_id, rank, proposal, proposed_at)
           VALUES ($1, $2, $3, $4, $5::text::jsonb, $6) ON CONFLICT (plan_id) DO NOTHING""",
        [
            (
                record.plan_id,
                record.case_id,
                record.request_id,
                record.proposal.rank,
                record.proposal.model_dump_json(),
                record.proposed_at,
            )
            for record in outcome.proposals_to_insert
        ],
    )


async def write_plans(conn: DbConnection, outcome: Outcome) -> None:
    plans = outcome.plans_to_write
    if not plans:
        return
    await conn.executemany(
        """INSERT INTO tracker.plans (plan_id, case_id, request_id, status, currency, instalment, schedule,
                                      paid, missed, paid_total, offered_at, updated_at)
           VALUES ($1, $2, $3, $4, $5, $6, $7::text::jsonb, $8, $9, $10, $11, $12)
           ON CONFLICT (plan_id) DO UPDATE SET status = excluded.status, paid = excluded.paid,
               missed = excluded.missed, paid_total = excluded.paid_total, updated_at = excluded.updated_at,
               offered_at = excluded.offered_at""",
        [
            (
                p.plan_id,
                p.case_id,
                p.request_id,
                p.status.value,
                p.currency,
                p.instalment,
                json.dumps([[s.number, s.due_date.isoformat(), str(s.payment)] for s in p.schedule]),
                sorted(p.paid),
                sorted(p.missed),
                p.paid_total,
                p.offered_at,
                p.updated_at,
            )
            for p in plans
        ],
    )


async def write_timers(conn: DbConnection, timers: dict[tuple[uuid.UUID, TimerKind], datetime | None]) -> None:
    armed = [(key, due) for key, due in timers.items() if due is not None]
    cancelled = [key for key, due in timers.items() if due is None]
    if armed:
        await conn.execute(
            """INSERT INTO tracker.timers (case_id, kind, due_at)
               SELECT * FROM unnest($1::uuid[], $2::text[], $3::timestamptz[])
               ON CONFLICT (case_id, kind) DO UPDATE SET due_at = excluded.due_at""",
            [key[0] for key, _ in armed],
            [key[1] for key, _ in armed],
            [due for _, due in armed],
        )
    if cancelled:
        await conn.execute(
            """DELETE FROM tracker.timers AS t USING unnest($1::uuid[], $2::text[]) AS d(case_id, kind)
               WHERE t.case_id = d.case_id AND t.kind = d.kind""",
            [key[0] for key in cancelled],
            [key[1] for key in cancelled],
        )


async def _write_parked(conn: DbConnection, outcome: Outcome) -> None:
    if outcome.unparked_cases:
        await conn.execute("DELETE FROM tracker.parked WHERE case_id = ANY($1::uuid[])", list(outcome.unparked_cases))
    if outcome.parked:
        await conn.execute(
            """INSERT INTO tracker.parked (case_id, kind, value)
               SELECT * FROM unnest($1::uuid[], $2::text[], $3::bytea[])""",
            [item.case_id for item in outcome.parked],
            [item.kind for item in outcome.parked],
            [item.value for item in outcome.parked],
        )


# ---- timers ----


async def take_due_timers(conn: DbConnection, now: datetime, limit: int) -> list[DueTimer]:
    rows = await conn.fetch(
        """SELECT case_id, kind, due_at FROM tracker.timers WHERE due_at <= $1
           ORDER BY due_at LIMIT $2 FOR UPDATE SKIP LOCKED""",
        now,
        limit,
    )
    return [DueTimer(row["case_id"], row["kind"], row["due_at"]) for row in rows]


# ---- account snapshots ----


async def upsert_accounts(conn: DbConnection, snapshots: Sequence[AccountSnapshot]) -> int:
    """Load snapshots; an older one never replaces a newer. Returns how many rows changed."""
    if not snapshots:
        return 0
    result = await conn.execute(
        """INSERT INTO tracker.accounts (customer_ref, as_of, debt, income)
           SELECT r, a, d::jsonb, i::jsonb FROM unnest($1::text[], $2::date[], $3::text[], $4::text[]) AS u(r, a, d, i)
           ON CONFLICT (customer_ref) DO UPDATE
               SET as_of = excluded.as_of, debt = excluded.debt, income = excluded.income, loaded_at = now()
               WHERE tracker.accounts.as_of <= excluded.as_of""",
        [s.customer_ref for s in snapshots],
        [s.as_of for s in snapshots],
        [s.debt.model_dump_json() for s in snapshots],
        [s.income.model_dump_json() if s.income is not None else None for s in snapshots],
    )
    return int(result.rsplit(" ", 1)[-1])


# ---- reading a case (CLI) ----


async def case_row(conn: DbConnection, case_id: uuid.UUID) -> asyncpg.Record | None:
    return await conn.fetchrow(f"SELECT {_NAMES} FROM cases WHERE case_id = $1", case_id)


async def stored_audit_rows(conn: DbConnection, case_id: uuid.UUID) -> list[StoredRow]:
    rows = await conn.fetch(
        """SELECT id, event_id, event_type, occurred_at, payload, seq, prev_hash, row_hash
           FROM case_events WHERE case_id = $1 ORDER BY id""",
        case_id,
    )
    return [
        StoredRow(
            row["id"],
            row["event_id"],
            row["event_type"],
            row["occurred_at"],
            row["payload"],
            row["seq"],
            row["prev_hash"],
            row["row_hash"],
        )
        for row in rows
    ]


async def all_case_ids(conn: DbConnection) -> list[uuid.UUID]:
    return [row["case_id"] for row in await conn.fetch("SELECT case_id FROM cases ORDER BY opened_at, case_id")]


async def plans_of(conn: DbConnection, case_id: uuid.UUID) -> list[PlanState]:
    rows = await conn.fetch("SELECT * FROM tracker.plans WHERE case_id = $1 ORDER BY offered_at", case_id)
    return [_plan_from(row) for row in rows]


async def timers_of(conn: DbConnection, case_id: uuid.UUID) -> list[DueTimer]:
    rows = await conn.fetch(
        "SELECT case_id, kind, due_at FROM tracker.timers WHERE case_id = $1 ORDER BY due_at", case_id
    )
    return [DueTimer(row["case_id"], row["kind"], row["due_at"]) for row in rows]


async def parked_count(conn: DbConnection, case_id: uuid.UUID) -> int:
    count: int = await conn.fetchval("SELECT count(*) FROM tracker.parked WHERE case_id = $1", case_id)
    return count
