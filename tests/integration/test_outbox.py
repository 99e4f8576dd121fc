"""The outbox relay on a real database and broker: it scans above a floor, and a late commit still leaves."""

from __future__ import annotations

import asyncio
import uuid

import asyncpg

from services.runtime.db import connect_pool
from services.runtime.kafka import ensure_topics, new_producer
from services.runtime.outbox import OutboxRelay
from services.runtime.settings import Settings
from tests.integration.conftest import read_topic

SOURCE = "outbox-test"
LATE_COMMIT_SECONDS = 0.3
FULL_SCAN_SECONDS = 2.0


async def _write(conn: asyncpg.Connection, topic: str, value: bytes) -> int:
    row_id: int = await conn.fetchval(
        "INSERT INTO outbox (source, topic, key, value) VALUES ($1, $2, $3, $4) RETURNING id",
        SOURCE,
        topic,
        b"k",
        value,
    )
    return row_id


async def test_a_row_committed_late_below_the_floor_is_published_by_the_next_full_scan(
    bootstrap_servers: str, database_url: str
) -> None:
    settings = Settings(kafka_bootstrap_servers=bootstrap_servers)
    topic = f"outbox-test-{uuid.uuid4().hex[:8]}"
    await ensure_topics(settings, bootstrap_servers, [topic])
    pool = await connect_pool(database_url, min_size=1, max_size=3)
    producer = new_producer(settings, bootstrap_servers)
    await producer.start()
    relay = OutboxRelay(
        pool,
        producer,
        SOURCE,
        batch_size=100,
        poll_interval_seconds=0.1,
        max_backoff_seconds=1.0,
        late_commit_seconds=LATE_COMMIT_SECONDS,
        full_scan_seconds=FULL_SCAN_SECONDS,
    )
    slow = await asyncpg.connect(database_url)
    try:
        late_transaction = slow.transaction()
        await late_transaction.start()
        late_id = await _write(slow, topic, b"late")  # the lowest id, not committed yet
        async with pool.acquire() as conn:
            early_id = await _write(conn, topic, b"early")
        assert late_id < early_id

        assert await relay.publish_batch() == 1  # the first scan is a full one: only the committed row shows
        await asyncio.sleep(LATE_COMMIT_SECONDS + 0.1)
        await late_transaction.commit()
        async with pool.acquire() as conn:
            await _write(conn, topic, b"after")
        assert await relay.publish_batch() == 1, "above the floor only: the late row waits for the full scan"
        assert await pool.fetchval("SELECT count(*) FROM outbox") == 1

        await asyncio.sleep(FULL_SCAN_SECONDS)
        assert await relay.publish_batch() == 1, "the full scan finds the late row"
        assert await pool.fetchval("SELECT count(*) FROM outbox") == 0
    finally:
        await slow.close()
        await producer.stop()
        await pool.close()

    published = await read_topic(bootstrap_servers, topic, at_least=3)
    assert sorted(record.value for record in published) == [b"after", b"early", b"late"]
    print(f"outbox: {len(published)} rows published, the late commit by the full scan")
