"""Watches the pipeline from outside, as an operator would: topics, the cases table, the queue backlogs.

Counts accepted and rejected feedback per channel, triage results, and routing's deliveries per
queue (with how each relates to its case: new, merged, post update, escalated, split) from the
topics; cases per channel and each queue's backlog from PostgreSQL. So what ``parley run`` reports
is what really landed, not what processes believe.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections import Counter
from dataclasses import dataclass, field

import asyncpg
from aiokafka import AIOKafkaConsumer

from schemas import topics
from schemas.feedback import rejection_header
from schemas.values import Queue
from services.runtime.kafka import client_options
from services.runtime.settings import Settings


@dataclass
class PipelineCounts:
    accepted: Counter[str] = field(default_factory=Counter)
    rejected: Counter[str] = field(default_factory=Counter)
    rejected_reasons: Counter[str] = field(default_factory=Counter)
    cases: Counter[str] = field(default_factory=Counter)
    triaged_priorities: Counter[str] = field(default_factory=Counter)
    routed: Counter[tuple[str, str]] = field(default_factory=Counter)
    """Deliveries by (queue, what they are): new_case, merged, post_update, escalated, split, or
    public_opinion for the PR desk's copy of a spreading post's case."""
    overflowed: Counter[str] = field(default_factory=Counter)
    """Deliveries to the AI lane because the first queue was full, by that lane's queue."""
    alerts: Counter[str] = field(default_factory=Counter)
    """Reputational alerts (viral posts), by severity."""
    backlog: dict[str, int] = field(default_factory=dict)
    """Each queue's unaccepted cases, from routing's table."""

    def links(self) -> Counter[str]:
        """Deliveries of the case's own lane by kind (a feedback is routed once: new_case, merged or post_update)."""
        kinds: Counter[str] = Counter()
        for (_, kind), count in self.routed.items():
            if kind != "public_opinion":
                kinds[kind] += count
        return kinds

    @property
    def routed_feedback(self) -> int:
        """Feedback routing has decided on: each opened a case, joined one, or updated a post on one."""
        links = self.links()
        return links["new_case"] + links["merged"] + links["post_update"]

    def routed_to(self, queue: str) -> int:
        return sum(count for (name, _), count in self.routed.items() if name == queue)


class PipelineMonitor:
    def __init__(self, settings: Settings, bootstrap_servers: str, pool: asyncpg.Pool) -> None:
        self._settings = settings
        self._pool = pool
        self._consumer = AIOKafkaConsumer(
            settings.topic(topics.FEEDBACK_RECEIVED),
            settings.topic(topics.FEEDBACK_REJECTED),
            settings.topic(topics.CASE_TRIAGED),
            *(settings.topic(name) for name in topics.ROUTED_TOPICS),
            settings.topic(topics.REPUTATION_ALERTS),
            **client_options(settings, bootstrap_servers),
            group_id=None,
            auto_offset_reset="earliest",
            max_partition_fetch_bytes=settings.kafka_max_message_bytes + 64 * 1024,
        )
        self.counts = PipelineCounts()
        self._cases_before: Counter[str] = Counter()
        self._task: asyncio.Task[None] | None = None
        self._routed_seen: set[uuid.UUID] = set()  # an outbox relay may publish a record twice: count it once

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
        routed = {self._settings.topic(name) for name in topics.ROUTED_TOPICS}
        alerts = self._settings.topic(topics.REPUTATION_ALERTS)
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
                    if partition.topic in routed:
                        self._count_routed(json.loads(record.value))
                        continue
                    if partition.topic == alerts:
                        self.counts.alerts[json.loads(record.value)["data"]["severity"]] += 1
                        continue
                    headers = dict(record.headers)
                    source = headers.get(source_header, b"").decode()
                    self.counts.rejected[source.removeprefix(raw_prefix)] += 1
                    self.counts.rejected_reasons[headers.get(reason_header, b"?").decode()] += 1

    def _count_routed(self, event: dict[str, object]) -> None:
        event_id = uuid.UUID(str(event["id"]))
        if event_id in self._routed_seen:
            return
        self._routed_seen.add(event_id)
        data = event["data"]
        assert isinstance(data, dict)
        queue = str(data["queue"])
        link = data.get("link") or {}
        kind = "public_opinion" if data.get("lane") == "public_opinion" else str(link.get("kind", "new_case"))
        self.counts.routed[(queue, kind)] += 1
        if data.get("overflow") and kind != "escalated":
            self.counts.overflowed[queue] += 1

    async def refresh_cases(self) -> None:
        """Cases per channel and every queue's backlog, read from the database now."""
        self.counts.cases = await self._cases_by_channel() - self._cases_before
        try:
            rows = await self._pool.fetch("SELECT queue, waiting FROM routing.queues")
        except asyncpg.UndefinedTableError:
            rows = []  # routing has not migrated yet
        self.counts.backlog = {row["queue"]: row["waiting"] for row in rows}

    async def _cases_by_channel(self) -> Counter[str]:
        rows = await self._pool.fetch("SELECT channel, count(*) AS n FROM cases GROUP BY channel")
        return Counter({row["channel"]: row["n"] for row in rows})


def routing_progress(counts: PipelineCounts) -> str:
    """The routing part of a progress line."""
    links = counts.links()
    return (
        f"routed {counts.routed_feedback:>7,} (merged {links['merged'] + links['post_update']:,}, "
        f"AI overflow {sum(counts.overflowed.values()):,}, escalated {links['escalated']:,})"
    )


def routing_summary(counts: PipelineCounts) -> list[str]:
    """Per queue: what routing delivered there (and how it relates to cases) and the backlog now."""
    kinds = ("new_case", "merged", "post_update", "split", "escalated", "public_opinion")
    lines = [
        "Routed, by queue (deliveries; backlog = routed and not yet accepted):",
        f"  {'queue':<20} {'routed':>8} {'new case':>9} {'merged':>8} {'post upd':>9} {'split':>6} "
        f"{'escalated':>10} {'PR copy':>8} {'overflow in':>11} {'backlog':>8}",
    ]
    for queue in Queue:
        name = queue.value
        cells = " ".join(
            f"{counts.routed[(name, kind)]:>{width},}" for kind, width in zip(kinds, (9, 8, 9, 6, 10, 8), strict=True)
        )
        lines.append(
            f"  {name:<20} {counts.routed_to(name):>8,} {cells} {counts.overflowed[name]:>11,} "
            f"{counts.backlog.get(name, 0):>8,}"
        )
    links = counts.links()
    alerts = ", ".join(f"{severity} {n:,}" for severity, n in sorted(counts.alerts.items())) or "none"
    lines.append(
        f"Case identity: {counts.routed_feedback:,} feedback routed -> {links['new_case']:,} opened a case, "
        f"{links['merged']:,} joined an open case, {links['post_update']:,} updated a post's case; "
        f"viral-post alerts: {alerts}."
    )
    return lines
