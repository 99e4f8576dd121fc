"""Migrations against a real PostgreSQL: ordered, once each, safe when two processes race."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from services.runtime.db import load_migrations, migrate
from services.runtime.errors import ConfigurationError

pytestmark = pytest.mark.integration


async def test_two_processes_migrating_at_once_apply_each_migration_once(database_url: str) -> None:
    first, second = await asyncpg.connect(database_url), await asyncpg.connect(database_url)
    try:
        applied = await asyncio.gather(migrate(first), migrate(second))
        expected = [f"{m.version:04d}_{m.name}" for m in load_migrations()]
        assert sorted(applied, key=len) == [[], expected], "one applies everything, the other finds it done"
        rows = await first.fetch("SELECT version FROM schema_migrations ORDER BY version")
        assert [row["version"] for row in rows] == [m.version for m in load_migrations()]
        assert await migrate(first) == []
    finally:
        await first.close()
        await second.close()


async def test_a_migration_changed_after_it_ran_is_refused(database_url: str) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        await migrate(conn)
        await conn.execute("UPDATE schema_migrations SET checksum = 'edited' WHERE version = 1")
        with pytest.raises(ConfigurationError, match="changed after it was applied"):
            await migrate(conn)
    finally:
        await conn.close()
