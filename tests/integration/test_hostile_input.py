"""10,000 hostile or malformed inputs at intake: every one rejected with a reason or carried verbatim,
no worker down, no table touched by what the text says."""

from __future__ import annotations

import json
from collections import Counter

import asyncpg
from aiokafka import AIOKafkaProducer

from schemas import topics
from schemas.feedback import RejectReason, rejection_header
from tests.hostile import hostile_inputs
from tests.integration.conftest import Pipeline, read_topic

INPUTS = 10_000


async def test_hostile_and_malformed_input_is_rejected_with_reasons_and_never_executed(
    pipeline: Pipeline, producer: AIOKafkaProducer, db: asyncpg.Connection
) -> None:
    inputs = hostile_inputs(INPUTS)
    expected_accepted = [item for item in inputs if item.should_accept]
    expected_rejected = len(inputs) - len(expected_accepted)
    intake = pipeline.start("intake")
    for item in inputs:
        await producer.send(pipeline.topic(topics.raw_topic(item.channel)), item.value)
    await producer.flush()

    rejected = await read_topic(
        pipeline.bootstrap_servers,
        pipeline.topic(topics.FEEDBACK_REJECTED),
        at_least=expected_rejected,
        timeout_seconds=240,
        settle_seconds=3,
    )
    accepted = await read_topic(
        pipeline.bootstrap_servers,
        pipeline.topic(topics.FEEDBACK_RECEIVED),
        at_least=len(expected_accepted),
        timeout_seconds=120,
        settle_seconds=2,
    )
    assert intake.poll() is None, pipeline.log_text("intake")[-3000:]

    reasons = Counter(dict(record.headers)[rejection_header("reason")].decode() for record in rejected)
    print(f"\n{len(inputs):,} inputs: {len(accepted):,} accepted, {len(rejected):,} rejected; reasons {dict(reasons)}")
    assert len(rejected) == expected_rejected
    assert len(accepted) == len(expected_accepted)
    assert set(reasons) <= {reason.value for reason in RejectReason}
    assert RejectReason.UNHANDLED_ERROR.value not in reasons  # every one was understood, none hit a bug

    # The hostile-but-valid texts arrive verbatim: carried as data, never interpreted.
    # (U+0000 aside: PostgreSQL cannot store it, so intake drops it; the raw topic keeps the original.)
    sent_texts = Counter((item.text or "").replace("\x00", "") for item in expected_accepted)
    arrived_texts = Counter(json.loads(record.value)["data"]["text"] for record in accepted)
    assert arrived_texts == sent_texts

    # Nothing the texts said was executed: every table is there and holds only what intake wrote.
    tables = {
        row["name"]
        for row in await db.fetch(
            "SELECT schemaname || '.' || tablename AS name FROM pg_tables WHERE schemaname IN ('public', 'pii')"
        )
    }
    assert {"public.cases", "public.case_events", "public.processed_messages", "public.outbox"} <= tables
    claimed = await db.fetchval("SELECT count(*) FROM processed_messages WHERE consumer = 'intake'")
    assert claimed == len(expected_accepted)
    sleeping = "SELECT count(*) FROM pg_stat_activity WHERE query ILIKE '%pg_sleep%' AND pid <> pg_backend_pid()"
    assert not await db.fetchval(sleeping)
