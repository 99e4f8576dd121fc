"""Watches the pipeline from outside, as an operator would: topics and the cases table.

Counts accepted and rejected feedback per channel from the topics, and cases per channel from
PostgreSQL, so what ``parley run`` reports is what really landed, not what processes believe.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections import Counter
from dataclasses import dataclass, field

import asyncpg
from aiokafka import AIOKafkaConsumer

from schemas import topics
from schemas.feedback import rejection_header
from services.runtime.kafka import client_options
from services.runtime.settings import Settings


@dataclass
class PipelineCounts:
    accepted: Counter[str] = field(default_factory=Counter)
    rejected: Counter[str] = field(default_factory=Counter)
    rejected_reasons: Counter[str] = field(default_factory=Counter)
    cases: Counter[str] = field(default_factory=Counter)
    triaged_priorities: Counter[str] = field(default_factory=Counter)


class PipelineMonitor:
    def __init__(self, settings: Settings, bootstrap_servers: str, pool: asyncpg.Pool) -> None:
        self._settings = settings
        self._pool = pool
        self._consumer = AIOKafkaConsumer(
            settings.topic(topics.FEEDBACK_RECEIVED),
            settings.topic(topics.FEEDBACK_REJECTED),
            settings.topic(topics.CASE_TRIAGED),
            **client_options(settings, bootstrap_servers),
            group_id=None,
            auto_offset_reset="earliest",
            max_partition_fetch_bytes=settings.kafka_max_message_bytes + 64 * 1024,
        )
        self.counts = PipelineCounts()
        self._cases_before: Counter[str] = Counter()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._cases_before = await self._cases_by_channel()  # a configured database may hold earlier runs
        await self._consumer.start()
        self._task = asyncio.ensure_future(self._consume())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._consumer.stop()

    async def _consume(self) -> None:
        received = self._settings.topic(topics.FEEDBACK_RECEIVED)
        triaged = self._settings.topic(topics.CASE_TRIAGED)
        source_header = rejection_header("source_topic")
        reason_header = rejection_header("reason")
        raw_prefix = self._settings.topic(topics.RAW_PREFIX)
        while True:
            batches = await self._consumer.getmany(timeout_ms=500)
            for partition, records in batches.items():
                for record in records:
                    if partition.topic == received:
                        self.counts.accepted[json.loads(record.value)["data"]["channel"]] += 1
                        continue
                    if partition.topic == triaged:
                        self.counts.triaged_priorities[json.loads(record.value)["data"]["priority"]] += 1
                        continue
                    headers = dict(record.headers)
                    source = headers.get(source_header, b"").decode()
                    self.counts.rejected[source.removeprefix(raw_prefix)] += 1
                    self.counts.rejected_reasons[headers.get(reason_header, b"?").decode()] += 1

    async def refresh_cases(self) -> None:
        self.counts.cases = await self._cases_by_channel() - self._cases_before

    async def _cases_by_channel(self) -> Counter[str]:
        rows = await self._pool.fetch("SELECT channel, count(*) AS n FROM cases GROUP BY channel")
        return Counter({row["channel"]: row["n"] for row in rows})
