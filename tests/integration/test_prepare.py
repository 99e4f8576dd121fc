"""deploy/prepare.py, the one-shot step of the Compose stack and the Kubernetes init containers, on a real broker."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from pathlib import Path

import asyncpg
import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from schemas import topics

pytestmark = pytest.mark.integration

PREPARE = Path(__file__).resolve().parents[2] / "deploy" / "prepare.py"


def run_prepare(bootstrap_servers: str, database_url: str, prefix: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap_servers,
        "DATABASE_URL": database_url,
        "PARLEY_KAFKA_TOPIC_PREFIX": prefix,
    }
    return subprocess.run(
        [sys.executable, str(PREPARE), "--max-replication-factor", "1"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


async def test_prepare_creates_every_topic_as_the_file_says_and_migrates(
    bootstrap_servers: str, database_url: str, db: asyncpg.Connection
) -> None:
    prefix = f"prep-{uuid.uuid4().hex[:6]}."
    first = await asyncio.to_thread(run_prepare, bootstrap_servers, database_url, prefix)
    assert first.returncode == 0, first.stderr
    assert f"Topics: {len(topics.ALL_TOPICS)} created, 0 already there, 0 differing." in first.stdout
    assert "Database: migrations applied." in first.stdout

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers)
    await admin.start()
    try:
        described = await admin.describe_topics([prefix + name for name in topics.ALL_TOPICS])
        partitions = {(e.get("topic") or e.get("name")): len(e["partitions"]) for e in described}
        assert partitions == {prefix + name: 12 for name in topics.ALL_TOPICS}
        responses = await admin.describe_configs(
            [
                ConfigResource(ConfigResourceType.TOPIC, prefix + "feedback.raw.app"),
                ConfigResource(ConfigResourceType.TOPIC, prefix + "agent.actions"),
            ]
        )
        configs = {
            resource[3]: {entry[0]: entry[1] for entry in resource[4]}
            for response in responses
            for resource in response.resources
        }
    finally:
        await admin.close()
    assert configs[prefix + "feedback.raw.app"]["retention.ms"] == "604800000"
    assert configs[prefix + "feedback.raw.app"]["max.message.bytes"] == "10485760"
    assert configs[prefix + "agent.actions"]["retention.ms"] == "7776000000"
    assert await db.fetchval("SELECT count(*) FROM schema_migrations") >= 3

    again = await asyncio.to_thread(run_prepare, bootstrap_servers, database_url, prefix)
    assert again.returncode == 0, again.stderr
    assert f"Topics: 0 created, {len(topics.ALL_TOPICS)} already there, 0 differing." in again.stdout
    print(first.stdout + again.stdout)


async def test_prepare_reports_a_topic_that_differs_from_the_file(bootstrap_servers: str, database_url: str) -> None:
    prefix = f"prep-{uuid.uuid4().hex[:6]}."
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(prefix + topics.CASE_TRIAGED, num_partitions=3, replication_factor=1)])
    finally:
        await admin.close()
    result = await asyncio.to_thread(run_prepare, bootstrap_servers, database_url, prefix)
    assert result.returncode == 1
    assert f"topic {prefix}case.triaged has 3 partitions; 12 in the topics file" in result.stdout
