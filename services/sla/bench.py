"""SLA timers at scale: ``python -m services.sla.bench`` (part of ``make bench``).

1. Arms 1,000,000 clocks in PostgreSQL (COPY, in batches), as the engine would have armed them:
   each row comes from the pure logic (deadline, next due alert) on a policy with a 15-day
   clock; reports the database's arm rate, and separately the logic's rate (clocks per second
   computed from tracking events, one core).
2. Starts a real SLA worker (``python -m services.sla``) on that database and the broker.
3. With the million armed, adds a few thousand clocks whose deadlines fall over the next
   seconds, and measures, for each, the delay between its deadline and (a) the poller's commit
   of the breach (the clock row's update time, database clock) and (b) the breach alert's arrival
   on ``sla.alerts`` (a consumer in this process). Median and p99; the worker's memory (RSS).

Uses ``DATABASE_URL`` (a fresh database is created on that server, dropped at the end) and
``KAFKA_BOOTSTRAP_SERVERS`` when set, else the embedded PostgreSQL and broker.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from contextlib import AsyncExitStack
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import psutil
import yaml
from aiokafka import AIOKafkaConsumer

from schemas import topics
from schemas.values import ClockName
from services.runtime.db import connect_pool
from services.runtime.embedded import die_with_parent, start_embedded_broker
from services.runtime.infra import bench_database
from services.runtime.kafka import ensure_topics
from services.runtime.settings import Settings
from services.sla import logic
from services.sla.logic import ClockState, ClockStatus, SlaEvent
from services.sla.policies import book_from_file, load_policy_book, parse_policy_document
from services.sla.store import record_policy_versions

PRESETS = Path(__file__).resolve().parents[2] / "deploy" / "config" / "sla-policies.yaml"
POLICIES = """
calendars:
  desk: {time_zone: Asia/Shanghai, holidays: cn, working_hours: ["09:00-12:00", "13:00-18:00"]}
  always: {time_zone: UTC, holidays: every-day, working_hours: ["00:00-24:00"]}
policies:
  - id: bench-resolution
    version: 1
    effective_from: 2020-01-01T00:00:00Z
    clocks:
      - name: resolution
        calendar: desk
        target: {amount: 15, unit: days, counting: calendar, day_end: midnight, roll_to_working_day: true}
        starts_on: [tracking.opened]
        stops_on: [tracking.resolved]
        warnings: [{percent: 60}, {percent: 80}, {before: 1d}]
        escalations: [{level: 1, after: 0s, to: senior_complaints}]
  - id: bench-breach
    version: 1
    effective_from: 2020-01-01T00:00:00Z
    clocks:
      - name: first_contact
        calendar: always
        target: {amount: 1, unit: minutes}
        starts_on: [tracking.opened]
        stops_on: [tracking.first_contact]
"""
COLUMNS = [
    "case_id",
    "clock",
    "cycle",
    "policy_id",
    "policy_version",
    "calendar",
    "status",
    "started_at",
    "deadline",
    "priority",
    "queue",
    "next_due_at",
]


def _row(clock: ClockState) -> tuple[Any, ...]:
    return (
        clock.case_id,
        clock.clock.value,
        clock.cycle,
        clock.policy_id,
        clock.policy_version,
        clock.calendar,
        clock.status.value,
        clock.started_at,
        clock.deadline,
        clock.priority,
        clock.queue,
        clock.next_due_at,
    )


def _armed(case_id: uuid.UUID, template: ClockState) -> tuple[Any, ...]:
    return (case_id, *_row(template)[1:])


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


@dataclass
class Figures:
    clocks: int = 0
    copy_seconds: float = 0.0
    logic_clocks_per_second: float = 0.0
    measured: int = 0
    commit_delays: list[float] | None = None
    arrival_delays: list[float] | None = None
    rss_peak_mb: float = 0.0
    rss_end_mb: float = 0.0
    table_mb: float = 0.0
    settle_seconds: float = 0.0


def logic_rate(seconds: float) -> float:
    """Clocks per second the pure logic arms from tracking events (the shipped presets; CN cases)."""
    book = load_policy_book(PRESETS)
    started_at = datetime(2026, 11, 2, 10, tzinfo=UTC)
    clocks = 0
    begin = time.perf_counter()
    while time.perf_counter() - begin < seconds:
        for n in range(200):
            case_id = uuid.uuid4()
            at = started_at + timedelta(minutes=n)
            opened = SlaEvent(uuid.uuid4(), logic.OPENED, case_id, at, opened_at=at, channel="app", jurisdiction="CN")
            outcome = logic.on_event(None, [], opened, book)
            triaged = SlaEvent(uuid.uuid4(), logic.TRIAGED, case_id, at, category="loan_approval", priority="P2")
            outcome = logic.on_event(outcome.facts, list(outcome.clocks.values()), triaged, book)
            clocks += len(outcome.clocks)
    return clocks / (time.perf_counter() - begin)


async def arm_background(pool: asyncpg.Pool, count: int, batch: int, now: datetime) -> float:
    """COPY ``count`` clocks of 15 days started over the last two days; returns the seconds COPY took."""
    book = book_from_file(parse_policy_document(yaml.safe_load(POLICIES), "bench"))
    templates: list[ClockState] = []
    for minute in range(0, 2 * 24 * 60, 3):  # 960 start times, three minutes apart
        start = now - timedelta(days=2) + timedelta(minutes=minute)
        clock = ClockState(
            case_id=uuid.UUID(int=0),
            clock=ClockName.RESOLUTION,
            cycle=0,
            policy_id="bench-resolution",
            policy_version=1,
            calendar="desk",
            status=ClockStatus.RUNNING,
            started_at=start,
            deadline=start,
            priority="P3",
            queue="loans",
        )
        deadline = logic.compute_deadline(book, clock)
        assert deadline is not None
        clock = replace(clock, deadline=deadline)
        templates.append(replace(clock, next_due_at=min(m.at for m in logic.marks(book, clock))))
    spent = 0.0
    async with pool.acquire() as conn:
        for first in range(0, count, batch):
            rows = [
                _armed(uuid.uuid4(), templates[i % len(templates)]) for i in range(first, min(count, first + batch))
            ]
            began = time.perf_counter()
            await conn.copy_records_to_table("clocks", schema_name="sla", columns=COLUMNS, records=rows)
            spent += time.perf_counter() - began
    return spent


async def arm_measured(pool: asyncpg.Pool, count: int, first_due: datetime, window: float) -> dict[uuid.UUID, datetime]:
    """Clocks whose one-minute deadlines fall evenly over the window; breach is their only alert."""
    deadlines: dict[uuid.UUID, datetime] = {}
    rows = []
    for n in range(count):
        deadline = first_due + timedelta(seconds=window * n / count)
        case_id = uuid.uuid4()
        deadlines[case_id] = deadline
        start = deadline - timedelta(minutes=1)
        rows.append(
            (
                case_id,
                "first_contact",
                0,
                "bench-breach",
                1,
                "always",
                "running",
                start,
                deadline,
                "P1",
                "fraud",
                deadline,
            )
        )
    async with pool.acquire() as conn:
        await conn.copy_records_to_table("clocks", schema_name="sla", columns=COLUMNS, records=rows)
    return deadlines


async def collect_breaches(
    bootstrap: str, topic: str, deadlines: dict[uuid.UUID, datetime], wait_seconds: float
) -> dict[uuid.UUID, float]:
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, group_id=None, auto_offset_reset="earliest", fetch_max_wait_ms=20
    )
    await consumer.start()
    arrived: dict[uuid.UUID, float] = {}
    try:
        until = time.monotonic() + wait_seconds
        while len(arrived) < len(deadlines) and time.monotonic() < until:
            batches = await consumer.getmany(timeout_ms=100)
            now = time.time()
            for batch in batches.values():
                for record in batch:
                    event = json.loads(record.value)
                    if event["type"] != "com.parley.sla.breached.v1":
                        continue
                    case_id = uuid.UUID(event["data"]["case_id"])
                    if case_id in deadlines and case_id not in arrived:
                        arrived[case_id] = now - deadlines[case_id].timestamp()
    finally:
        await consumer.stop()
    return arrived


def start_worker(env: dict[str, str], log: Any) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "services.sla"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        preexec_fn=die_with_parent,
    )


async def run(args: argparse.Namespace) -> Figures:
    figures = Figures(clocks=args.clocks, measured=args.measured)
    figures.logic_clocks_per_second = logic_rate(args.logic_seconds)
    async with AsyncExitStack() as stack:
        work_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="parley-sla-bench-")))
        settings = Settings()
        bootstrap = settings.kafka_bootstrap_servers
        if not bootstrap:
            broker = start_embedded_broker(work_dir / "broker.log")
            stack.callback(broker.stop)
            bootstrap = broker.bootstrap_servers
        url = await stack.enter_async_context(bench_database("sla"))
        prefix = f"bench-{uuid.uuid4().hex[:6]}."
        pool = await connect_pool(url, min_size=1, max_size=2)
        worker: subprocess.Popen[bytes] | None = None
        try:
            policies = work_dir / "sla-policies.yaml"
            policies.write_text(POLICIES, encoding="utf-8")
            book = book_from_file(parse_policy_document(yaml.safe_load(POLICIES), "bench"))
            async with pool.acquire() as conn:
                await record_policy_versions(conn, book.versions)
            now = datetime.now(UTC)
            print(f"Arming {args.clocks:,} clocks (COPY, batches of {args.batch:,}) ...", flush=True)
            figures.copy_seconds = await arm_background(pool, args.clocks, args.batch, now)
            # Settle after the bulk load, as autovacuum and the checkpointer would: what is measured next is a
            # database holding a million clocks, not one still writing them out.
            settle_began = time.perf_counter()
            async with pool.acquire() as conn:
                await conn.execute("VACUUM (ANALYZE) sla.clocks")
                try:
                    await conn.execute("CHECKPOINT")
                except asyncpg.InsufficientPrivilegeError:
                    print("note: no privilege to CHECKPOINT; measuring while the load may still be flushed")
                size = await conn.fetchval("SELECT pg_total_relation_size('sla.clocks')")
            figures.settle_seconds = time.perf_counter() - settle_began
            figures.table_mb = size / 1e6
            bench_settings = Settings(kafka_bootstrap_servers=bootstrap, kafka_topic_prefix=prefix)
            await ensure_topics(bench_settings, bootstrap, topics.ALL_TOPICS)
            env = {
                **os.environ,
                "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
                "DATABASE_URL": url,
                "PARLEY_KAFKA_TOPIC_PREFIX": prefix,
                "PARLEY_DATA_DIR": str(work_dir / "data"),
                "PARLEY_SLA_POLICIES_PATH": str(policies),
                "PARLEY_LOG_FORMAT": "text",
            }
            log = (work_dir / "sla.log").open("wb")
            stack.callback(log.close)
            worker = start_worker(env, log)
            process = psutil.Process(worker.pid)
            began = time.monotonic()
            while "worker ready" not in (work_dir / "sla.log").read_text(errors="replace"):
                if worker.poll() is not None or time.monotonic() - began > 120:
                    raise RuntimeError("the SLA worker did not start:\n" + (work_dir / "sla.log").read_text()[-3000:])
                await asyncio.sleep(0.2)
            print(
                f"SLA worker ready in {time.monotonic() - began:.1f} s; adding {args.measured:,} clocks due over "
                f"the next {args.window:.0f} s",
                flush=True,
            )
            first_due = datetime.now(UTC) + timedelta(seconds=3)
            deadlines = await arm_measured(pool, args.measured, first_due, args.window)
            collector = asyncio.ensure_future(
                collect_breaches(bootstrap, bench_settings.topic(topics.SLA_ALERTS), deadlines, args.window + 30)
            )
            peak = 0
            while not collector.done():
                peak = max(peak, process.memory_info().rss)
                await asyncio.sleep(0.2)
            arrived = collector.result()
            figures.rss_peak_mb = peak / 1e6
            figures.rss_end_mb = process.memory_info().rss / 1e6
            async with pool.acquire() as conn:
                rows = await conn.fetch(
                    """SELECT extract(epoch FROM updated_at - deadline) AS delay FROM sla.clocks
                       WHERE policy_id = 'bench-breach' AND 'breached' = ANY(fired)"""
                )
                fired_background = await conn.fetchval(
                    "SELECT count(*) FROM sla.clocks WHERE policy_id = 'bench-resolution' AND cardinality(fired) > 0"
                )
            figures.commit_delays = [float(r["delay"]) for r in rows]
            figures.arrival_delays = list(arrived.values())
            if fired_background:
                print(f"note: {fired_background} background clocks fired during the run", flush=True)
        finally:
            if worker is not None and worker.poll() is None:
                worker.terminate()
                try:
                    worker.wait(20)
                except subprocess.TimeoutExpired:
                    worker.kill()
            await pool.close()
    return figures


def report(figures: Figures) -> None:
    print()
    print(
        f"Clocks armed in PostgreSQL: {figures.clocks:,} in {figures.copy_seconds:.1f} s of COPY = "
        f"{figures.clocks / figures.copy_seconds:,.0f} clocks/s; table with indexes {figures.table_mb:,.0f} MB; "
        f"vacuum and checkpoint after the load {figures.settle_seconds:.1f} s"
    )
    print(f"Clocks armed by the logic from tracking events: {figures.logic_clocks_per_second:,.0f} clocks/s (one core)")
    print(f"SLA worker memory (RSS): peak {figures.rss_peak_mb:,.0f} MB, at the end {figures.rss_end_mb:,.0f} MB")
    for label, delays in (
        ("deadline -> breach committed (poller)", figures.commit_delays or []),
        ("deadline -> breach alert on sla.alerts", figures.arrival_delays or []),
    ):
        if not delays:
            print(f"{label}: none measured")
            continue
        print(
            f"{label}: {len(delays):,}/{figures.measured:,} clocks, median {statistics.median(delays) * 1000:,.0f} ms, "
            f"p99 {percentile(delays, 0.99) * 1000:,.0f} ms, max {max(delays) * 1000:,.0f} ms"
        )
    arrival = figures.arrival_delays or []
    if arrival:
        verdict = "met" if len(arrival) == figures.measured and percentile(arrival, 0.99) < 1.0 else "NOT met"
        print(f"Target p99 < 1 s from deadline to alert on the topic, with {figures.clocks:,} armed: {verdict}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m services.sla.bench", description=__doc__.splitlines()[0])
    parser.add_argument("--clocks", type=int, default=1_000_000, help="clocks armed before measuring")
    parser.add_argument("--batch", type=int, default=100_000, help="rows per COPY")
    parser.add_argument("--measured", type=int, default=2_000, help="clocks whose breach delay is measured")
    parser.add_argument("--window", type=float, default=20.0, help="seconds over which their deadlines fall")
    parser.add_argument("--logic-seconds", type=float, default=3.0, help="how long to time the logic")
    args = parser.parse_args(argv)
    report(asyncio.run(run(args)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
