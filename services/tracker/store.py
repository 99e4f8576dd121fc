"""Tracker's SQL: cases, the append-only case-event audit trail, idempotency and outbox, one transaction."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from typing import TYPE_CHECKING

import asyncpg

from schemas.values import CaseStatus
from services.runtime.db import add_to_outbox, claim_message, transaction
from services.runtime.kafka import Record
from services.tracker.logic import AttachToCase, CaseState, Decision, OpenCase

if TYPE_CHECKING:
    from services.runtime.db import DbConnection

CONSUMER = "tracker"


class CaseUnitOfWork:
    """One consumed event's database work; everything commits together or not at all."""

    def __init__(self, conn: DbConnection) -> None:
        self._conn = conn

    async def claim(self, event_id: uuid.UUID) -> bool:
        return await claim_message(self._conn, CONSUMER, str(event_id))

    async def load_case(self, case_id: uuid.UUID) -> CaseState | None:
        row = await self._conn.fetchrow("SELECT case_id, status FROM cases WHERE case_id = $1 FOR UPDATE", case_id)
        return None if row is None else CaseState(row["case_id"], CaseStatus(row["status"]))

    async def record_event(
        self,
        event_id: uuid.UUID,
        case_id: uuid.UUID,
        event_type: str,
        occurred_at: datetime,
        payload_json: str,
    ) -> None:
        await self._conn.execute(
            """INSERT INTO case_events (event_id, case_id, event_type, occurred_at, payload)
               VALUES ($1, $2, $3, $4, $5::text::jsonb)""",
            event_id,
            case_id,
            event_type,
            occurred_at,
            payload_json,
        )

    async def apply(
        self, decision: Decision, cause_id: uuid.UUID, cause_type: str, cause_json: str, records: list[Record]
    ) -> None:
        if isinstance(decision, OpenCase):
            await self._conn.execute(
                """INSERT INTO cases (case_id, customer_ref, channel, status, opened_at, updated_at)
                   VALUES ($1, $2, $3, $4, $5, $5)""",
                decision.case_id,
                decision.customer_ref,
                decision.channel.value,
                CaseStatus.OPENED.value,
                decision.opened_at,
            )
            await self.record_event(cause_id, decision.case_id, cause_type, decision.opened_at, cause_json)
            opened = decision.opened_event
            await self.record_event(opened.id, decision.case_id, opened.type, opened.time, opened.model_dump_json())
        elif isinstance(decision, AttachToCase):
            await self._conn.execute(
                """UPDATE cases SET updated_at = greatest(updated_at, $2), feedback_count = feedback_count + 1
                   WHERE case_id = $1""",
                decision.case_id,
                decision.at,
            )
            await self.record_event(cause_id, decision.case_id, cause_type, decision.at, cause_json)
        await add_to_outbox(self._conn, CONSUMER, records)


@asynccontextmanager
async def unit_of_work(pool: asyncpg.Pool) -> AsyncIterator[CaseUnitOfWork]:
    async with transaction(pool) as conn:
        yield CaseUnitOfWork(conn)
