"""Routing throughput: ``python -m services.routing.bench`` (part of ``make bench``).

The processor's own work, minus the broker: simulated channel traffic (follow-ups of recent
customers through other channels, updates of social posts, anonymous posts) is masked and triaged
first, untimed; then the case.triaged events go through routing in batches, each one transaction as
in the worker (claims, identity and placement, virality, outbox, queue counters), against a real
PostgreSQL: the server ``DATABASE_URL`` names (a scratch database is created and dropped) or an
embedded one; the first 1,000 events are routed untimed and the tables analysed (a running database
has statistics). Prints events per second and CPU per event: this process (the batch handler, as the
worker calls it) and the scratch database's PostgreSQL backends (their SQL), read with psutil. The prepared
records leave this process with about as many live objects as a worker has (~100,000), so the garbage
collector costs what it costs there. Then every case is made overdue and the escalation timer runs.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import random
import sys
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import psutil

from schemas import topics
from schemas.channels import SocialDetails
from schemas.triage import CaseTriagedEvent
from services.intake.logic import Accepted, normalise
from services.routing.app import Router
from services.routing.rules import load_rules
from services.runtime.db import connect_pool
from services.runtime.deadletter import InboundMessage
from services.runtime.infra import bench_database
from services.runtime.settings import Settings
from services.simulator.app import CHANNEL_WEIGHTS
from services.simulator.logic import Memory, generate
from services.triage.app import triaged_event
from services.triage.logic import Triage

START = datetime(2026, 11, 22, 1, 0, tzinfo=UTC)


def _out(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def triaged_messages(count: int, topic: str, seed: int = 2026) -> list[InboundMessage]:
    """``count`` case.triaged records from simulated traffic, as triage would publish them."""
    rng = random.Random(seed)  # noqa: S311 - simulation
    memory = Memory()
    channels, weights = list(CHANNEL_WEIGHTS), list(CHANNEL_WEIGHTS.values())
    accepted = []
    for n in range(count):
        at = START + timedelta(seconds=n / 50)  # 50 messages a second of event time
        message = generate(rng.choices(channels, weights)[0], rng, at, n, malformed_share=0.0, memory=memory)
        outcome = normalise(message.channel, message.value, received_at=at, max_body_bytes=1 << 20, pii_key=b"bench")
        assert isinstance(outcome, Accepted)
        accepted.append(outcome.event)
    triage = Triage.shipped()
    results = triage.assess_many(
        [
            (f.data.text, f.data.channel, f.data.details if isinstance(f.data.details, SocialDetails) else None)
            for f in accepted
        ]
    )
    records = []
    for offset, (feedback, result) in enumerate(zip(accepted, results, strict=True)):
        event = triaged_event(feedback, result, triage.ruleset_version, feedback.time)
        key = (feedback.data.customer_ref or str(feedback.id)).encode()
        records.append(InboundMessage(topic, 0, offset, key, event.to_json_bytes(), []))
    return records


async def backend_cpu_seconds(pool: asyncpg.Pool) -> dict[int, float]:
    """CPU seconds (user + system) each PostgreSQL backend of this bench's database has used so far."""
    async with pool.acquire() as conn:
        pids = [
            row["pid"]
            for row in await conn.fetch("SELECT pid FROM pg_stat_activity WHERE datname = current_database()")
        ]
    used = {}
    for pid in pids:
        try:
            times = psutil.Process(pid).cpu_times()
        except psutil.Error:  # gone, or not ours to read
            continue
        used[pid] = times.user + times.system
    return used


def backend_cpu_delta(before: dict[int, float], after: dict[int, float]) -> float:
    return sum(seconds - before.get(pid, 0.0) for pid, seconds in after.items())


def mix_of(messages: list[InboundMessage]) -> Counter[str]:
    """What the timed events are: anonymous or identified customers, which channels."""
    mix: Counter[str] = Counter()
    for message in messages:
        data = CaseTriagedEvent.model_validate_json(message.value).data
        mix["identified" if data.customer_ref else "anonymous"] += 1
        mix[f"channel_{data.channel.value}"] += 1
    return mix


async def run(count: int, batch: int, warm_up: int, profile: Path | None) -> None:
    settings = Settings()
    rules = load_rules(settings.routing_rules_path)
    prepared_at = time.perf_counter()
    warm_up = max(warm_up, batch)
    messages = triaged_messages(warm_up + count, settings.topic(topics.CASE_TRIAGED))
    timed = messages[warm_up:]
    mix = mix_of(timed)
    _out(
        f"routing bench: {len(messages):,} triaged events prepared in {time.perf_counter() - prepared_at:.1f} s; "
        f"timed: {mix['identified']:,} from identified customers, {mix['anonymous']:,} anonymous, "
        + ", ".join(
            f"{key.removeprefix('channel_')} {n:,}" for key, n in sorted(mix.items()) if key.startswith("channel_")
        )
    )
    async with bench_database("routing") as url:
        # Both connections open from the start, so every backend's CPU is counted from before the timed run.
        pool = await connect_pool(url, min_size=2, max_size=2)
        try:
            router = Router(pool, settings, rules)
            # Warm up (connections, statement caches, some history), then statistics, as a running database has.
            for first in range(0, warm_up, batch):
                await router.handle(messages[first : min(first + batch, warm_up)])
            async with pool.acquire() as conn:
                await conn.execute("ANALYZE")
            counts: Counter[str] = Counter()
            profiler = cProfile.Profile(time.process_time) if profile else None
            backends_before = await backend_cpu_seconds(pool)
            started, cpu_started = time.perf_counter(), time.process_time()
            if profiler:
                profiler.enable()
            for first in range(0, len(timed), batch):
                counts.update(await router.handle(timed[first : first + batch]))
            if profiler:
                profiler.disable()
            elapsed = time.perf_counter() - started
            cpu = time.process_time() - cpu_started
            database_cpu = backend_cpu_delta(backends_before, await backend_cpu_seconds(pool))
            if profiler and profile:
                profiler.dump_stats(profile)
            events = len(timed)
            _out(
                f"routing bench: {events:,} triaged events routed in {elapsed:.2f} s = {events / elapsed:,.0f}/s "
                f"(batches of {batch}): {counts['routed_new_case']:,} new cases, {counts['routed_merged']:,} merged, "
                f"{counts['routed_post_update']:,} post updates, {counts['routed_public_opinion']:,} PR copies, "
                f"{counts['alerts']:,} alerts, {counts['overflowed']:,} overflowed to the AI lane"
            )
            _out(
                f"routing bench: CPU per triaged event: worker {cpu / events * 1000:.3f} ms + PostgreSQL "
                f"{database_cpu / events * 1000:.3f} ms = {(cpu + database_cpu) / events * 1000:.3f} ms"
            )
            async with pool.acquire() as conn:
                due = await conn.execute(
                    "UPDATE routing.assignments SET due_at = $1 WHERE due_at IS NOT NULL", START - timedelta(days=1)
                )
            overdue = int(due.split()[-1])
            started = time.perf_counter()
            looked_at = 0
            while (done := await router.escalate_due(datetime.now(UTC))) > 0:
                looked_at += done
            elapsed = time.perf_counter() - started
            _out(
                f"routing bench: escalation timer: {overdue:,} overdue assignments handled in {elapsed:.2f} s = "
                f"{looked_at / elapsed:,.0f}/s (batches of {settings.routing_timer_batch})"
            )
        finally:
            await pool.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m services.routing.bench", description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=20_000, help="triaged events to route")
    parser.add_argument(
        "--batch",
        type=int,
        default=50,
        help="records per transaction (50: what a worker takes in its 50 ms batch wait at 1,000 events/s)",
    )
    parser.add_argument("--warm-up", type=int, default=1_000, help="events routed, untimed, before ANALYZE")
    parser.add_argument("--profile", type=Path, help="write a cProfile of the timed batches (not the preparation) here")
    args = parser.parse_args(argv)
    asyncio.run(run(args.cases, args.batch, args.warm_up, args.profile))
    return 0


if __name__ == "__main__":
    sys.exit(main())
