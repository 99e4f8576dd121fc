"""Intake's SQL: accept each message once per (channel, channel message id), its event in the outbox."""

from __future__ import annotations

import asyncpg

from services.intake.logic import Accepted
from services.privacy.store import keep_originals, keep_rejected_original
from services.runtime.db import add_to_outbox, claim_messages, transaction
from services.runtime.kafka import Record

CONSUMER = "intake"


async def accept_once(pool: asyncpg.Pool, accepted: list[tuple[Accepted, Record]]) -> int:
    """Queue each accepted message not accepted before, with its personal data into the vault,
    in one transaction. Returns how many were new; the rest were repeats (also within the batch).
    """
    if not accepted:
        return 0
    async with transaction(pool) as conn:
        new_keys = await claim_messages(conn, CONSUMER, [outcome.dedupe_key for outcome, _ in accepted])
        records = []
        originals: list[tuple[str, str, str]] = []
        for outcome, record in accepted:
            if outcome.dedupe_key in new_keys:
                new_keys.discard(outcome.dedupe_key)  # a repeat inside the same batch counts once
                records.append(record)
                originals.extend(outcome.originals)
        await keep_originals(conn, originals)
        await add_to_outbox(conn, CONSUMER, records)
        return len(records)


async def keep_rejected(pool: asyncpg.Pool, rejected: list[tuple[str, str, bytes]]) -> None:
    """(ref, source, original bytes) of rejected records that held personal data."""
    if not rejected:
        return
    async with transaction(pool) as conn:
        for ref, source, value in rejected:
            await keep_rejected_original(conn, ref, source, value)
