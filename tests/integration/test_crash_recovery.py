"""Kill each processor in turn (SIGKILL, no goodbye) while traffic flows at a steady rate, restart it:
every message ends in exactly one case change, nothing lost, nothing doubled."""

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

PROCESSORS = ("intake", "triage", "routing", "tracker", "planner", "sla")
RATE = 100  # messages per second, steady
SECONDS_BETWEEN_KILLS = 4.0


async def _publish_steadily(producer: AIOKafkaProducer, pipeline: Pipeline, total: int) -> None:
    channels = list(Channel)
    sends = []
    for n in range(total):
        channel = channels[n % len(channels)]
        # One customer per message: each message is its own case, so "one case change each" is countable.
        body = raw_message(channel, f"k{n:05d}", customer_id=f"CK{n:05d}")
        sends.append(await producer.send(pipeline.topic(topics.raw_topic(channel)), encode(body)))
        if n % 10 == 9:
            await asyncio.sleep(10 / RATE)
    await asyncio.gather(*sends)


async def test_killing_each_processor_in_turn_loses_and_doubles_nothing(
    pipeline: Pipeline, producer: AIOKafkaProducer, db: asyncpg.Connection
) -> None:
    for processor in PROCESSORS:
        pipeline.start(processor, f"{processor}-1")
    total = int(RATE * SECONDS_BETWEEN_KILLS * (len(PROCESSORS) + 2))
    publishing = asyncio.ensure_future(_publish_steadily(producer, pipeline, total))

    assert await wait_for_rows(db, "SELECT count(*) FROM cases", 50) >= 50, "the pipeline must be flowing first"
    killed_mid_stream = []
    for processor in PROCESSORS:
        pipeline.kill(f"{processor}-1")
        killed_mid_stream.append((processor, await db.fetchval("SELECT count(*) FROM cases")))
        await asyncio.sleep(0.5)
        pipeline.start(processor, f"{processor}-2")
        await asyncio.sleep(SECONDS_BETWEEN_KILLS - 0.5)
        pipeline.processes[f"{processor}-1"] = pipeline.processes.pop(f"{processor}-2")
    await publishing
    print(f"\nkilled and restarted, with the case count at each kill: {killed_mid_stream}")
    assert killed_mid_stream[0][1] < total, "the kills must land mid-stream for this test to mean anything"

    assert await wait_for_rows(db, "SELECT count(*) FROM cases", total, timeout_seconds=180) == total
    await asyncio.sleep(3)  # anything doubled would land by now
    counts = {
        "cases": await db.fetchval("SELECT count(*) FROM cases"),
        "feedback on cases": await db.fetchval("SELECT count(*) FROM tracker.case_feedback"),
        "opened events": await db.fetchval("SELECT count(*) FROM case_events WHERE event_type LIKE '%opened%'"),
        "intake claims": await db.fetchval("SELECT count(*) FROM processed_messages WHERE consumer = 'intake'"),
    }
    print(f"{total:,} messages: {counts}")
    assert counts == {"cases": total, "feedback on cases": total, "opened events": total, "intake claims": total}
    for _ in range(150):
        if await db.fetchval("SELECT count(*) FROM outbox") == 0:
            break
        await asyncio.sleep(0.2)
    assert await db.fetchval("SELECT count(*) FROM outbox") == 0, "every relay published everything"
    # A topic may carry a record twice (at-least-once relay): each case appears under one event id.
    routed = []
    for topic in topics.ROUTED_TOPICS:
        routed += await read_topic(pipeline.bootstrap_servers, pipeline.topic(topic), at_least=0, settle_seconds=0.3)
    case_ids = {json.loads(record.value)["data"]["case_id"] for record in routed}
    assert len(case_ids) == total
    for processor in PROCESSORS:
        dead = await read_topic(
            pipeline.bootstrap_servers,
            pipeline.topic(topics.dead_letter_topic(processor) if processor != "intake" else topics.FEEDBACK_REJECTED),
            at_least=0,
            settle_seconds=0.3,
        )
        assert dead == [], f"{processor}: a crash is not a reason to dead-letter anything"
    for processor in PROCESSORS:
        assert pipeline.stop(f"{processor}-1") == 0, f"{processor}: SIGTERM stops a worker cleanly"
