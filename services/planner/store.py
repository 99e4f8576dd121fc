"""Planner's database work: which requests it has handled, and the outbox of its proposals.

The planner owns no table of its own: the shared idempotency record and outbox are enough.
"""

from __future__ import annotations

import asyncpg

from services.runtime.db import add_to_outbox, claim_messages, transaction
from services.runtime.kafka import Record


async def record_proposals(pool: asyncpg.Pool, consumer: str, planned: list[tuple[str, Record]]) -> int:
    """In one transaction, claim each request event id and queue its proposal; returns how many were repeats.

    A request seen before (a redelivery, or twice in one batch) queues nothing.
    """
    async with transaction(pool) as conn:
        fresh = await claim_messages(conn, consumer, list(dict.fromkeys(event_id for event_id, _ in planned)))
        records = []
        for event_id, record in planned:
            if event_id in fresh:
                fresh.discard(event_id)  # a second copy in the same batch is a repeat too
                records.append(record)
        await add_to_outbox(conn, consumer, records)
    return len(planned) - len(records)
