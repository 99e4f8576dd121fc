"""The reference ceiling: a bare one-stage faust agent that forwards every record, nothing else.

``python -m services.benchmark.passthrough`` runs it as a worker: same broker, same faust and client
settings as the processors, no database, no parsing. ``measure`` offers it records as fast as the
producer sends them and times them out the other side.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import faust
from aiokafka import AIOKafkaConsumer

from services.runtime.embedded import die_with_parent
from services.runtime.kafka import client_options, ensure_topics, new_producer
from services.runtime.logs import configure_logging
from services.runtime.settings import Settings
from services.runtime.worker import Connections, faust_options

SOURCE_TOPIC = "bench.passthrough.in"
SINK_TOPIC = "bench.passthrough.out"


def create_app(settings: Settings, connections: Connections) -> faust.App:
    options = faust_options(settings, connections, "bench-passthrough")
    Path(options["datadir"]).parent.mkdir(parents=True, exist_ok=True)
    app = faust.App(settings.topic("parley-bench-passthrough"), **options)
    source = app.topic(settings.topic(SOURCE_TOPIC))
    sink = app.topic(settings.topic(SINK_TOPIC))

    @app.agent(source, name="passthrough")
    async def passthrough(stream: Any) -> None:
        async for event in stream.events():
            await sink.send(key=event.message.key, value=event.message.value)

    return app


def main() -> None:
    settings = Settings()
    configure_logging(settings)
    if not settings.kafka_bootstrap_servers or settings.database_url is None:
        raise SystemExit("the pass-through worker runs against a configured broker (KAFKA_BOOTSTRAP_SERVERS)")
    connections = Connections(settings.kafka_bootstrap_servers, settings.database_url.get_secret_value())
    worker = faust.Worker(create_app(settings, connections), quiet=True, override_logging=False, loglevel="WARNING")
    worker.execute_from_commandline()


def start_worker(env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    log = log_path.open("ab")
    return subprocess.Popen(
        [sys.executable, "-m", "services.benchmark.passthrough"],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        preexec_fn=die_with_parent,
    )


async def measure(settings: Settings, bootstrap_servers: str, records: list[tuple[bytes, bytes]]) -> float:
    """Records per second through the running pass-through worker: first send to last arrival."""
    await ensure_topics(settings, bootstrap_servers, (SOURCE_TOPIC, SINK_TOPIC))
    consumer = AIOKafkaConsumer(
        settings.topic(SINK_TOPIC),
        group_id=None,
        auto_offset_reset="latest",
        max_partition_fetch_bytes=4 * 1024 * 1024,
        **client_options(settings, bootstrap_servers),
    )
    producer = new_producer(settings, bootstrap_servers)
    await consumer.start()
    await producer.start()
    try:
        await _wait_until_forwarding(settings, producer, consumer)
        started = time.perf_counter()
        sends = [await producer.send(settings.topic(SOURCE_TOPIC), value, key=key) for key, value in records]
        await asyncio.gather(*sends)
        received, last_at = 0, started
        deadline = time.monotonic() + 300
        while received < len(records) and time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=500, max_records=5000)
            arrived = sum(len(batch) for batch in batches.values())
            if arrived:
                received, last_at = received + arrived, time.perf_counter()
        if received < len(records):
            raise RuntimeError(f"the pass-through forwarded {received} of {len(records)} records")
        return len(records) / (last_at - started)
    finally:
        await producer.stop()
        await consumer.stop()


async def _wait_until_forwarding(settings: Settings, producer: Any, consumer: AIOKafkaConsumer) -> None:
    """Until a probe comes out the other side: the worker has its partitions and the consumer its position."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        await producer.send_and_wait(settings.topic(SOURCE_TOPIC), b"probe", key=b"probe")
        batches = await consumer.getmany(timeout_ms=2000)
        if any(batches.values()):
            await asyncio.sleep(1.0)
            await consumer.getmany(timeout_ms=500)  # drain stray probes
            return
    raise RuntimeError("the pass-through worker never forwarded a probe")


if __name__ == "__main__":
    main()
