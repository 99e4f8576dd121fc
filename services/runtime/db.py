"""PostgreSQL: connection pool, migrations, and the two mechanisms every consumer shares.

- ``claim_message``: the idempotency record. A consumer inserts (consumer, message key) in the
  same transaction as its state change; a redelivered message finds its row and changes nothing.
- ``add_to_outbox``: events a state change emits are written in that same transaction and
  published afterwards by the relay (services.runtime.outbox).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from importlib import resources
from typing import TYPE_CHECKING, TypeAlias

import asyncpg

from services.runtime.errors import ConfigurationError, RetryableError
from services.runtime.kafka import Record

if TYPE_CHECKING:
    from asyncpg.pool import PoolConnectionProxy

    # What a pool hands out and what connect() returns; both serve every query here.
    DbConnection: TypeAlias = asyncpg.Connection[asyncpg.Record] | PoolConnectionProxy[asyncpg.Record]

log = logging.getLogger(__name__)

# Arbitrary but fixed: every process that migrates takes this advisory lock first.
MIGRATION_LOCK_KEY = 0x7061726C6579  # "parley"
OUTBOX_CHANNEL = "parley_outbox"


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def load_migrations() -> list[Migration]:
    """Migrations are ``NNNN_name.sql`` files in services/runtime/migrations, applied in order."""
    folder = resources.files("services.runtime").joinpath("migrations")
    found: list[Migration] = []
    for entry in folder.iterdir():
        if not entry.name.endswith(".sql"):
            continue
        number, _, rest = entry.name.partition("_")
        if not number.isdigit():
            raise ConfigurationError(f"migration file {entry.name} must start with a number")
        found.append(Migration(int(number), rest.removesuffix(".sql"), entry.read_text(encoding="utf-8")))
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise ConfigurationError(f"two migrations share a number: {versions}")
    return found


async def migrate(conn: DbConnection) -> list[str]:
    """Apply every migration not yet applied, each once, each in its own transaction.

    Safe for several processes at once: they queue on one advisory lock, and the later ones find
    the work done. A changed migration that was already applied is an error, not a silent skip.
    """
    applied_now: list[str] = []
    await conn.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK_KEY)
    try:
        await conn.execute(
            """CREATE TABLE IF NOT EXISTS schema_migrations (
                   version integer PRIMARY KEY,
                   name text NOT NULL,
                   checksum text NOT NULL,
                   applied_at timestamptz NOT NULL DEFAULT now())"""
        )
        applied = {
            row["version"]: row["checksum"]
            for row in await conn.fetch("SELECT version, checksum FROM schema_migrations")
        }
        for migration in load_migrations():
            if migration.version in applied:
                if applied[migration.version] != migration.checksum:
                    raise ConfigurationError(
                        f"migration {migration.version}_{migration.name} changed after it was applied; "
                        "add a new migration instead"
                    )
                continue
            async with conn.transaction():
                await conn.execute(migration.sql)
                await conn.execute(
                    "INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
                    migration.version,
                    migration.name,
                    migration.checksum,
                )
            applied_now.append(f"{migration.version:04d}_{migration.name}")
            log.info("migration applied", extra={"migration": applied_now[-1]})
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK_KEY)
    return applied_now


async def _init_connection(conn: DbConnection) -> None:
    await conn.set_type_codec("jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


async def connect_pool(url: str, *, min_size: int, max_size: int, timeout_seconds: float = 30.0) -> asyncpg.Pool:
    """Open a pool, waiting for the server to come up, then apply migrations."""
    deadline = asyncio.get_running_loop().time() + timeout_seconds
    while True:
        try:
            pool: asyncpg.Pool = await asyncpg.create_pool(
                url,
                min_size=min_size,
                max_size=max_size,
                init=_init_connection,
                # Short statements over batches: a misestimated cost (a queue table between vacuums) would
                # otherwise spend tens of milliseconds compiling a plan that runs for one.
                server_settings={"jit": "off"},
            )
            break
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            if asyncio.get_running_loop().time() > deadline:
                raise ConfigurationError(f"database unreachable after {timeout_seconds} s: {exc}") from exc
            await asyncio.sleep(0.5)
    async with pool.acquire() as conn:
        await migrate(conn)
    return pool


@asynccontextmanager
async def transaction(pool: asyncpg.Pool) -> AsyncIterator[DbConnection]:
    """A pooled connection inside a transaction.

    Failing to get the connection is never the record's fault (the database is restarting, full, or
    closed for maintenance), so it is raised as RetryableError: the record is retried, not dead-lettered.
    """
    try:
        connection = await pool.acquire()
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        raise RetryableError(f"no database connection: {type(exc).__name__}") from exc
    try:
        async with connection.transaction():
            yield connection
    finally:
        await pool.release(connection)


async def claim_message(conn: DbConnection, consumer: str, message_key: str) -> bool:
    """Record that ``consumer`` handled ``message_key``; False when it already had."""
    return message_key in await claim_messages(conn, consumer, [message_key])


async def claim_messages(conn: DbConnection, consumer: str, message_keys: list[str]) -> set[str]:
    """Record that ``consumer`` handled these keys; returns the ones it had not handled before."""
    rows = await conn.fetch(
        """INSERT INTO processed_messages (consumer, message_key)
           SELECT $1, key FROM unnest($2::text[]) AS key
           ON CONFLICT DO NOTHING RETURNING message_key""",
        consumer,
        message_keys,
    )
    return {row["message_key"] for row in rows}


def headers_to_json(headers: list[tuple[str, bytes]]) -> list[list[str]]:
    return [[name, value.decode("utf-8", "backslashreplace")] for name, value in headers]


async def add_to_outbox(conn: DbConnection, source: str, records: list[Record]) -> None:
    """Queue records for publication, inside the caller's transaction."""
    if not records:
        return
    # One statement for the whole batch (a row at a time cost the database a round of work per record);
    # ORDINALITY keeps the ids in the order the records were given, which is the order they are published.
    await conn.execute(
        """INSERT INTO outbox (source, topic, key, value, headers)
           SELECT $1, r.topic, r.key, r.value, r.headers::jsonb
           FROM unnest($2::text[], $3::bytea[], $4::bytea[], $5::text[]) WITH ORDINALITY
                AS r(topic, key, value, headers, position)
           ORDER BY r.position""",
        source,
        [r.topic for r in records],
        [r.key for r in records],
        [r.value for r in records],
        [json.dumps(headers_to_json(r.headers)) for r in records],
    )
    # Delivered at commit: wakes the relay without waiting for its next poll.
    await conn.execute("SELECT pg_notify($1, $2)", OUTBOX_CHANNEL, source)


def database_named(server_url: str, name: str) -> str:
    """The same server URL, naming another database (host:port and socket URLs alike)."""
    scheme, _, rest = server_url.partition("://")
    authority, slash, path_and_query = rest.partition("/")
    _, question, query = path_and_query.partition("?")
    return f"{scheme}://{authority}/{name}{question}{query}" if slash else f"{server_url}/{name}"


@asynccontextmanager
async def scratch_database(server_url: str, label: str) -> AsyncIterator[str]:
    """A database of its own on ``server_url`` for a benchmark, dropped afterwards; yields its URL."""
    name = f"parley_bench_{label}_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(server_url)
    await admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield database_named(server_url, name)
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()
