"""The personal-data vault's SQL: store originals at intake, read them back only with an audit row."""

from __future__ import annotations

from typing import TYPE_CHECKING

import asyncpg

if TYPE_CHECKING:
    from services.runtime.db import DbConnection


async def keep_originals(conn: DbConnection, entries: list[tuple[str, str, str]]) -> None:
    """(token, kind, value) rows, in the caller's transaction; a token seen before is kept as it was."""
    if entries:
        await conn.execute(
            """INSERT INTO pii.vault (token, kind, value)
               SELECT * FROM unnest($1::text[], $2::text[], $3::text[]) ON CONFLICT (token) DO NOTHING""",
            [token for token, _, _ in entries],
            [kind for _, kind, _ in entries],
            [value for _, _, value in entries],
        )


async def keep_rejected_original(conn: DbConnection, ref: str, source: str, value: bytes) -> None:
    await conn.execute(
        "INSERT INTO pii.rejected_original (ref, source, value) VALUES ($1, $2, $3) ON CONFLICT (ref) DO NOTHING",
        ref,
        source,
        value,
    )


async def reveal(pool: asyncpg.Pool, token: str, *, reader: str, purpose: str) -> str | None:
    """The original behind a token; the read is logged (who, why, found or not) by the database."""
    value: str | None = await pool.fetchval("SELECT pii.reveal($1, $2, $3)", token, reader, purpose)
    return value


async def reveal_rejected(pool: asyncpg.Pool, ref: str, *, reader: str, purpose: str) -> bytes | None:
    value: bytes | None = await pool.fetchval("SELECT pii.reveal_rejected($1, $2, $3)", ref, reader, purpose)
    return value
