"""The outbox relay: publishes what state changes queued in the ``outbox`` table, in order.

One relay per source publishes at a time (a transaction-scoped advisory lock), so a source's
records leave in the order they were written; other workers of the same processor stand by.
Rows are deleted only after the broker acknowledged them, in the same transaction that locked
them: a crash in between publishes them again, and consumers drop the repeat by event id.

Deleted rows stay in the ``(source, id)`` index until a vacuum, and a scan from the start of a source
walks past every one of them: under load, minutes of them, and the relay's SELECT was a fifth of the
database's time. So the relay starts its scans above a floor: the highest id it had published
``late_commit_seconds`` ago. A row below the floor that is still unpublished was written by a transaction
that had not committed for longer than that; a scan from the start every ``full_scan_seconds`` finds it.
Ids come from one sequence without a session cache, so a lower id was always handed out earlier.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from dataclasses import dataclass

import asyncpg
from aiokafka import AIOKafkaProducer

from services.runtime import metrics
from services.runtime.db import OUTBOX_CHANNEL, transaction
from services.runtime.kafka import Record, send_all

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class OutboxBacklog:
    rows: int
    oldest_age_seconds: float


class OutboxRelay:
    def __init__(
        self,
        pool: asyncpg.Pool,
        producer: AIOKafkaProducer,
        source: str,
        *,
        batch_size: int,
        poll_interval_seconds: float,
        max_backoff_seconds: float,
        topic_prefix: str = "",
        late_commit_seconds: float = 5.0,
        full_scan_seconds: float = 10.0,
    ) -> None:
        self._pool = pool
        self._producer = producer
        self._source = source
        self._batch_size = batch_size
        self._poll_interval = poll_interval_seconds
        self._max_backoff = max_backoff_seconds
        self._wakeup = asyncio.Event()
        self._topic_prefix = topic_prefix
        self._late_commit_seconds = late_commit_seconds
        self._full_scan_seconds = full_scan_seconds
        self._published_marks: deque[tuple[float, int]] = deque()  # (monotonic time, highest id published by then)
        self._floor = 0
        self._next_full_scan = 0.0
        self.published_total = 0

    def _scan_from(self) -> int:
        """The id this scan starts above: 0 for a full scan, else the floor (see the module's docstring)."""
        now = time.monotonic()
        while self._published_marks and self._published_marks[0][0] <= now - self._late_commit_seconds:
            self._floor = max(self._floor, self._published_marks.popleft()[1])
        if now >= self._next_full_scan:
            self._next_full_scan = now + self._full_scan_seconds
            return 0
        return self._floor

    def _on_notify(self, _conn: object, _pid: int, _channel: str, payload: object) -> None:
        if payload == self._source:
            self._wakeup.set()

    async def run(self) -> None:
        """Publish until cancelled."""
        listener = await self._pool.acquire()
        await listener.add_listener(OUTBOX_CHANNEL, self._on_notify)
        backoff = self._poll_interval
        try:
            while True:
                try:
                    published = await self.publish_batch()
                    backoff = self._poll_interval
                except Exception as exc:
                    # Rows stay in the outbox; the next attempt publishes them again.
                    metrics.RETRIES.labels(self._source, "outbox").inc()
                    log.warning(
                        "outbox publish failed; will retry",
                        extra={"source": self._source, "error": type(exc).__name__},
                    )
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, self._max_backoff)
                    continue
                if published < self._batch_size:
                    self._wakeup.clear()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._wakeup.wait(), self._poll_interval)
        finally:
            with contextlib.suppress(Exception):
                await listener.remove_listener(OUTBOX_CHANNEL, self._on_notify)
            await self._pool.release(listener)

    async def publish_batch(self) -> int:
        async with transaction(self._pool) as conn:
            locked = await conn.fetchval(
                "SELECT pg_try_advisory_xact_lock(hashtext('parley.outbox'), hashtext($1))", self._source
            )
            if not locked:
                return 0
            # Between vacuums the table holds mostly dead rows and its statistics say it is empty, so the
            # planner may pick a scan of the whole heap and a sort; the (source, id) index is always right.
            await conn.execute("SET LOCAL enable_seqscan = off")
            rows = await conn.fetch(
                "SELECT id, topic, key, value, headers FROM outbox WHERE source = $1 AND id > $3 ORDER BY id LIMIT $2",
                self._source,
                self._batch_size,
                self._scan_from(),
            )
            if not rows:
                return 0
            records = [
                Record(
                    row["topic"], row["key"], row["value"], [(name, value.encode()) for name, value in row["headers"]]
                )
                for row in rows
            ]
            # Any failure keeps every row: the next attempt publishes them all again (consumers drop repeats).
            outcomes = await send_all(self._producer, records)
            failure = next((outcome for outcome in outcomes if outcome is not None), None)
            if failure is not None:
                raise failure
            await conn.execute("DELETE FROM outbox WHERE id = ANY($1::bigint[])", [row["id"] for row in rows])
        self._published_marks.append((time.monotonic(), max(row["id"] for row in rows)))
        self.published_total += len(rows)
        metrics.count_events_out(self._source, (row["topic"] for row in rows), self._topic_prefix)
        return len(rows)

    async def backlog(self) -> OutboxBacklog:
        """Rows of this source still waiting, and how long the oldest has waited (by the database's clock)."""
        row = await self._pool.fetchrow(
            """SELECT count(*) AS rows, COALESCE(EXTRACT(EPOCH FROM now() - min(created_at)), 0) AS oldest
               FROM outbox WHERE source = $1""",
            self._source,
        )
        assert row is not None
        return OutboxBacklog(rows=int(row["rows"]), oldest_age_seconds=max(float(row["oldest"]), 0.0))
