"""Intake's SQL: accept a message once per (channel, channel message id), with its event in the outbox."""

from __future__ import annotations

import asyncpg

from services.runtime.db import add_to_outbox, claim_message
from services.runtime.kafka import Record

CONSUMER = "intake"


async def accept_once(pool: asyncpg.Pool, dedupe_key: str, record: Record) -> bool:
    """Queue ``record`` unless this message was accepted before; False for a duplicate."""
    async with pool.acquire() as conn, conn.transaction():
        if not await claim_message(conn, CONSUMER, dedupe_key):
            return False
        await add_to_outbox(conn, CONSUMER, [record])
        return True
