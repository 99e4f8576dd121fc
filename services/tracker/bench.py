"""Tracker throughput: ``python -m services.tracker.bench`` (part of ``make bench``).

The processor's own work, minus the broker: batches of routed cases (and then a mixed stream of
merges and agent actions) parsed, loaded, decided and written in one transaction each (claims,
cases, hash-chained audit rows, outbox), exactly as the worker does, against a real PostgreSQL:
the server ``DATABASE_URL`` names (a scratch database is created and dropped) or an embedded one.
Prints, per phase, events per second and the CPU each event costs: this process (the handler the worker's
consumer calls) plus the PostgreSQL backends that run its SQL, in milliseconds per event.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import sys
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from importlib import resources
from pathlib import Path
from typing import Any

import asyncpg
import psutil

from schemas import topics
from services.runtime.db import connect_pool
from services.runtime.deadletter import InboundMessage
from services.runtime.infra import bench_database
from services.runtime.settings import Settings
from services.tracker.app import Tracker
from services.tracker.logic import case_id_for

START = datetime(2026, 11, 22, 1, 0, tzinfo=UTC)


def _out(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def _template() -> dict[str, Any]:
    text = resources.files("schemas").joinpath("examples/com.parley.case.routed.v1.json").read_text(encoding="utf-8")
    body: dict[str, Any] = json.loads(text)
    return body


def routed_value(
    template: dict[str, Any], feedback_id: uuid.UUID, case_id: uuid.UUID, kind: str, n: int, pr_copy: bool = False
) -> bytes:
    body = json.loads(json.dumps(template))
    at = (START + timedelta(seconds=n)).isoformat()
    body["id"] = str(uuid.uuid5(feedback_id, f"{kind}:pr" if pr_copy else kind))
    body["time"] = at
    data = body["data"]
    data.update(
        case_id=str(case_id),
        feedback_id=str(feedback_id),
        customer_ref=f"C{n:08d}",
        routed_at=at,
        received_at=at,
        category="loan_approval",
        queue="public_opinion" if pr_copy else "loans",
        lane="public_opinion" if pr_copy else "primary",
        link={"kind": kind, "match_basis": "customer_token"} if kind == "merged" else {"kind": kind},
    )
    return json.dumps(body, ensure_ascii=False).encode()


def action_value(name: str, case_id: uuid.UUID, n: int, **fields: Any) -> bytes:
    return json.dumps(
        {
            "specversion": "1.0",
            "id": str(uuid.uuid5(case_id, f"{name}:{n}")),
            "source": "/desk/bench",
            "type": f"com.parley.agent.{name}.v1",
            "time": (START + timedelta(hours=1, seconds=n)).isoformat(),
            "data": {"case_id": str(case_id), "agent_id": "E1", **fields},
        }
    ).encode()


@dataclass
class Cpu:
    """CPU seconds: this process (the worker's handler) and the PostgreSQL backends serving its pool."""

    worker: float
    database: float


class CpuMeter:
    """Reads the CPU time of this process and of the database server processes behind the pool's connections.

    CPU, not wall time: other work shares the machine's cores. The database figure is every backend of the
    bench's own (scratch) database, so it is the SQL this handler causes and nothing else.
    """

    def __init__(self, backend_pids: list[int]) -> None:
        self._backends = [psutil.Process(pid) for pid in backend_pids]

    def read(self) -> Cpu:
        database = 0.0
        for backend in self._backends:
            times = backend.cpu_times()
            database += times.user + times.system
        return Cpu(worker=time.process_time(), database=database)


async def backend_pids(pool: asyncpg.Pool) -> list[int]:
    async with pool.acquire() as conn:
        rows = await conn.fetch("SELECT pid FROM pg_stat_activity WHERE datname = current_database()")
    return [row["pid"] for row in rows]


@dataclass
class Phase:
    label: str
    messages: list[InboundMessage]
    unit: str


def phases(cases: int) -> list[Phase]:
    """Three phases over ``cases`` cases: routed new cases, more routed deliveries, agent actions."""
    settings = Settings()
    template = _template()
    routed_topic = settings.topic(topics.ROUTED_PREFIX + "loans")
    pr_topic = settings.topic(topics.ROUTED_PREFIX + "public_opinion")
    agent_topic = settings.topic(topics.AGENT_ACTIONS)
    feedback_ids = [uuid.uuid5(uuid.NAMESPACE_OID, f"bench:{n}") for n in range(cases)]
    case_ids = [case_id_for(f) for f in feedback_ids]
    opening = [
        InboundMessage(routed_topic, 0, n, None, routed_value(template, f, c, "new_case", n), [])
        for n, (f, c) in enumerate(zip(feedback_ids, case_ids, strict=True))
    ]
    # Every case then gets one merged feedback and a PR-desk copy of its first feedback (routing sends one when a
    # social post spreads), then a contact and a resolution.
    routed_more: list[InboundMessage] = []
    actions: list[InboundMessage] = []
    for n, (feedback_id, case_id) in enumerate(zip(feedback_ids, case_ids, strict=True)):
        joining = uuid.uuid5(uuid.NAMESPACE_OID, f"bench-merge:{n}")
        routed_more.append(
            InboundMessage(routed_topic, 0, n, None, routed_value(template, joining, case_id, "merged", n), [])
        )
        routed_more.append(
            InboundMessage(pr_topic, 0, n, None, routed_value(template, feedback_id, case_id, "new_case", n, True), [])
        )
        actions.append(
            InboundMessage(
                agent_topic, 0, 2 * n, None, action_value("contacted", case_id, n, contact_channel="phone"), []
            )
        )
        actions.append(
            InboundMessage(
                agent_topic, 0, 2 * n + 1, None, action_value("resolved", case_id, n, resolution="explained"), []
            )
        )
    return [
        Phase("case.routed new_case (opens a case)", opening, "events"),
        Phase("case.routed merged + PR-desk copy", routed_more, "events"),
        Phase("agent.actions contacted + resolved", actions, "events"),
    ]


async def run(cases: int, batch: int, warm_up: int, profile: Path | None = None) -> dict[str, float]:
    """Runs the phases; returns CPU ms per event by phase (worker + database), and per routed event overall."""
    settings = Settings()
    prepared = phases(warm_up + cases)
    # The first ``warm_up`` cases of each phase warm connections and statement caches; they are not measured.
    warm = [Phase(p.label, p.messages[: len(p.messages) * warm_up // (warm_up + cases)], p.unit) for p in prepared]
    measured = [Phase(p.label, p.messages[len(w.messages) :], p.unit) for p, w in zip(prepared, warm, strict=True)]
    figures: dict[str, float] = {}
    async with bench_database("tracker") as url:
        pool = await connect_pool(url, min_size=2, max_size=2)
        try:
            tracker = Tracker(pool, settings)
            meter = CpuMeter(await backend_pids(pool))
            routed_events, routed_cpu = 0, 0.0
            profiler = cProfile.Profile(time.process_time) if profile else None  # CPU, like the figures
            for warming, phase in zip(warm, measured, strict=True):
                for first in range(0, len(warming.messages), batch):
                    await tracker.handle(warming.messages[first : first + batch])
                started, before = time.perf_counter(), meter.read()
                if profiler:
                    profiler.enable()
                for first in range(0, len(phase.messages), batch):
                    await tracker.handle(phase.messages[first : first + batch])
                if profiler:
                    profiler.disable()
                elapsed, after = time.perf_counter() - started, meter.read()
                count = len(phase.messages)
                worker_ms = (after.worker - before.worker) * 1000 / count
                database_ms = (after.database - before.database) * 1000 / count
                figures[phase.label] = worker_ms + database_ms
                if phase.label.startswith("case.routed"):
                    routed_events += count
                    routed_cpu += (worker_ms + database_ms) * count
                _out(
                    f"tracker bench: {phase.label}: {count:,} {phase.unit} in {elapsed:.2f} s = "
                    f"{count / elapsed:,.0f}/s; CPU per event {worker_ms + database_ms:.3f} ms "
                    f"(worker {worker_ms:.3f} ms + PostgreSQL {database_ms:.3f} ms; batches of {batch})"
                )
            figures["case.routed (all)"] = routed_cpu / routed_events
            if profiler and profile:
                profiler.dump_stats(profile)
            _out(
                f"tracker bench: CPU per consumed case.routed event, all routed phases: "
                f"{figures['case.routed (all)']:.3f} ms (worker + PostgreSQL)"
            )
            async with pool.acquire() as conn:
                rows = await conn.fetchval("SELECT count(*) FROM case_events")
                outbox = await conn.fetchval("SELECT count(*) FROM outbox")
                broken = await conn.fetchval(
                    "SELECT count(*) FROM cases c WHERE audit_seq <> (SELECT count(*) FROM case_events e "
                    "WHERE e.case_id = c.case_id)"
                )
            _out(
                f"tracker bench: {rows:,} audit rows, {outbox:,} outbox rows; "
                f"cases whose chain head disagrees with their rows: {broken}"
            )
        finally:
            await pool.close()
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m services.tracker.bench", description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=10_000, help="cases measured (then 4 more events each)")
    parser.add_argument("--warm-up", type=int, default=1_000, help="cases handled first in each phase, unmeasured")
    parser.add_argument("--batch", type=int, default=Settings().batch_max_records, help="records per transaction")
    parser.add_argument(
        "--profile", type=Path, help="write a cProfile of the measured handler calls here (figures then include it)"
    )
    args = parser.parse_args(argv)
    asyncio.run(run(args.cases, args.batch, args.warm_up, args.profile))
    return 0


if __name__ == "__main__":
    sys.exit(main())
