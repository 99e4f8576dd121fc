"""The database closes for a few seconds while records flow: workers retry, nothing is lost or dead-lettered."""

from __future__ import annotations

import asyncio
from urllib.parse import urlsplit

import asyncpg
import pytest
from aiokafka import AIOKafkaProducer

from schemas import topics
from schemas.channels import Channel
from tests.integration.conftest import Pipeline, read_topic, wait_for_rows
from tests.samples import encode, raw_message

pytestmark = pytest.mark.integration

WARM_UP = 20
MESSAGES = 400
OUTAGE_SECONDS = 10.0
PROCESSORS = ("intake", "triage", "routing", "tracker", "planner", "sla")
KILL_SESSIONS = "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()"


async def _outage(admin: asyncpg.Connection, database: str, seconds: float) -> int:
    """Close the database to new connections and kill its sessions for ``seconds``, as maintenance would."""
    await admin.execute(f'ALTER DATABASE "{database}" WITH ALLOW_CONNECTIONS false')
    killed = 0
    try:
        deadline = asyncio.get_running_loop().time() + seconds
        while asyncio.get_running_loop().time() < deadline:
            killed += len(await admin.fetch(KILL_SESSIONS, database))
            await asyncio.sleep(0.2)
    finally:
        await admin.execute(f'ALTER DATABASE "{database}" WITH ALLOW_CONNECTIONS true')
    return killed


async def test_workers_retry_through_a_database_outage(
    pipeline: Pipeline, producer: AIOKafkaProducer, database_server_url: str, database_url: str
) -> None:
    for processor in PROCESSORS:
        pipeline.start(processor)
    database = urlsplit(database_url).path.lstrip("/")
    admin = await asyncpg.connect(database_server_url)
    try:
        channels = list(Channel)
        for n in range(WARM_UP):  # the workers are consuming before the outage starts
            await producer.send_and_wait(
                pipeline.topic(topics.raw_topic(Channel.APP)), encode(raw_message(Channel.APP, f"w{n:02d}"))
            )
        db = await asyncpg.connect(database_url)
        assert await wait_for_rows(db, "SELECT count(*) FROM cases", WARM_UP) == WARM_UP
        await db.close()
        sends = []
        for n in range(MESSAGES):
            channel = channels[n % len(channels)]
            sends.append(
                await producer.send(
                    pipeline.topic(topics.raw_topic(channel)), encode(raw_message(channel, f"o{n:04d}"))
                )
            )
        killed = await _outage(admin, database, seconds=OUTAGE_SECONDS)
        await asyncio.gather(*sends)
        assert killed > 0, "the outage must have hit the workers' connections"
    finally:
        await admin.close()
    db = await asyncpg.connect(database_url)
    try:
        total = WARM_UP + MESSAGES
        assert await wait_for_rows(db, "SELECT count(*) FROM cases", total, timeout_seconds=120) == total
        await asyncio.sleep(1)
        assert await db.fetchval("SELECT count(*) FROM cases") == total
    finally:
        await db.close()
    for name in PROCESSORS:
        assert pipeline.processes[name].poll() is None, f"{name} must survive the outage"
    dead = []
    for name in PROCESSORS[1:]:
        dead += await read_topic(
            pipeline.bootstrap_servers, pipeline.topic(topics.dead_letter_topic(name)), at_least=0, settle_seconds=0.3
        )
    rejected = await read_topic(
        pipeline.bootstrap_servers, pipeline.topic(topics.FEEDBACK_REJECTED), at_least=0, settle_seconds=0.5
    )
    assert dead == [], "an outage is transient: nothing may be dead-lettered for it"
    assert rejected == []
    print(f"\n{total} messages through a {OUTAGE_SECONDS:.0f} s outage ({killed} sessions cut): all {total} cases")
    logs = "".join(pipeline.log_text(name) for name in PROCESSORS)
    assert "transient failure; retrying the same records" in logs
