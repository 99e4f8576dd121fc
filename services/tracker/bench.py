"""Tracker throughput: ``python -m services.tracker.bench`` (part of ``make bench``).

The processor's own work, minus the broker: batches of routed cases (and then a mixed stream of
merges and agent actions) parsed, loaded, decided and written in one transaction each (claims,
cases, hash-chained audit rows, outbox), exactly as the worker does, against a real PostgreSQL:
the server ``DATABASE_URL`` names (a scratch database is created and dropped) or an embedded one.
Prints cases per second and events per second.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from importlib import resources
from pathlib import Path
from typing import Any

import asyncpg

from schemas import topics
from services.runtime.db import connect_pool
from services.runtime.deadletter import InboundMessage
from services.runtime.embedded import start_embedded_database
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


def routed_value(template: dict[str, Any], feedback_id: uuid.UUID, case_id: uuid.UUID, kind: str, n: int) -> bytes:
    body = json.loads(json.dumps(template))
    at = (START + timedelta(seconds=n)).isoformat()
    body["id"] = str(uuid.uuid5(feedback_id, kind))
    body["time"] = at
    data = body["data"]
    data.update(
        case_id=str(case_id),
        feedback_id=str(feedback_id),
        customer_ref=f"C{n:08d}",
        routed_at=at,
        received_at=at,
        category="loan_approval",
        queue="loans",
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


@asynccontextmanager
async def scratch_database() -> AsyncIterator[str]:
    configured = os.environ.get("PARLEY_DATABASE_URL") or os.environ.get("DATABASE_URL")
    if not configured:
        with tempfile.TemporaryDirectory(prefix="parley-bench-") as directory:
            database = start_embedded_database(Path(directory) / "pg", delete_on_stop=True)
            try:
                yield database.url
            finally:
                database.stop()
        return
    name = f"parley_bench_tracker_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(configured)
    await admin.execute(f'CREATE DATABASE "{name}"')
    scheme, _, rest = configured.partition("://")
    authority, _, tail = rest.partition("/")
    _, question, query = tail.partition("?")
    try:
        yield f"{scheme}://{authority}/{name}{question}{query}"
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


async def run(cases: int, batch: int) -> None:
    settings = Settings()
    routed_topic = settings.topic(topics.ROUTED_PREFIX + "loans")
    agent_topic = settings.topic(topics.AGENT_ACTIONS)
    template = _template()
    feedback_ids = [uuid.uuid5(uuid.NAMESPACE_OID, f"bench:{n}") for n in range(cases)]
    case_ids = [case_id_for(f) for f in feedback_ids]
    opening = [
        InboundMessage(routed_topic, 0, n, None, routed_value(template, f, c, "new_case", n), [])
        for n, (f, c) in enumerate(zip(feedback_ids, case_ids, strict=True))
    ]
    # Then every case gets one merged feedback, a contact and a resolution (four events per case in all).
    mixed: list[InboundMessage] = []
    for n, case_id in enumerate(case_ids):
        joining = uuid.uuid5(uuid.NAMESPACE_OID, f"bench-merge:{n}")
        mixed.append(
            InboundMessage(routed_topic, 0, n, None, routed_value(template, joining, case_id, "merged", n), [])
        )
        mixed.append(
            InboundMessage(
                agent_topic, 0, 2 * n, None, action_value("contacted", case_id, n, contact_channel="phone"), []
            )
        )
        mixed.append(
            InboundMessage(
                agent_topic, 0, 2 * n + 1, None, action_value("resolved", case_id, n, resolution="explained"), []
            )
        )
    async with scratch_database() as url:
        pool = await connect_pool(url, min_size=1, max_size=2)
        try:
            tracker = Tracker(pool, settings)
            await tracker.handle(opening[:batch])  # warm up: connections, statement caches
            for label, messages, unit in (
                ("open cases (routed new_case)", opening[batch:], "cases"),
                ("mixed: merged + contacted + resolved", mixed, "events"),
            ):
                started, cpu_started = time.perf_counter(), time.process_time()
                for first in range(0, len(messages), batch):
                    await tracker.handle(messages[first : first + batch])
                elapsed = time.perf_counter() - started
                cpu = time.process_time() - cpu_started
                _out(
                    f"tracker bench: {label}: {len(messages):,} {unit} in {elapsed:.2f} s = "
                    f"{len(messages) / elapsed:,.0f} {unit}/s (tracker process CPU {cpu / elapsed:.0%}, "
                    f"batches of {batch})"
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m services.tracker.bench", description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=10_000, help="cases to open (then 3 more events each)")
    parser.add_argument("--batch", type=int, default=Settings().batch_max_records, help="records per transaction")
    args = parser.parse_args(argv)
    asyncio.run(run(args.cases, args.batch))
    return 0


if __name__ == "__main__":
    sys.exit(main())
