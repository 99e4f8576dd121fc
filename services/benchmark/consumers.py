"""What it costs to hand records to a handler: faust's stream path against the batch consumer.

``python -m services.benchmark.consumers`` (part of ``make bench``) publishes records to one topic on the
embedded broker (or ``KAFKA_BOOTSTRAP_SERVERS``), then lets each kind of consumer read all of them into a
handler that does nothing, each in a process of its own, and prints CPU per record of that process and of
the broker. The same measurement chose services.runtime.consumer over faust agents.

- ``faust``: a faust agent reading ``stream.take_events(500, 0.05)``, as the processors did;
- ``batch``: services.runtime.consumer.BatchConsumer with ``getmany`` batches of 500 and a commit per batch.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import faust
import psutil

from services.runtime.consumer import BatchConsumer
from services.runtime.deadletter import InboundMessage
from services.runtime.embedded import die_with_parent, start_embedded_broker
from services.runtime.kafka import ensure_topics, new_producer
from services.runtime.settings import Settings
from services.runtime.worker import Connections, faust_options

KINDS = ("faust", "batch")
BATCH = 500


def _settings(out: Path) -> Settings:
    return Settings(kafka_partitions=6, batch_max_records=BATCH, data_dir=out)


async def _publish(settings: Settings, bootstrap_servers: str, topic: str, records: int) -> None:
    await ensure_topics(settings, bootstrap_servers, [topic])
    producer = new_producer(settings, bootstrap_servers)
    await producer.start()
    try:
        value = json.dumps({"text": "x" * 300}).encode()
        sends = [await producer.send(topic, value, key=str(n % 1000).encode()) for n in range(records)]
        await asyncio.gather(*sends)
    finally:
        await producer.stop()


class CpuClock:
    """CPU time of this process from the first batch handed over to the last (start-up left out)."""

    def __init__(self) -> None:
        self.first: float | None = None
        self.first_batch = 0

    def batch(self, size: int) -> None:
        if self.first is None:
            self.first, self.first_batch = time.process_time(), size

    def report(self, done_file: Path) -> None:
        assert self.first is not None
        done_file.write_text(f"{time.process_time() - self.first} {self.first_batch}\n")


def _faust_worker(bootstrap_servers: str, topic: str, records: int, done_file: Path, out: Path) -> None:
    settings = _settings(out)
    options = faust_options(settings, Connections(bootstrap_servers, "unused"), "bench-consumers")
    Path(options["datadir"]).parent.mkdir(parents=True, exist_ok=True)
    app = faust.App(f"bench-consumers-faust-{uuid.uuid4().hex[:8]}", **options)
    seen, clock = 0, CpuClock()

    @app.agent(app.topic(topic), name="noop")
    async def noop(stream: Any) -> None:
        nonlocal seen
        async for events in stream.take_events(BATCH, 0.05):
            clock.batch(len(events))
            seen += len(events)
            if seen >= records:
                clock.report(done_file)

    faust.Worker(app, quiet=True, override_logging=False, loglevel="WARNING").execute_from_commandline()


async def _batch_worker(bootstrap_servers: str, topic: str, records: int, done_file: Path, out: Path) -> None:
    seen, clock = 0, CpuClock()
    finished = asyncio.Event()

    async def noop(messages: list[InboundMessage]) -> None:
        nonlocal seen
        clock.batch(len(messages))
        seen += len(messages)
        if seen >= records:
            finished.set()

    async def process(messages: list[InboundMessage], handler: Any) -> None:
        await handler(messages)

    group = f"bench-consumers-batch-{uuid.uuid4().hex[:8]}"
    consumer = BatchConsumer(_settings(out), bootstrap_servers, group, {topic: noop}, process)
    await consumer.start()
    task = asyncio.ensure_future(consumer.run())
    await finished.wait()
    clock.report(done_file)
    await consumer.stop(5.0, task)


def _measure(kind: str, bootstrap_servers: str, topic: str, records: int, broker: psutil.Process, out: Path) -> None:
    done_file = out / f"{kind}.done"
    done_file.unlink(missing_ok=True)
    broker_before = sum(broker.cpu_times()[:2])
    started = time.monotonic()
    worker = subprocess.Popen(  # noqa: S603 - our own interpreter and module
        [
            *(sys.executable, "-m", "services.benchmark.consumers", "--worker", kind, "--records", str(records)),
            *("--topic", topic, "--bootstrap-servers", bootstrap_servers, "--out", str(out)),
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=(out / f"{kind}.log").open("ab"),
        preexec_fn=die_with_parent,
    )
    try:
        deadline = started + 600
        while not (done_file.exists() and done_file.read_text().endswith("\n")):
            if worker.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the {kind} consumer stopped before reading every record; see {out}/{kind}.log")
            time.sleep(0.05)
        cpu_text, first_batch = done_file.read_text().split()
        cpu, counted = float(cpu_text), records - int(first_batch)
        wall = time.monotonic() - started
        broker_cpu = sum(broker.cpu_times()[:2]) - broker_before
    finally:
        worker.terminate()
        worker.wait(30)
    print(
        f"  {kind:6s} {cpu / counted * 1e6:7.1f} µs CPU per record in the consumer (after its first batch), "
        f"broker {broker_cpu / records * 1e6:5.1f} µs; {records / wall:,.0f} records/s wall",
        flush=True,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m services.benchmark.consumers", description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=60_000)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path(".parley/bench/consumers"))
    # The measured process: which kind, and where to read from.
    parser.add_argument("--worker", choices=KINDS, help=argparse.SUPPRESS)
    parser.add_argument("--topic", help=argparse.SUPPRESS)
    parser.add_argument("--bootstrap-servers", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker is not None:
        done_file = args.out / f"{args.worker}.done"
        if args.worker == "faust":
            _faust_worker(args.bootstrap_servers, args.topic, args.records, done_file, args.out)
        else:
            asyncio.run(_batch_worker(args.bootstrap_servers, args.topic, args.records, done_file, args.out))
        return 0

    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    settings = _settings(out)
    configured = settings.kafka_bootstrap_servers
    broker = None if configured else start_embedded_broker(out / "broker.log")
    try:
        bootstrap_servers = configured or broker.bootstrap_servers  # type: ignore[union-attr]
        broker_process = psutil.Process(broker.process.pid) if broker is not None else psutil.Process(os.getpid())
        topic = f"bench.consumers.{uuid.uuid4().hex[:8]}"
        asyncio.run(_publish(settings, bootstrap_servers, topic, args.records))
        print(f"{args.records:,} records of 300 bytes (6 partitions) to a handler that does nothing:", flush=True)
        for _ in range(args.repeat):
            for kind in KINDS:
                _measure(kind, bootstrap_servers, topic, args.records, broker_process, out)
    finally:
        if broker is not None:
            broker.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
