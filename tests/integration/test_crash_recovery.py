"""Kill workers mid-stream (SIGKILL, no goodbye) and restart them: nothing lost, nothing doubled."""

from __future__ import annotations

import asyncio
import json

import asyncpg
import pytest
from aiokafka import AIOKafkaProducer

from schemas import topics
from schemas.channels import Channel
from tests.integration.conftest import Pipeline, read_topic, wait_for_rows
from tests.samples import encode, raw_message

pytestmark = pytest.mark.integration

MESSAGES = 3000


async def test_killed_workers_lose_and_double_nothing(
    pipeline: Pipeline, producer: AIOKafkaProducer, db: asyncpg.Connection
) -> None:
    pipeline.start("intake", "intake-a")
    pipeline.start("tracker", "tracker-a")
    channels = list(Channel)
    deliveries = []
    for n in range(MESSAGES):
        channel = channels[n % len(channels)]
        body = raw_message(channel, f"m{n:05d}", customer_id=f"C{n % 97:03d}")
        deliveries.append(await producer.send(pipeline.topic(topics.raw_topic(channel)), encode(body)))
    await asyncio.gather(*deliveries)

    # Let both stages get going, then pull the plug on each while records are in flight.
    assert await wait_for_rows(db, "SELECT count(*) FROM cases", 300) >= 300
    pipeline.kill("tracker-a")
    pipeline.kill("intake-a")
    in_the_middle = await db.fetchval("SELECT count(*) FROM cases")
    assert in_the_middle < MESSAGES, "the kill must land mid-stream for this test to mean anything"
    pipeline.start("intake", "intake-b")
    pipeline.start("tracker", "tracker-b")

    assert await wait_for_rows(db, "SELECT count(*) FROM cases", MESSAGES, timeout_seconds=120) == MESSAGES
    await asyncio.sleep(2)  # anything doubled would land by now
    assert await db.fetchval("SELECT count(*) FROM cases") == MESSAGES
    assert await db.fetchval("SELECT count(DISTINCT customer_ref) FROM cases") == 97
    assert await db.fetchval("SELECT count(*) FROM case_events") == 2 * MESSAGES
    assert await db.fetchval("SELECT count(*) FROM processed_messages WHERE consumer = 'intake'") == MESSAGES
    assert await db.fetchval("SELECT count(*) FROM processed_messages WHERE consumer = 'tracker'") == MESSAGES
    for _ in range(100):
        if await db.fetchval("SELECT count(*) FROM outbox") == 0:
            break
        await asyncio.sleep(0.2)
    assert await db.fetchval("SELECT count(*) FROM outbox") == 0, "the relay published everything"
    # The topic may carry a record twice (at-least-once relay); every case appears, under one event id.
    tracking = await read_topic(pipeline.bootstrap_servers, pipeline.topic(topics.CASE_TRACKING), at_least=MESSAGES)
    assert len({json.loads(r.value)["id"] for r in tracking}) == MESSAGES

    assert pipeline.stop("tracker-b") == 0, "SIGTERM stops a worker cleanly"
    assert pipeline.stop("intake-b") == 0
