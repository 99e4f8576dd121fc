"""A processor's consumer: one consumer-group member that hands records over in batches.

faust's stream machinery costs about 0.2 ms of CPU per record before a handler sees it (a no-op
``take_events`` agent on the embedded broker: 186-268 µs a record; an aiokafka ``getmany`` loop on
the same records: 6 µs), and a message crosses seven consumed events on its way through the
pipeline. So processors read through aiokafka directly, in batches, and keep faust for what it is
good at here: the worker's life (signals, timers, tasks).

Guarantees, the same as before: records of a partition reach their handler in offset order; an
offset is committed only after its batch was handled (a crash re-delivers the batch, and the
handlers are idempotent on event ids); a rebalance waits for the batch in hand and commits it
before giving its partitions up, and a batch fetched before a rebalance is dropped rather than
handled by two members at once (the new owner reads it again from the committed offset).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.abc import ConsumerRebalanceListener
from aiokafka.errors import KafkaError

from services.runtime.deadletter import InboundMessage
from services.runtime.kafka import client_options
from services.runtime.settings import Settings

log = logging.getLogger(__name__)

Handler = Callable[[list[InboundMessage]], Awaitable[None]]
"""Handles a batch of records, in order; raises to say what went wrong (see services.runtime.errors)."""

Process = Callable[[list[InboundMessage], Handler], Awaitable[None]]
"""Decides every record's fate (handled, retried, dead-lettered) and returns only when it is decided."""

# How long getmany waits for records when there are none: short enough to notice a stop quickly.
IDLE_POLL_MS = 1000


def inbound(record: ConsumerRecord[bytes, bytes]) -> InboundMessage:
    return InboundMessage(
        topic=record.topic,
        partition=record.partition,
        offset=record.offset,
        key=record.key,
        value=record.value if record.value is not None else b"",
        headers=[(name, value or b"") for name, value in record.headers],
        timestamp_ms=record.timestamp if record.timestamp is not None and record.timestamp >= 0 else None,
    )


class BatchConsumer:
    """Reads ``handlers``' topics as member of ``group_id`` and runs each batch through ``process``."""

    def __init__(
        self,
        settings: Settings,
        bootstrap_servers: str,
        group_id: str,
        handlers: Mapping[str, Handler],
        process: Process,
    ) -> None:
        self._settings = settings
        self._bootstrap_servers = bootstrap_servers
        self._group_id = group_id
        self._handlers = dict(handlers)
        self._process = process
        self._consumer: AIOKafkaConsumer | None = None
        self._batch_lock = asyncio.Lock()
        self._generation = 0  # bumped when partitions are revoked: a batch fetched before is stale
        self.assigned: frozenset[TopicPartition] = frozenset()
        self.assignment_received = False
        self.rebalancing = False
        self.committed: dict[TopicPartition, int] = {}
        self.last_read: dict[TopicPartition, int] = {}

    @property
    def topics(self) -> tuple[str, ...]:
        return tuple(self._handlers)

    def highwater(self, partition: TopicPartition) -> int | None:
        if self._consumer is None:
            return None
        try:
            highwater = self._consumer.highwater(partition)
        except Exception:  # revoked since the assignment was read, or stopping: aiokafka asserts
            return None
        return int(highwater) if highwater is not None else None

    async def start(self) -> None:
        settings = self._settings
        session_ms = int(settings.session_timeout_seconds() * 1000)
        self._consumer = AIOKafkaConsumer(
            group_id=self._group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_partition_fetch_bytes=settings.kafka_max_message_bytes + 64 * 1024,
            fetch_max_bytes=max(settings.kafka_max_message_bytes + 64 * 1024, 50 * 1024 * 1024),
            fetch_max_wait_ms=settings.fetch_max_wait_ms(),
            session_timeout_ms=session_ms,
            heartbeat_interval_ms=int(settings.heartbeat_interval_seconds() * 1000),
            rebalance_timeout_ms=max(session_ms * 3, 10_000),
            # A handler retrying through a database outage must not cost the member its partitions.
            max_poll_interval_ms=24 * 3600 * 1000,
            **client_options(settings, self._bootstrap_servers),
        )
        self._consumer.subscribe(list(self._handlers), listener=_Listener(self))
        await self._consumer.start()

    async def run(self) -> None:
        """Fetch, handle, commit, until cancelled."""
        consumer = self._consumer
        assert consumer is not None, "start() first"
        while True:
            generation = self._generation
            batches = await self._fill(consumer)
            if not batches:
                continue
            async with self._batch_lock:
                if generation != self._generation:
                    continue  # partitions were revoked meanwhile: whoever holds them now reads these again
                await self._handle(batches)

    async def _fill(self, consumer: AIOKafkaConsumer) -> dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]]:
        """Records for one batch: what came first, then more for up to ``batch_max_wait_seconds`` or until full.

        Waiting a little to fill a batch is what makes batches pay: every batch costs a transaction and
        a few statements, whatever its size.
        """
        limit = self._settings.batch_max_records
        batches: dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]] = dict(
            await consumer.getmany(timeout_ms=IDLE_POLL_MS, max_records=limit)
        )
        taken = sum(len(records) for records in batches.values())
        if not taken:
            return batches
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._settings.batch_max_wait_seconds
        while taken < limit and (remaining := deadline - loop.time()) > 0:
            more = await consumer.getmany(timeout_ms=max(int(remaining * 1000), 1), max_records=limit - taken)
            for partition, records in more.items():
                batches.setdefault(partition, []).extend(records)
                taken += len(records)
        return batches

    async def _handle(self, batches: Mapping[TopicPartition, list[ConsumerRecord[bytes, bytes]]]) -> None:
        # One call per handler (topics that share a handler share a call), records of a partition in order.
        grouped: dict[int, tuple[Handler, list[InboundMessage]]] = {}
        for partition, records in batches.items():
            if records:
                handler = self._handlers[partition.topic]
                grouped.setdefault(id(handler), (handler, []))[1].extend(inbound(record) for record in records)
                self.last_read[partition] = records[-1].offset
        for handler, messages in grouped.values():
            await self._process(messages, handler)
        await self._commit({partition: records[-1].offset + 1 for partition, records in batches.items() if records})

    async def _commit(self, offsets: dict[TopicPartition, int]) -> None:
        assert self._consumer is not None
        try:
            await self._consumer.commit(offsets)
        except KafkaError as exc:
            # The group moved on (a rebalance, a lost session): the next owner re-reads from the last
            # commit, and handlers drop what they already did by event id.
            log.warning("commit failed; records will be read again", extra={"error": type(exc).__name__})
            return
        self.committed.update(offsets)

    async def revoke(self, partitions: Iterable[TopicPartition]) -> None:
        """Before a rebalance: no new batch starts; the one in hand finishes and commits."""
        self.rebalancing = True
        self._generation += 1
        async with self._batch_lock:
            pass
        for partition in partitions:
            self.committed.pop(partition, None)
            self.last_read.pop(partition, None)

    def assign(self, partitions: Iterable[TopicPartition]) -> None:
        self.assigned = frozenset(partitions)
        self.assignment_received = True
        self.rebalancing = False

    async def stop(self, grace_seconds: float, run_task: asyncio.Task[None] | None) -> None:
        """Let the batch in hand finish (for at most ``grace_seconds``), then leave the group."""
        if run_task is not None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(grace_seconds):
                    await self._batch_lock.acquire()
            run_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await run_task
        if self._consumer is not None:
            await self._consumer.stop()
            self._consumer = None


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, owner: BatchConsumer) -> None:
        self._owner = owner

    async def on_partitions_revoked(self, revoked: Any) -> None:
        await self._owner.revoke(revoked)

    async def on_partitions_assigned(self, assigned: Any) -> None:
        self._owner.assign(assigned)
