"""Real parts for integration tests: one embedded broker per session, a fresh database per test.

The database server is the one ``DATABASE_URL`` names when set, else an embedded PostgreSQL in a
temporary directory. Each test gets its own database and its own topic prefix, so tests never see
each other's records or rows; processors run as real worker processes (``python -m services.X``).
"""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import asyncpg
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.structs import ConsumerRecord

from schemas import topics
from services.runtime.db import database_named
from services.runtime.embedded import die_with_parent, start_embedded_broker, start_embedded_database
from services.runtime.kafka import ensure_topics
from services.runtime.settings import Settings

pytestmark = pytest.mark.integration

_prefix_numbers = itertools.count(1)


@pytest.fixture(scope="session")
def bootstrap_servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    broker = start_embedded_broker(tmp_path_factory.mktemp("broker") / "broker.log")
    yield broker.bootstrap_servers
    broker.stop()


@pytest.fixture(scope="session")
def database_server_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    configured = os.environ.get("PARLEY_DATABASE_URL") or os.environ.get("DATABASE_URL")
    if configured:
        yield configured
        return
    database = start_embedded_database(tmp_path_factory.mktemp("pg") / "data", delete_on_stop=True)
    yield database.url
    database.stop()


@pytest.fixture
async def database_url(database_server_url: str) -> AsyncIterator[str]:
    name = f"parley_test_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(database_server_url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    yield database_named(database_server_url, name)
    admin = await asyncpg.connect(database_server_url)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(database_url)
    yield conn
    await conn.close()


@dataclass
class Pipeline:
    """Worker processes of one test, on its own topics and database."""

    bootstrap_servers: str
    database_url: str
    prefix: str
    work_dir: Path
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    logs: list[IO[bytes]] = field(default_factory=list)

    @property
    def settings(self) -> Settings:
        return Settings(kafka_bootstrap_servers=self.bootstrap_servers, kafka_topic_prefix=self.prefix)

    def topic(self, name: str) -> str:
        return f"{self.prefix}{name}"

    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "KAFKA_BOOTSTRAP_SERVERS": self.bootstrap_servers,
            "DATABASE_URL": self.database_url,
            "PARLEY_KAFKA_TOPIC_PREFIX": self.prefix,
            "PARLEY_DATA_DIR": str(self.work_dir / "data"),
            "PARLEY_LOG_FORMAT": "text",
        }

    def start(self, processor: str, name: str | None = None) -> subprocess.Popen[bytes]:
        name = name or processor
        log = (self.work_dir / f"{name}.log").open("ab")
        self.logs.append(log)
        process = subprocess.Popen(
            [sys.executable, "-m", f"services.{processor}"],
            env=self.env(),
            stdout=log,
            stderr=subprocess.STDOUT,
            preexec_fn=die_with_parent,
        )
        self.processes[name] = process
        return process

    def kill(self, name: str) -> None:
        process = self.processes.pop(name)
        process.send_signal(signal.SIGKILL)
        process.wait()

    def stop(self, name: str, timeout_seconds: float = 30.0) -> int:
        process = self.processes.pop(name)
        process.send_signal(signal.SIGTERM)
        return process.wait(timeout_seconds)

    def stop_all(self) -> None:
        for name in list(self.processes):
            try:
                self.stop(name)
            except subprocess.TimeoutExpired:
                self.kill(name)
        for log in self.logs:
            log.close()

    def log_text(self, name: str) -> str:
        return (self.work_dir / f"{name}.log").read_text(errors="replace")


@pytest.fixture
async def pipeline(bootstrap_servers: str, database_url: str, tmp_path: Path) -> AsyncIterator[Pipeline]:
    running = Pipeline(bootstrap_servers, database_url, f"t{next(_prefix_numbers)}-{uuid.uuid4().hex[:6]}.", tmp_path)
    await ensure_topics(running.settings, bootstrap_servers, topics.ALL_TOPICS)
    yield running
    await asyncio.to_thread(running.stop_all)


@pytest.fixture
async def producer(bootstrap_servers: str) -> AsyncIterator[AIOKafkaProducer]:
    client = AIOKafkaProducer(bootstrap_servers=bootstrap_servers, max_request_size=11 * 1024 * 1024, linger_ms=5)
    await client.start()
    yield client
    await client.stop()


async def read_topic(
    bootstrap_servers: str, topic: str, *, at_least: int, timeout_seconds: float = 60.0, settle_seconds: float = 1.0
) -> list[ConsumerRecord[bytes, bytes]]:
    """Every record of ``topic``, once ``at_least`` have arrived (then a short wait for any extra)."""
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap_servers,
        group_id=None,
        auto_offset_reset="earliest",
        max_partition_fetch_bytes=11 * 1024 * 1024,
    )
    await consumer.start()
    records: list[ConsumerRecord[bytes, bytes]] = []
    try:
        deadline = time.monotonic() + timeout_seconds
        settle_until: float | None = None
        while time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=300)
            for batch in batches.values():
                records.extend(batch)
            if len(records) >= at_least:
                settle_until = settle_until or time.monotonic() + settle_seconds
                if time.monotonic() >= settle_until:
                    break
    finally:
        await consumer.stop()
    return records


async def wait_for_rows(db: asyncpg.Connection, query: str, expected: int, timeout_seconds: float = 60.0) -> int:
    """Poll ``query`` (a count) until it reaches ``expected`` or the time is up; returns the last count."""
    deadline = time.monotonic() + timeout_seconds
    count = -1
    while time.monotonic() < deadline:
        try:
            count = await db.fetchval(query)
        except asyncpg.UndefinedTableError:
            count = 0  # the workers have not migrated yet
        if count >= expected:
            return int(count)
        await asyncio.sleep(0.3)
    return int(count)


async def load_accounts(database_url: str, extract: Path) -> None:
    """Feed the tracker a core-banking extract the way operators do: ``parley accounts load FILE``."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("PARLEY_")}
    loaded = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "services.cli", "accounts", "load", str(extract)],
        env={**env, "DATABASE_URL": database_url},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert loaded.returncode == 0, loaded.stderr
