"""A real intake worker's /metrics, /healthz and /readyz, through the real broker and database.

Counts on /metrics must match what was sent (and what the output topics hold); readiness must
follow the partition assignment and the database; consumer lag must show records waiting.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import asyncpg
import pytest
from aiokafka import AIOKafkaProducer
from prometheus_client.parser import text_string_to_metric_families

from schemas import topics
from schemas.channels import Channel
from tests.integration.conftest import Pipeline, read_topic
from tests.samples import encode, raw_message

pytestmark = pytest.mark.integration

KILL_SESSIONS = "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Probe:
    status: int
    body: dict[str, Any]


class Worker:
    """Scrapes one worker's HTTP endpoints."""

    def __init__(self, session: aiohttp.ClientSession, port: int) -> None:
        self._session = session
        self._base = f"http://127.0.0.1:{port}"

    async def probe(self, path: str) -> Probe | None:
        """None while nothing listens yet."""
        try:
            async with self._session.get(self._base + path, timeout=aiohttp.ClientTimeout(total=5)) as response:
                return Probe(response.status, await response.json())
        except (aiohttp.ClientConnectionError, TimeoutError):
            return None

    async def metrics(self) -> list[tuple[str, dict[str, str], float]]:
        async with self._session.get(self._base + "/metrics", timeout=aiohttp.ClientTimeout(total=10)) as response:
            assert response.status == 200
            assert response.headers["Content-Type"].startswith("text/plain")
            text = await response.text()
        return [
            (sample.name, sample.labels, sample.value)
            for family in text_string_to_metric_families(text)
            for sample in family.samples
        ]

    async def total(self, name: str, **labels: str) -> float:
        return sum(
            value
            for sample_name, sample_labels, value in await self.metrics()
            if sample_name == name and all(sample_labels.get(k) == v for k, v in labels.items())
        )

    async def wait_for(self, name: str, expected: float, timeout_seconds: float = 60.0, **labels: str) -> float:
        deadline = time.monotonic() + timeout_seconds
        value = await self.total(name, **labels)
        while value != expected and time.monotonic() < deadline:
            await asyncio.sleep(0.3)
            value = await self.total(name, **labels)
        return value

    async def wait_for_probe(self, path: str, status: int, timeout_seconds: float = 60.0) -> list[Probe | None]:
        """Every answer until one has ``status`` (the last); fails if none does in time."""
        seen: list[Probe | None] = []
        deadline = time.monotonic() + timeout_seconds
        while time.monotonic() < deadline:
            answer = await self.probe(path)
            seen.append(answer)
            if answer is not None and answer.status == status:
                return seen
            await asyncio.sleep(0.1)
        raise AssertionError(f"{path} never answered {status}; last answers: {seen[-3:]}")


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


def start_intake(pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch) -> int:
    port = free_port()
    monkeypatch.setenv("PARLEY_HTTP_PORT", str(port))  # Pipeline.env() passes the test's environment on
    pipeline.start("intake")
    return port


async def test_metrics_count_what_intake_handled_and_probes_follow_its_start(
    pipeline: Pipeline, producer: AIOKafkaProducer, session: aiohttp.ClientSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    worker = Worker(session, start_intake(pipeline, monkeypatch))
    live = await worker.wait_for_probe("/healthz", 200)
    ready_answers = await worker.wait_for_probe("/readyz", 200)
    not_ready = [a for a in ready_answers if a is not None and a.status == 503]
    assert not_ready, "readiness must say no while the worker starts (topics, migrations, group join)"
    assert not_ready[0].body["checks"]["assignment"] is False
    ready = ready_answers[-1]
    assert ready is not None
    assert ready.body == {
        "status": "ok",
        "checks": {"started": True, "assignment": True, "partitions": 36, "database": True, "producer": True},
    }, "one intake worker holds all 6 partitions of the 6 raw topics"
    assert live[-1] is not None
    assert live[-1].body["status"] == "ok"

    valid_per_channel = 4
    for channel in Channel:
        for n in range(valid_per_channel):
            await producer.send_and_wait(
                pipeline.topic(topics.raw_topic(channel)), encode(raw_message(channel, f"{channel.value}-{n}"))
            )
    # A channel's retry of a message already sent: taken in, dropped as a repeat, not published again.
    await producer.send_and_wait(pipeline.topic("feedback.raw.app"), encode(raw_message(Channel.APP, "app-0")))
    bad = {
        "invalid_json": (Channel.APP, b'{"message_id": '),
        "schema_violation": (Channel.HOTLINE, encode(raw_message(Channel.HOTLINE, "h-bad", sent_at=12345))),
        "empty_text": (Channel.BRANCH, encode(raw_message(Channel.BRANCH, "b-empty", text=" "))),
    }
    for channel, value in bad.values():
        await producer.send_and_wait(pipeline.topic(topics.raw_topic(channel)), value)
    valid = valid_per_channel * len(Channel)
    taken = valid + 1 + len(bad)

    assert await worker.wait_for("parley_events_in_total", taken, processor="intake") == taken
    assert await worker.total("parley_events_in_total", topic="feedback.raw.app") == valid_per_channel + 1 + 1
    assert await worker.wait_for("parley_events_out_total", valid, topic="feedback.received") == valid
    assert await worker.wait_for("parley_events_out_total", len(bad), topic="feedback.rejected") == len(bad)
    for reason in bad:
        assert await worker.total("parley_dead_letters_total", processor="intake", reason=reason) == 1, reason
    assert await worker.total("parley_dead_letters_total") == len(bad)
    assert await worker.total("parley_events_failed_total", topic="feedback.raw.hotline") == 1
    assert await worker.total("parley_events_failed_total") == len(bad)
    assert await worker.total("parley_batch_records_sum", processor="intake") == taken
    assert await worker.total("parley_processing_seconds_count", processor="intake") >= 1
    assert await worker.total("parley_retries_total") == 0
    # Committed as each batch is handled: then nothing is left behind.
    assert await worker.wait_for("parley_consumer_lag", 0, processor="intake") == 0
    assert await worker.total("parley_assigned_partitions", processor="intake") == 36
    assert await worker.total("parley_outbox_backlog", source="intake") == 0
    assert await worker.total("parley_worker_ready", processor="intake") == 1
    assert await worker.total("process_resident_memory_bytes") > 0

    # What the counters say is what the topics hold.
    received = await read_topic(pipeline.bootstrap_servers, pipeline.topic(topics.FEEDBACK_RECEIVED), at_least=valid)
    rejected = await read_topic(pipeline.bootstrap_servers, pipeline.topic(topics.FEEDBACK_REJECTED), at_least=len(bad))
    print(f"metrics: {taken} in, {len(received)} received, {len(rejected)} rejected; topics agree")
    assert len(received) == valid
    assert len(rejected) == len(bad)
    # Labels carry logical topic names, never the deployment's prefix.
    assert not any(pipeline.prefix in labels.get("topic", "") for _, labels, _ in await worker.metrics())


async def _close_database(admin: asyncpg.Connection, database: str) -> None:
    await admin.execute(f'ALTER DATABASE "{database}" WITH ALLOW_CONNECTIONS false')
    await admin.fetch(KILL_SESSIONS, database)


async def test_readiness_follows_the_database_and_lag_shows_what_waits(
    pipeline: Pipeline,
    producer: AIOKafkaProducer,
    session: aiohttp.ClientSession,
    monkeypatch: pytest.MonkeyPatch,
    database_server_url: str,
    database_url: str,
) -> None:
    worker = Worker(session, start_intake(pipeline, monkeypatch))
    await worker.wait_for_probe("/readyz", 200)
    warm_up = 5
    for n in range(warm_up):
        await producer.send_and_wait(pipeline.topic("feedback.raw.app"), encode(raw_message(Channel.APP, f"w{n}")))
    assert await worker.wait_for("parley_events_out_total", warm_up, topic="feedback.received") == warm_up
    assert await worker.wait_for("parley_consumer_lag", 0, processor="intake") == 0

    database = urlsplit(database_url).path.lstrip("/")
    admin = await asyncpg.connect(database_server_url)
    waiting = 40
    try:
        await _close_database(admin, database)
        for n in range(waiting):
            await producer.send_and_wait(pipeline.topic("feedback.raw.app"), encode(raw_message(Channel.APP, f"o{n}")))
        outage = (await worker.wait_for_probe("/readyz", 503, timeout_seconds=30))[-1]
        assert outage is not None
        assert outage.body["checks"]["database"] is False
        assert outage.body["checks"]["assignment"] is True
        alive = await worker.probe("/healthz")
        assert alive is not None
        assert alive.status == 200, "a worker waiting for its database is alive"
        # The records fetched but not handled show as lag (aiokafka stops fetching a partition while records of it
        # wait in its buffer, so the lag counts what was fetched: at most what waits), and the batch ages.
        deadline = time.monotonic() + 30
        while (lag := await worker.total("parley_consumer_lag", processor="intake")) == 0:
            assert time.monotonic() < deadline, "records waiting for the database must show as lag"
            await asyncio.sleep(0.3)
        assert 0 < lag <= waiting
        while (batch_age := await worker.total("parley_oldest_batch_age_seconds", processor="intake")) < 1:
            assert time.monotonic() < deadline, "the batch held up by the outage must age"
            await asyncio.sleep(0.3)
        assert await worker.total("parley_worker_ready", processor="intake") == 0
        deadline = time.monotonic() + 30
        while await worker.total("parley_retries_total", processor="intake", operation="handle") == 0:
            assert time.monotonic() < deadline, "the stuck batch must be retried"
            await asyncio.sleep(0.3)
        await admin.fetch(KILL_SESSIONS, database)
    finally:
        await admin.execute(f'ALTER DATABASE "{database}" WITH ALLOW_CONNECTIONS true')
        await admin.close()

    await worker.wait_for_probe("/readyz", 200, timeout_seconds=60)
    total = warm_up + waiting
    out = await worker.wait_for("parley_events_out_total", total, timeout_seconds=90, topic="feedback.received")
    assert out == total
    assert await worker.wait_for("parley_consumer_lag", 0, processor="intake") == 0
    assert await worker.total("parley_dead_letters_total") == 0, "an outage is transient: nothing dead-lettered"
    retries = await worker.total("parley_retries_total", processor="intake", operation="handle")
    assert await worker.total("parley_oldest_batch_age_seconds", processor="intake") < batch_age
    print(
        f"outage: readiness 503 with database false, lag {lag:.0f} of {waiting} waiting, batch {batch_age:.1f} s old, "
        f"{retries:.0f} retries; then {total} out, lag 0"
    )
