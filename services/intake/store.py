"""Intake's SQL: accept each message once per (channel, channel message id), its event in the outbox."""

from __future__ import annotations

import asyncpg

from services.runtime.db import add_to_outbox, claim_messages
from services.runtime.kafka import Record

CONSUMER = "intake"


async def accept_once(pool: asyncpg.Pool, accepted: list[tuple[str, Record]]) -> int:
    """Queue each (dedupe key, record) whose message was not accepted before, in one transaction.

    Returns how many were new; the rest were repeats (also within ``accepted`` itself).
    """
    if not accepted:
        return 0
    async with pool.acquire() as conn, conn.transaction():
        new_keys = await claim_messages(conn, CONSUMER, [key for key, _ in accepted])
        records = []
        for key, record in accepted:
            if key in new_keys:
                new_keys.discard(key)  # a repeat inside the same batch counts once
                records.append(record)
        await add_to_outbox(conn, CONSUMER, records)
        return len(records)
