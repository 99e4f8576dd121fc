"""CPU per consumed event of the SLA batch handler: ``python -m services.sla.batch_bench``.

Feeds case.tracking records, as the tracker emits them (each new case's opened, triaged and routed steps
together, a share of merges into earlier cases), through the same handler the worker's agent calls
(``SlaEngine.handle`` and the alert counting), on the shipped policies, against a real PostgreSQL: a
database of its own on the ``DATABASE_URL`` server (else the embedded one), created and dropped here.

CPU, not wall time (others may share the cores): this process's ``time.process_time()`` and the
PostgreSQL backend's CPU (psutil, user + system) over the handled batches, in several passes of new cases
(the median and the lowest are reported: others' load on the machine only ever adds), after warm-up cases and
an ANALYZE, as a running database has statistics.

Measured on the 2-core machine (local PostgreSQL, 3 passes of 1,500 cases, lowest pass; each figure the median of 3
runs alternating with the handler as it was before the performance work, cc53d58), ms of CPU per consumed event,
worker + PostgreSQL backend: batches of 150: 0.204 + 0.056 = 0.256 before, 0.085 + 0.034 = 0.119 after; batches of
500: 0.245 before, 0.108 after; batches of 50: 0.312 before, 0.164 after.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import random
import statistics
import sys
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
import psutil

from schemas import topics
from schemas.channels import Channel
from schemas.tracking import (
    CaseMerged,
    CaseMergedEvent,
    CaseOpened,
    CaseOpenedEvent,
    CaseRoutedStep,
    CaseRoutedStepEvent,
    CaseTriagedStep,
    CaseTriagedStepEvent,
)
from schemas.values import CaseStatus, Category, Jurisdiction, Priority, Queue
from services.runtime.db import connect_pool
from services.runtime.deadletter import InboundMessage
from services.runtime.infra import bench_database
from services.runtime.settings import Settings
from services.sla.app import SlaEngine, count_alerts
from services.sla.policies import load_policy_book
from services.sla.store import record_policy_versions

PRESETS = Path(__file__).resolve().parents[2] / "deploy" / "config" / "sla-policies.yaml"
SHANGHAI = ZoneInfo("Asia/Shanghai")
FIRST_OPENED = datetime(2026, 11, 24, 9, 0, tzinfo=SHANGHAI)
CHANNELS = {
    Channel.HOTLINE: 30,
    Channel.APP: 30,
    Channel.SOCIAL: 15,
    Channel.BRANCH: 10,
    Channel.LETTER: 10,
    Channel.REGULATOR: 5,
}
QUEUE_OF = {
    Category.REPAYMENT_HARDSHIP: Queue.REPAYMENT_HARDSHIP,
    Category.LOAN_APPROVAL: Queue.LOANS,
    Category.INTEREST_FEES: Queue.LOANS,
    Category.WEALTH_PRODUCT: Queue.WEALTH_PRODUCTS,
    Category.CARD_PAYMENT_ACCOUNT: Queue.CARDS_PAYMENTS,
    Category.FRAUD_SECURITY: Queue.FRAUD,
    Category.PRIVACY_DATA: Queue.PRIVACY,
    Category.COLLECTION_CONDUCT: Queue.COLLECTIONS_CONDUCT,
    Category.SERVICE_QUALITY: Queue.SENIOR_COMPLAINTS,
    Category.GENERAL_INQUIRY: Queue.AI_ASSISTANT,
}
PRIORITIES = {Priority.P1: 5, Priority.P2: 25, Priority.P3: 50, Priority.P4: 20}


def _message(value: bytes, key: str) -> InboundMessage:
    return InboundMessage(topics.CASE_TRACKING, 0, 0, key.encode(), value, [])


def tracking_stream(cases: int, merge_share: float, seed: int) -> list[InboundMessage]:
    """Each case's opened, triaged and routed steps in a row, as one tracker batch emits them; merges between."""
    rng = random.Random(seed)  # noqa: S311 - reproducible traffic, not secrets
    channels, channel_weights = list(CHANNELS), list(CHANNELS.values())
    priorities, priority_weights = list(PRIORITIES), list(PRIORITIES.values())
    messages: list[InboundMessage] = []
    opened: list[uuid.UUID] = []
    for number in range(cases):
        case_id = uuid.UUID(int=rng.getrandbits(128), version=4)
        key = str(case_id)
        at = FIRST_OPENED + timedelta(seconds=number * 0.5)
        channel = rng.choices(channels, channel_weights)[0]
        category = rng.choice(list(Category))
        priority = rng.choices(priorities, priority_weights)[0]
        regulator_deadline = at + timedelta(days=10) if channel is Channel.REGULATOR and rng.random() < 0.5 else None
        steps: list[Any] = [
            CaseOpenedEvent(
                id=uuid.uuid5(case_id, "opened"),
                source="/parley/tracker",
                time=at,
                subject=key,
                data=CaseOpened(
                    case_id=case_id,
                    status=CaseStatus.OPENED,
                    customer_ref=f"C{rng.randrange(10**8):08d}",
                    channel=channel,
                    feedback_id=uuid.uuid5(case_id, "feedback"),
                    opened_at=at,
                    jurisdiction=Jurisdiction.CN,
                    regulator_deadline=regulator_deadline,
                ),
            ),
            CaseTriagedStepEvent(
                id=uuid.uuid5(case_id, "triaged"),
                source="/parley/tracker",
                time=at + timedelta(seconds=1),
                subject=key,
                data=CaseTriagedStep(case_id=case_id, status=CaseStatus.TRIAGED, category=category, priority=priority),
            ),
            CaseRoutedStepEvent(
                id=uuid.uuid5(case_id, "routed"),
                source="/parley/tracker",
                time=at + timedelta(seconds=1),
                subject=key,
                data=CaseRoutedStep(
                    case_id=case_id, status=CaseStatus.ROUTED, queue=QUEUE_OF[category], priority=priority
                ),
            ),
        ]
        if opened and rng.random() < merge_share:
            earlier = rng.choice(opened)
            steps.append(
                CaseMergedEvent(
                    id=uuid.uuid5(earlier, f"merged/{number}"),
                    source="/parley/tracker",
                    time=at + timedelta(seconds=2),
                    subject=str(earlier),
                    data=CaseMerged(
                        case_id=earlier,
                        status=CaseStatus.ROUTED,
                        feedback_id=uuid.uuid5(earlier, f"feedback/{number}"),
                        channel=channel,
                        match_basis="customer_token",
                        new_facts=rng.random() < 0.5,
                    ),
                )
            )
        opened.append(case_id)
        messages.extend(_message(step.to_json_bytes(), str(step.data.case_id)) for step in steps)
    return messages


@dataclass
class Figures:
    events: int
    batches: int
    alerts: int
    worker_cpu_seconds: float
    database_cpu_seconds: float

    @property
    def worker_ms(self) -> float:
        return self.worker_cpu_seconds * 1000 / self.events

    @property
    def database_ms(self) -> float:
        return self.database_cpu_seconds * 1000 / self.events


class _Host:
    """What the engine needs of its processor app: the pool."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool


def _backend_cpu(process: psutil.Process) -> float:
    times = process.cpu_times()
    return float(times.user + times.system)


async def measure(url: str, args: argparse.Namespace) -> list[Figures]:
    settings = Settings()
    book = load_policy_book(PRESETS)
    pool = await connect_pool(url, min_size=1, max_size=1)
    try:
        async with pool.acquire() as conn:
            await record_policy_versions(conn, book.versions)
            backend = psutil.Process(await conn.fetchval("SELECT pg_backend_pid()"))
        engine = SlaEngine(_Host(pool), book, settings)  # type: ignore[arg-type]
        warm = tracking_stream(args.warmup_cases, args.merge_share, args.seed - 1)
        for first in range(0, len(warm), args.batch):
            count_alerts((await engine.handle(warm[first : first + args.batch])).alerts)
        async with pool.acquire() as conn:
            # A running database has statistics (autovacuum analyses a growing table within a minute or so); a
            # fresh one would be scanned whole for every batch's handful of cases until then.
            await conn.execute("ANALYZE sla.cases, sla.clocks, sla.clock_journal, processed_messages, outbox")
        passes: list[Figures] = []
        profiler = cProfile.Profile() if args.profile else None
        for number in range(args.repeat):
            # Each pass its own cases (the database keeps growing, as it does in production).
            stream = tracking_stream(args.cases, args.merge_share, args.seed + number)
            batches = [stream[i : i + args.batch] for i in range(0, len(stream), args.batch)]
            events = alerts = 0
            database_before = _backend_cpu(backend)
            worker_before = time.process_time()
            if profiler is not None:
                profiler.enable()
            for batch in batches:
                result = await engine.handle(batch)
                count_alerts(result.alerts)
                events += len(batch)
                alerts += len(result.alerts)
            if profiler is not None:
                profiler.disable()
            worker = time.process_time() - worker_before
            database = _backend_cpu(backend) - database_before
            passes.append(Figures(events, len(batches), alerts, worker, database))
        if profiler is not None:
            profiler.dump_stats(args.profile)
        return passes
    finally:
        await pool.close()


async def run(args: argparse.Namespace) -> list[Figures]:
    async with bench_database("sla_batch") as url:
        return await measure(url, args)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m services.sla.batch_bench", description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=2000, help="new cases per pass (three tracking steps each)")
    parser.add_argument("--repeat", type=int, default=5, help="timed passes (their median and lowest are reported)")
    parser.add_argument("--merge-share", type=float, default=0.1, help="share of cases followed by a merge")
    parser.add_argument(
        "--batch",
        type=int,
        default=150,
        help="records per handled batch: at 1,000 feedback/s the tracker emits ~3,000 steps/s, ~150 per 50 ms wait",
    )
    parser.add_argument("--warmup-cases", type=int, default=1000, help="cases handled (then analysed) before timing")
    parser.add_argument("--seed", type=int, default=8)
    parser.add_argument("--profile", help="write a cProfile of the timed batches to this file")
    args = parser.parse_args(argv)
    passes = asyncio.run(run(args))
    for number, figures in enumerate(passes, start=1):
        print(  # noqa: T201 - the bench's report
            f"pass {number}: {figures.events:,} events in {figures.batches} batches of up to {args.batch}, "
            f"{figures.alerts:,} alerts: worker {figures.worker_ms:.3f} ms CPU/event, PostgreSQL backend "
            f"{figures.database_ms:.3f} ms CPU/event, together {figures.worker_ms + figures.database_ms:.3f} ms/event"
        )
    for label, pick in (("median", statistics.median), ("lowest", min)):
        worker, database = pick(f.worker_ms for f in passes), pick(f.database_ms for f in passes)
        print(  # noqa: T201 - the bench's report
            f"{label} of {len(passes)} passes (batches of up to {args.batch}): worker {worker:.3f} ms CPU/event, "
            f"PostgreSQL backend {database:.3f} ms CPU/event, together {worker + database:.3f} ms CPU/event"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
