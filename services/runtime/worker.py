"""A processor's worker: a faust app plus the shared runtime around it.

faust runs the worker's life (signals, timers, tasks); records come in through a
services.runtime.consumer.BatchConsumer, which hands every batch to ``ProcessorApp.process``. That
decides each record's fate: success, dead letter (permanent error, or a bug), or retry with capped
exponential backoff (transient error). An offset is committed only once its record's fate is decided.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import faust
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from schemas import topics
from services.runtime import metrics
from services.runtime.consumer import BatchConsumer, Handler
from services.runtime.db import connect_pool
from services.runtime.deadletter import InboundMessage, dead_letter_record
from services.runtime.errors import PermanentError, RetryableError
from services.runtime.health import HealthServer, Status
from services.runtime.kafka import Record, client_options, ensure_topics, new_producer, send_all
from services.runtime.outbox import OutboxRelay
from services.runtime.settings import Settings

log = logging.getLogger(__name__)

# PostgreSQL errors by SQLSTATE class: 08 connection, 40 transaction rollback (serialisation, deadlock),
# 53 insufficient resources, 57 operator intervention (shutdown, failover, cannot connect now).
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    RetryableError,
    OSError,
    TimeoutError,
    KafkaError,
    asyncpg.InterfaceError,
    asyncpg.PostgresConnectionError,
    asyncpg.exceptions.TransactionRollbackError,
    asyncpg.exceptions.InsufficientResourcesError,
    asyncpg.exceptions.OperatorInterventionError,
)

# Readiness asks the database for ``SELECT 1`` and gives up after this long: a pool so busy or a
# server so slow that it cannot answer in time is not ready either.
READINESS_DATABASE_TIMEOUT_SECONDS = 2.0

# On a stop, the batch in hand may finish for this long; after that it is abandoned uncommitted (and
# read again by whoever takes the partition over).
STOP_GRACE_SECONDS = 10.0


@dataclass(frozen=True)
class Connections:
    """Where the broker and database are, once resolved (embedded or configured)."""

    bootstrap_servers: str
    database_url: str


def faust_options(settings: Settings, connections: Connections, processor: str) -> dict[str, Any]:
    """Faust settings that hold on the embedded broker and on Kafka alike; only values differ."""
    security = client_options(settings, connections.bootstrap_servers)
    options: dict[str, Any] = {
        "broker": [f"kafka://{server}" for server in connections.bootstrap_servers.split(",")],
        "processing_guarantee": "at_least_once",  # exactly_once needs InitProducerId: not on Tansu
        "broker_session_timeout": settings.session_timeout_seconds(),
        "broker_heartbeat_interval": settings.heartbeat_interval_seconds(),
        "broker_rebalance_timeout": max(settings.session_timeout_seconds() * 3, 10.0),
        "consumer_auto_offset_reset": "earliest",
        "consumer_max_fetch_size": settings.kafka_max_message_bytes + 64 * 1024,
        "producer_max_request_size": settings.kafka_max_message_bytes + 64 * 1024,
        "producer_acks": -1,
        "topic_partitions": settings.kafka_partitions,
        "topic_replication_factor": settings.kafka_replication_factor,
        "topic_disable_leader": True,
        "key_serializer": "raw",
        "value_serializer": "raw",
        "store": "memory://",  # state lives in PostgreSQL, never in faust tables
        "web_enabled": False,
        "autodiscover": False,
        "datadir": str(settings.data_dir / "faust" / processor),
    }
    if "ssl_context" in security or "sasl_mechanism" in security:
        options["broker_credentials"] = _faust_credentials(security)
    return options


def _faust_credentials(security: dict[str, Any]) -> Any:
    if "sasl_mechanism" in security:
        return faust.SASLCredentials(
            username=security["sasl_plain_username"],
            password=security["sasl_plain_password"],
            mechanism=security["sasl_mechanism"],
            ssl_context=security.get("ssl_context"),
        )
    return security["ssl_context"]


class ProcessorApp(faust.App):
    """One processor: its app id is its consumer group; it owns a pool, a producer, a consumer and a relay.

    ``consume_topics`` names what it reads and the handler for it; faust's own consumer and
    producer stay off (see services.runtime.consumer for why).

    With ``PARLEY_HTTP_PORT`` set it also serves ``/healthz``, ``/readyz`` and ``/metrics``
    (services.runtime.health); every record it takes, publishes, retries or dead-letters is counted
    in services.runtime.metrics.
    """

    def __init__(
        self,
        processor: str,
        settings: Settings,
        connections: Connections,
        *,
        relays_outbox: bool,
        dead_letter_topic: str | None = None,
        topics_to_create: Iterable[str] = topics.ALL_TOPICS,
    ) -> None:
        options = faust_options(settings, connections, processor)
        Path(options["datadir"]).parent.mkdir(parents=True, exist_ok=True)
        # The app id is the consumer group: prefixed like the topics, so deployments sharing a cluster stay apart.
        super().__init__(settings.topic(f"parley-{processor}"), **options)
        self.boot_strategy = self.BootStrategy(self, enable_kafka=False, enable_web=False)
        self.processor = processor
        self.settings = settings
        self.connections = connections
        self._topics_to_create = tuple(topics_to_create)
        self.dead_letter_topic = dead_letter_topic or topics.dead_letter_topic(processor)
        self._relays_outbox = relays_outbox
        self._db_pool: asyncpg.Pool | None = None
        self._direct_producer: AIOKafkaProducer | None = None
        self.relay: OutboxRelay | None = None
        self._relay_task: asyncio.Task[None] | None = None
        self.counters: Counter[str] = Counter()
        """processed, dead_lettered, retries, and what a processor adds (duplicates, …)."""
        self._http: HealthServer | None = None
        self._started_monotonic = time.monotonic()
        self._producer_running = False
        self._worker_started = False
        self._batches_started: dict[int, float] = {}  # batches in the handler now, by id: when each came in
        self._handlers: dict[str, Handler] = {}
        self._batch_consumer: BatchConsumer | None = None
        self._consumer_task: asyncio.Task[None] | None = None
        self._crash_task: asyncio.Future[None] | None = None

    def consume_topics(self, topic_names: Iterable[str], handler: Handler) -> None:
        """Read these topics (full names) and hand their records to ``handler`` in batches, in order."""
        for name in topic_names:
            if name in self._handlers:
                raise ValueError(f"topic {name} already has a handler")
            self._handlers[name] = handler

    @property
    def http_port(self) -> int | None:
        """The port /healthz, /readyz and /metrics answer on, once started (None: not served)."""
        return self._http.port if self._http is not None else None

    @property
    def pool(self) -> asyncpg.Pool:
        if self._db_pool is None:
            raise RuntimeError("the database pool opens when the worker starts")
        return self._db_pool

    async def on_start(self) -> None:
        # First, so that a startup probe sees the process alive while topics, migrations and the join take their time.
        await self._start_http()
        await ensure_topics(self.settings, self.connections.bootstrap_servers, self._topics_to_create)
        self._db_pool = await connect_pool(
            self.connections.database_url,
            min_size=self.settings.database_pool_min,
            max_size=self.settings.database_pool_max,
        )
        self._direct_producer = new_producer(self.settings, self.connections.bootstrap_servers)
        await self._direct_producer.start()
        self._producer_running = True
        await super().on_start()

    async def _start_http(self) -> None:
        if self.settings.http_port is None:
            return
        self._http = HealthServer(
            self.settings.http_host,
            self.settings.http_port,
            live=self.liveness,
            ready=self.readiness,
            before_scrape=self.refresh_metrics,
        )
        port = await self._http.start()
        metrics.WORKERS.attach(self)
        log.info(
            "health and metrics served",
            extra={"processor": self.processor, "host": self.settings.http_host, "port": port},
        )

    async def on_started(self) -> None:
        await super().on_started()
        if self._relays_outbox:
            assert self._direct_producer is not None
            self.relay = OutboxRelay(
                self.pool,
                self._direct_producer,
                self.processor,
                batch_size=self.settings.outbox_batch_size,
                poll_interval_seconds=self.settings.outbox_poll_interval_seconds,
                max_backoff_seconds=self.settings.retry_max_backoff_seconds,
                topic_prefix=self.settings.kafka_topic_prefix,
            )
            self._relay_task = asyncio.ensure_future(self.relay.run())
        if self._handlers:
            self._batch_consumer = BatchConsumer(
                self.settings, self.connections.bootstrap_servers, self.conf.id, self._handlers, self.process
            )
            await self._batch_consumer.start()
            self._consumer_task = asyncio.ensure_future(self._batch_consumer.run())
            self._consumer_task.add_done_callback(self._on_consumer_done)
        self._worker_started = True
        log.info("worker ready", extra={"processor": self.processor})

    def _on_consumer_done(self, task: asyncio.Task[None]) -> None:
        if task.cancelled() or task.exception() is None:
            return
        exception = task.exception()
        assert exception is not None
        log.error(
            "consumer stopped by an error", extra={"processor": self.processor, "error": type(exception).__name__}
        )
        # A worker that no longer consumes must not look alive: crashed fails /healthz and stops the worker.
        self._crash_task = asyncio.ensure_future(self.crash(exception))

    async def on_stop(self) -> None:
        self._worker_started = False
        if self._batch_consumer is not None:
            await self._batch_consumer.stop(STOP_GRACE_SECONDS, self._consumer_task)
        await super().on_stop()
        if self._relay_task is not None:
            self._relay_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._relay_task
        if self._direct_producer is not None:
            self._producer_running = False
            await self._direct_producer.stop()
        if self._db_pool is not None:
            await self._db_pool.close()
        metrics.WORKERS.detach(self)
        if self._http is not None:
            await self._http.stop()

    # ---- health and metrics ----

    async def liveness(self) -> Status:
        """Alive while the event loop answers and the worker has not crashed (a retrying worker is alive)."""
        return Status(
            ok=not self.crashed,
            checks={"crashed": self.crashed, "uptime_seconds": round(time.monotonic() - self._started_monotonic, 1)},
        )

    async def readiness(self) -> Status:
        """Ready: started, partition assignment held, database reachable, producer started.

        A worker beyond the partition count holds an empty assignment and is ready: a hot standby
        (``partitions`` says 0), which must not hold up a rolling update.
        """
        started = self._worker_started
        consumer = self._batch_consumer
        assignment = consumer is not None and consumer.assignment_received and not consumer.rebalancing
        producer = self._producer_running
        database = await self._database_reachable()
        return Status(
            ok=started and assignment and producer and database,
            checks={
                "started": started,
                "assignment": assignment,
                "partitions": len(self.partition_lags()) if started else 0,
                "database": database,
                "producer": producer,
            },
        )

    async def _database_reachable(self) -> bool:
        if self._db_pool is None:
            return False
        try:
            async with asyncio.timeout(READINESS_DATABASE_TIMEOUT_SECONDS), self._db_pool.acquire() as conn:
                await conn.fetchval("SELECT 1")
        except Exception:
            return False
        return True

    async def refresh_metrics(self) -> None:
        """Before a scrape: readiness and the outbox backlog, which live in the database, not in counters."""
        ready = await self.readiness()
        metrics.WORKER_READY.labels(self.processor).set(1 if ready.ok else 0)
        if self.relay is not None and ready.checks.get("database"):
            backlog = await self.relay.backlog()
            metrics.OUTBOX_BACKLOG.labels(self.processor).set(backlog.rows)
            metrics.OUTBOX_OLDEST_AGE_SECONDS.labels(self.processor).set(backlog.oldest_age_seconds)

    def oldest_batch_age_seconds(self) -> float:
        """How long the oldest batch in the handler has been there; 0 when none is."""
        return time.monotonic() - min(self._batches_started.values()) if self._batches_started else 0.0

    def partition_lags(self) -> list[metrics.PartitionLag]:
        """Per assigned partition: fetch high watermark minus committed offset (see metrics.partition_lag)."""
        consumer = self._batch_consumer
        if not self._worker_started or consumer is None:
            return []
        return [
            metrics.PartitionLag(
                self._topic_label(tp.topic),
                tp.partition,
                metrics.partition_lag(consumer.highwater(tp), consumer.committed.get(tp), consumer.last_read.get(tp)),
            )
            for tp in sorted(consumer.assigned)
        ]

    async def process(self, messages: list[InboundMessage], handler: Handler) -> None:
        """Run ``handler`` on the batch; retry it while failures are transient.

        A batch that fails otherwise is split into single records, so that only the record at
        fault is dead-lettered and the rest go through.
        """
        started = time.monotonic()
        self._batches_started[id(messages)] = started
        for topic, count in Counter(message.topic for message in messages).items():
            metrics.EVENTS_IN.labels(self.processor, self._topic_label(topic)).inc(count)
        try:
            await self._process(messages, handler)
        finally:
            del self._batches_started[id(messages)]
            metrics.PROCESSING_SECONDS.labels(self.processor).observe(time.monotonic() - started)
            metrics.BATCH_RECORDS.labels(self.processor).observe(len(messages))

    def _topic_label(self, topic: str) -> str:
        return metrics.topic_label(topic, self.settings.kafka_topic_prefix)

    async def _process(self, messages: list[InboundMessage], handler: Handler) -> None:
        backoff = self.settings.retry_initial_backoff_seconds
        while True:
            try:
                await handler(messages)
                self.counters["processed"] += len(messages)
                return
            except TRANSIENT_ERRORS as exc:
                self.counters["retries"] += 1
                metrics.RETRIES.labels(self.processor, "handle").inc()
                first = messages[0]
                log.warning(
                    "transient failure; retrying the same records",
                    extra={
                        "processor": self.processor,
                        "topic": first.topic,
                        "partition": first.partition,
                        "offset": first.offset,
                        "records": len(messages),
                        "error": type(exc).__name__,
                        "backoff_seconds": backoff,
                    },
                )
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self.settings.retry_max_backoff_seconds)
            except Exception as exc:
                if len(messages) > 1:
                    for message in messages:
                        await self._process([message], handler)
                    return
                if isinstance(exc, PermanentError):
                    await self.dead_letter(messages[0], exc.reason, exc.detail)
                    return
                # A bug: keep the record for replay, say which exception, never its message text.
                log.exception(
                    "unhandled error; record dead-lettered",
                    extra={"processor": self.processor, "topic": messages[0].topic, "offset": messages[0].offset},
                )
                await self.dead_letter(messages[0], "unhandled_error", type(exc).__name__)
                return

    async def dead_letter(
        self,
        message: InboundMessage,
        reason: str,
        detail: str,
        *,
        masked_value: bytes | None = None,
        original_ref: str | None = None,
    ) -> None:
        record = dead_letter_record(
            message,
            target_topic=self.settings.topic(self.dead_letter_topic),
            reason=reason,
            detail=detail,
            processor=self.processor,
            now=datetime.now(UTC),
            masked_value=masked_value,
            original_ref=original_ref,
        )
        await self.publish_now(record)
        self.counters["dead_lettered"] += 1
        metrics.EVENTS_FAILED.labels(self.processor, self._topic_label(message.topic)).inc()
        metrics.DEAD_LETTERS.labels(self.processor, metrics.reason_label(reason)).inc()
        log.info(
            "record dead-lettered",
            extra={
                "processor": self.processor,
                "reason": reason,
                "topic": message.topic,
                "offset": message.offset,
            },
        )

    async def publish_all(self, records: list[Record]) -> None:
        """Publish records and wait for every ack, retrying what failed until it is acked: nothing is lost.

        All are queued before any is awaited, so a batch costs a few produce requests, not one per record.
        A retry may publish a record twice; consumers drop the repeat by event id.
        """
        assert self._direct_producer is not None
        pending = records
        backoff = self.settings.retry_initial_backoff_seconds
        while pending:
            outcomes = await send_all(self._direct_producer, pending)
            failed: list[Record] = []
            published: list[str] = []
            for record, outcome in zip(pending, outcomes, strict=True):
                if outcome is None:
                    published.append(record.topic)
                elif isinstance(outcome, KafkaError):
                    failed.append(record)
                else:
                    raise outcome
            metrics.count_events_out(self.processor, published, self.settings.kafka_topic_prefix)
            if failed:
                metrics.RETRIES.labels(self.processor, "publish").inc()
                log.warning("publish failed; retrying", extra={"records": len(failed), "topic": failed[0].topic})
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self.settings.retry_max_backoff_seconds)
            pending = failed

    async def publish_now(self, record: Record) -> None:
        """Publish one record and wait for the broker's ack, retrying until it comes: the record is not lost."""
        await self.publish_all([record])


def run_worker(app: ProcessorApp) -> None:
    """Run until SIGINT/SIGTERM, then stop cleanly (commit, close pool and producers)."""
    worker = faust.Worker(app, quiet=True, override_logging=False, loglevel=app.settings.log_level)
    worker.execute_from_commandline()
