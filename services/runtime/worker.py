"""A processor's worker: a faust app plus the shared runtime around it.

Every agent hands each record to ``ProcessorApp.process``, which decides its fate:
success, dead letter (permanent error, or a bug), or retry with capped exponential backoff
(transient error). An exception never reaches faust, whose default would be to log, ack and
drop the record.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import faust
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from schemas import topics
from services.runtime.db import connect_pool
from services.runtime.deadletter import InboundMessage, dead_letter_record
from services.runtime.errors import PermanentError, RetryableError
from services.runtime.kafka import Record, client_options, ensure_topics, new_producer
from services.runtime.outbox import OutboxRelay
from services.runtime.settings import Settings

log = logging.getLogger(__name__)

Handler = Callable[[list[InboundMessage]], Awaitable[None]]
"""Handles a batch of records, in order; raises to say what went wrong (see services.runtime.errors)."""

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
    """One processor: its faust app id is its consumer group; it owns a pool, a producer and a relay."""

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

    @property
    def pool(self) -> asyncpg.Pool:
        if self._db_pool is None:
            raise RuntimeError("the database pool opens when the worker starts")
        return self._db_pool

    async def on_start(self) -> None:
        await ensure_topics(self.settings, self.connections.bootstrap_servers, self._topics_to_create)
        self._db_pool = await connect_pool(
            self.connections.database_url,
            min_size=self.settings.database_pool_min,
            max_size=self.settings.database_pool_max,
        )
        self._direct_producer = new_producer(self.settings, self.connections.bootstrap_servers)
        await self._direct_producer.start()
        await super().on_start()

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
            )
            self._relay_task = asyncio.ensure_future(self.relay.run())
        log.info("worker ready", extra={"processor": self.processor})

    async def on_stop(self) -> None:
        await super().on_stop()
        if self._relay_task is not None:
            self._relay_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._relay_task
        if self._direct_producer is not None:
            await self._direct_producer.stop()
        if self._db_pool is not None:
            await self._db_pool.close()

    async def consume(self, stream: Any, handler: Handler) -> None:
        """The body of every agent: records in batches, in order, through ``process``.

        faust acks a batch only after this returns from it, so a crash mid-batch redelivers it.
        """
        async for events in stream.take_events(self.settings.batch_max_records, self.settings.batch_max_wait_seconds):
            await self.process([_inbound(event.message) for event in events], handler)

    async def process(self, messages: list[InboundMessage], handler: Handler) -> None:
        """Run ``handler`` on the batch; retry it while failures are transient.

        A batch that fails otherwise is split into single records, so that only the record at
        fault is dead-lettered and the rest go through.
        """
        backoff = self.settings.retry_initial_backoff_seconds
        while True:
            try:
                await handler(messages)
                self.counters["processed"] += len(messages)
                return
            except TRANSIENT_ERRORS as exc:
                self.counters["retries"] += 1
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
                        await self.process([message], handler)
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
        """Publish records and wait for every ack (sent together, so one batch costs one round trip)."""
        await asyncio.gather(*(self.publish_now(record) for record in records))

    async def publish_now(self, record: Record) -> None:
        """Publish and wait for the broker's ack, retrying until it comes: the record is not lost."""
        assert self._direct_producer is not None
        backoff = self.settings.retry_initial_backoff_seconds
        while True:
            try:
                await self._direct_producer.send_and_wait(
                    record.topic, value=record.value, key=record.key, headers=record.headers
                )
                return
            except KafkaError as exc:
                log.warning("publish failed; retrying", extra={"topic": record.topic, "error": type(exc).__name__})
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self.settings.retry_max_backoff_seconds)


def _inbound(raw: Any) -> InboundMessage:
    return InboundMessage(
        topic=raw.topic,
        partition=raw.partition,
        offset=raw.offset,
        key=raw.key,
        value=raw.value if raw.value is not None else b"",
        headers=[(name, value or b"") for name, value in (raw.headers or [])],
        timestamp_ms=int(raw.timestamp * 1000) if raw.timestamp else None,
    )


def run_worker(app: ProcessorApp) -> None:
    """Run until SIGINT/SIGTERM, then stop cleanly (commit, close pool and producers)."""
    worker = faust.Worker(app, quiet=True, override_logging=False, loglevel=app.settings.log_level)
    worker.execute_from_commandline()
