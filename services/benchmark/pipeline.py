"""The whole pipeline under load: ``python -m services.benchmark.pipeline`` (part of ``make bench``).

On the embedded broker and database (or configured ones), it runs every processor as ``parley run``
does and measures, in one run:

1. the reference ceiling: a bare one-stage faust pass-through on the same broker;
2. sustained throughput: simulated traffic offered at fixed rates, step by step; a step is sustained
   when the pipeline persists what it is offered (raw publish to the tracker's record of the routed
   feedback) and no backlog builds; the best sustained step is the figure;
3. end-to-end latency at half that rate: every message's publish time against the moment the tracker
   recorded its feedback on a case (p50, p99);
4. CPU (cores used) and peak memory (VmHWM) of every process.

Writes the figures to a JSON file and a PNG chart (``--out``, default .parley/bench/).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import sys
import time
import uuid
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import psutil

from schemas import topics
from schemas.channels import Channel
from services.benchmark import passthrough
from services.cli import PROCESSORS, WorkerProcess, spawn_workers, stop_workers
from services.intake.logic import feedback_id
from services.runtime.db import connect_pool
from services.runtime.infra import provide_connections
from services.runtime.kafka import ensure_topics, new_producer
from services.runtime.logs import configure_logging
from services.runtime.settings import Settings
from services.runtime.worker import Connections
from services.simulator.app import CHANNEL_WEIGHTS
from services.simulator.logic import Memory, generate

PERSISTED = "SELECT count(*) FROM tracker.case_feedback"
# How long after the offer stops the pipeline may take to persist the rest: four hops, each a batch wait and,
# when idle, a full fetch wait (the embedded broker never answers a waiting fetch early, ../shared/broker.md).
DRAIN_ALLOWANCE_SECONDS = 6.0


@dataclass
class ProcessFigures:
    name: str
    cpu_seconds: float = 0.0
    cores_used: float = 0.0
    peak_rss_mib: float = 0.0


@dataclass
class Step:
    offered_per_second: float
    seconds: float
    published: int
    persisted_per_second: float
    drained_in_seconds: float
    sustained: bool
    cores_by_process: dict[str, float] = field(default_factory=dict)
    """CPU seconds per wall second while the step ran: the workers, the broker, PostgreSQL and this driver."""


@dataclass
class Results:
    machine: dict[str, Any]
    passthrough_per_second: float
    steps: list[Step] = field(default_factory=list)
    sustained_per_second: float = 0.0
    ratio_to_passthrough: float = 0.0
    latency_rate_per_second: float = 0.0
    latency_samples: int = 0
    latency_p50_seconds: float | None = None
    latency_p99_seconds: float | None = None
    processes: list[ProcessFigures] = field(default_factory=list)


def _peak_rss_mib(pid: int) -> float:
    """The process's high-water mark of resident memory, from the kernel (VmHWM)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float(psutil.Process(pid).memory_info().rss) / 2**20


Prepared = tuple[str, bytes | None, bytes, uuid.UUID]
"""A message ready to publish: topic, key, value, and the feedback id intake will give it."""


class Load:
    """Simulated valid traffic at a fixed rate; remembers when each feedback was published."""

    def __init__(self, settings: Settings, producer: Any, seed: int) -> None:
        self._settings = settings
        self._producer = producer
        self._rng = random.Random(seed)  # noqa: S311 - simulation, not security
        # Updates of a post already on a case change its reach, not the case's feedback list: leave them out so
        # every message published is one feedback the tracker records.
        self._memory = Memory(post_update_share=0.0)
        self._run_id = uuid.uuid4().hex[:8]
        self._sequence = 0
        self.published_at: dict[uuid.UUID, float] = {}

    def prepare(self, count: int) -> list[Prepared]:
        """The next ``count`` messages, made before the clock starts: the channel systems that write them run
        elsewhere in production, so making them must not take the pipeline's CPU while it is measured."""
        channels, weights = list(CHANNEL_WEIGHTS), list(CHANNEL_WEIGHTS.values())
        prepared = []
        for _ in range(count):
            channel = self._rng.choices(channels, weights)[0]
            message = generate(
                channel,
                self._rng,
                datetime.now(UTC),
                self._sequence,
                malformed_share=0.0,
                run_id=self._run_id,
                memory=self._memory,
            )
            self._sequence += 1
            topic = self._settings.topic(topics.raw_topic(message.channel))
            prepared.append((topic, message.key, message.value, feedback_id(channel, message.message_id)))
        return prepared

    async def offer(self, rate: float, seconds: float, prepared: list[Prepared] | None = None) -> int:
        if prepared is None:
            prepared = self.prepare(int(rate * seconds) + 1)
        loop = asyncio.get_running_loop()
        started, sent, pending = loop.time(), 0, []
        while (elapsed := loop.time() - started) < seconds:
            for topic, key, value, feedback in prepared[sent : min(int(elapsed * rate), len(prepared))]:
                self.published_at[feedback] = time.time()
                pending.append(await self._producer.send(topic, value=value, key=key))
                sent += 1
            if len(pending) > 2000:
                await asyncio.gather(*pending)
                pending.clear()
            await asyncio.sleep(0.01)
        await asyncio.gather(*pending)
        return sent


async def _persisted(pool: asyncpg.Pool) -> int:
    try:
        return int(await pool.fetchval(PERSISTED))
    except asyncpg.UndefinedTableError:
        return 0


async def _wait_for(pool: asyncpg.Pool, expected: int, timeout_seconds: float) -> int:
    deadline = time.monotonic() + timeout_seconds
    count = await _persisted(pool)
    while count < expected and time.monotonic() < deadline:
        await asyncio.sleep(0.5)
        count = await _persisted(pool)
    return count


def _cpu_by_process(workers: list[WorkerProcess]) -> dict[str, float]:
    """CPU seconds so far of every part of the run: workers by name, the broker, all of PostgreSQL, the driver."""
    figures = {worker.name: _cpu(worker.process.pid) for worker in workers}
    figures["broker"] = figures["postgresql"] = 0.0
    for process in psutil.process_iter(["name", "cpu_times"]):
        name = process.info["name"] or ""
        times = process.info["cpu_times"]
        if times is None:
            continue
        if name.startswith("tansu"):
            figures["broker"] += times.user + times.system
        elif name.startswith("postgres"):
            figures["postgresql"] += times.user + times.system
    figures["driver"] = _cpu(os.getpid())
    return figures


async def _step(pool: asyncpg.Pool, load: Load, rate: float, seconds: float, workers: list[WorkerProcess]) -> Step:
    """Offer ``rate`` for ``seconds``, then wait for the pipeline to persist all of it.

    Sustained: the pipeline finished within a short drain after the offer stopped (a few seconds, the
    broker's fetch waits and the stages' batches), so no backlog was building. The figure is what was
    published over the time it took to persist it all.
    """
    before = await _persisted(pool)
    prepared = load.prepare(int(rate * seconds) + 1)
    cpu_before = _cpu_by_process(workers)
    started = time.monotonic()
    published = await load.offer(rate, seconds, prepared)
    offered_for = time.monotonic() - started
    allowance = max(DRAIN_ALLOWANCE_SECONDS, 0.2 * seconds)
    done = await _wait_for(pool, before + published, timeout_seconds=allowance + seconds + 30)
    drained_in = time.monotonic() - started - offered_for
    persisted = done - before
    cpu_after = _cpu_by_process(workers)
    wall = offered_for + drained_in
    cores = {name: round((cpu_after[name] - cpu_before.get(name, 0.0)) / wall, 2) for name in cpu_after}
    sustained = persisted >= published and drained_in <= allowance
    return Step(
        rate,
        round(offered_for, 1),
        published,
        round(persisted / (offered_for + drained_in), 1),
        round(drained_in, 1),
        sustained,
        cores,
    )


async def _latencies(pool: asyncpg.Pool, published_at: dict[uuid.UUID, float]) -> list[float]:
    rows = await pool.fetch(
        "SELECT feedback_id, extract(epoch FROM recorded_at) AS at FROM tracker.case_feedback "
        "WHERE feedback_id = ANY($1::uuid[])",
        list(published_at),
    )
    return [float(row["at"]) - published_at[row["feedback_id"]] for row in rows]


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


async def _measure_passthrough(settings: Settings, connections: Connections, records: int) -> tuple[float, Any]:
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": connections.bootstrap_servers,
        "DATABASE_URL": connections.database_url,
        "PARLEY_DATA_DIR": str(settings.data_dir),
        "PARLEY_KAFKA_TOPIC_PREFIX": settings.kafka_topic_prefix,
    }
    worker = passthrough.start_worker(env, settings.data_dir / "logs" / "passthrough.log")
    rng = random.Random(7)  # noqa: S311 - simulation, not security
    memory = Memory(post_update_share=0.0)
    sample = [
        generate(Channel.APP, rng, datetime.now(UTC), number, malformed_share=0.0, memory=memory)
        for number in range(records)
    ]
    try:
        rate = await passthrough.measure(
            settings, connections.bootstrap_servers, [(m.key or b"", m.value) for m in sample]
        )
        figures = ProcessFigures("passthrough", _cpu(worker.pid), 0.0, _peak_rss_mib(worker.pid))
        return rate, figures
    finally:
        worker.terminate()
        worker.wait(30)


def _cpu(pid: int) -> float:
    times = psutil.Process(pid).cpu_times()
    return float(times.user + times.system)


async def run(settings: Settings, connections: Connections, args: argparse.Namespace) -> Results:
    results = Results(
        machine={"cpus": os.cpu_count(), "python": sys.version.split()[0], "at": datetime.now(UTC).isoformat()},
        passthrough_per_second=0.0,
    )
    rate, reference = await _measure_passthrough(settings, connections, args.passthrough_records)
    results.passthrough_per_second = round(rate, 1)
    print(f"Reference: bare faust pass-through {rate:,.0f} records/s", flush=True)

    await ensure_topics(settings, connections.bootstrap_servers, topics.ALL_TOPICS)
    workers = spawn_workers(settings, connections, 1)
    pool = await connect_pool(connections.database_url, min_size=1, max_size=2)
    producer = new_producer(settings, connections.bootstrap_servers)
    await producer.start()
    try:
        load = Load(settings, producer, seed=args.seed)
        warm = await load.offer(50, 4)
        if await _wait_for(pool, warm, 180) < warm:
            raise RuntimeError("the pipeline did not persist the warm-up traffic; see .parley/bench/logs")
        cpu_before = {w.name: _cpu(w.process.pid) for w in workers}
        wall_before = time.monotonic()
        best = 0.0
        for rate in args.rates:
            step = await _step(pool, load, rate, args.step_seconds, workers)
            results.steps.append(step)
            verdict = "sustained" if step.sustained else "NOT sustained"
            print(
                f"  offered {rate:,.0f}/s for {step.seconds:.0f} s: {step.persisted_per_second:,.0f}/s persisted, "
                f"all of it {step.drained_in_seconds:.1f} s after the offer stopped: {verdict}",
                flush=True,
            )
            busiest = sorted(step.cores_by_process.items(), key=lambda item: -item[1])
            print("    cores: " + ", ".join(f"{name} {cores:.2f}" for name, cores in busiest), flush=True)
            if not step.sustained:
                break
            best = max(best, step.persisted_per_second)
        results.sustained_per_second = best
        results.ratio_to_passthrough = (
            round(best / results.passthrough_per_second, 3) if results.passthrough_per_second else 0.0
        )

        half = max(best / 2, 10.0)
        load.published_at.clear()
        await load.offer(half, args.step_seconds)
        deadline = time.monotonic() + 120
        latencies = await _latencies(pool, load.published_at)
        while len(latencies) < len(load.published_at) and time.monotonic() < deadline:
            await asyncio.sleep(1)
            latencies = await _latencies(pool, load.published_at)
        results.latency_rate_per_second = round(half, 1)
        results.latency_samples = len(latencies)
        if latencies:
            results.latency_p50_seconds = round(statistics.median(latencies), 3)
            results.latency_p99_seconds = round(_percentile(latencies, 0.99), 3)
        wall = time.monotonic() - wall_before
        results.processes = [_figures(worker, cpu_before[worker.name], wall) for worker in workers]
        results.processes.append(reference)
    finally:
        await producer.stop()
        await pool.close()
        await asyncio.to_thread(stop_workers, workers)
    return results


def _figures(worker: WorkerProcess, cpu_before: float, wall: float) -> ProcessFigures:
    cpu = _cpu(worker.process.pid) - cpu_before
    return ProcessFigures(worker.name, round(cpu, 1), round(cpu / wall, 2), round(_peak_rss_mib(worker.process.pid), 1))


def _chart(results: Results, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (throughput, resources) = plt.subplots(1, 2, figsize=(12, 4.5))
    offered = [step.offered_per_second for step in results.steps]
    throughput.plot(offered, offered, "--", color="grey", label="offered")
    throughput.plot(offered, [step.persisted_per_second for step in results.steps], "o-", label="persisted")
    throughput.axhline(results.passthrough_per_second, color="red", linestyle=":", label="faust pass-through")
    throughput.set_xlabel("offered events/s")
    throughput.set_ylabel("events/s, raw publish to persisted routed case")
    latency = (
        f"p50 {results.latency_p50_seconds} s, p99 {results.latency_p99_seconds} s "
        f"at {results.latency_rate_per_second}/s"
    )
    throughput.set_title(f"Sustained {results.sustained_per_second:,.0f}/s; {latency}", fontsize=9)
    throughput.legend()
    names = [process.name for process in results.processes]
    resources.bar(names, [process.cores_used for process in results.processes], color="tab:blue")
    resources.set_ylabel("cores used (CPU s / wall s)")
    twin = resources.twinx()
    twin.plot(names, [process.peak_rss_mib for process in results.processes], "s", color="tab:orange")
    twin.set_ylabel("peak memory, MiB", color="tab:orange")
    resources.tick_params(axis="x", rotation=45)
    figure.tight_layout()
    figure.savefig(path, dpi=110)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m services.benchmark.pipeline", description=__doc__.splitlines()[0])
    parser.add_argument("--rates", type=float, nargs="+", default=[250, 500, 1000, 1250, 1500, 2000])
    parser.add_argument("--step-seconds", type=float, default=20.0)
    parser.add_argument("--passthrough-records", type=int, default=30_000)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--out", type=Path, default=Path(".parley/bench"))
    args = parser.parse_args(argv)
    settings = Settings(data_dir=args.out / "data")
    configure_logging(settings)
    args.out.mkdir(parents=True, exist_ok=True)
    with provide_connections(settings) as connections:
        print(f"Pipeline benchmark: processors {', '.join(PROCESSORS)}", flush=True)
        results = asyncio.run(run(settings, connections, args))
    (args.out / "pipeline.json").write_text(json.dumps(asdict(results), indent=2) + "\n")
    _chart(results, args.out / "pipeline.png")
    print(
        f"Sustained {results.sustained_per_second:,.0f} events/s through the whole pipeline "
        f"({results.ratio_to_passthrough:.1%} of the bare faust pass-through, "
        f"{results.passthrough_per_second:,.0f}/s); "
        f"latency at {results.latency_rate_per_second:,.0f}/s: p50 {results.latency_p50_seconds} s, "
        f"p99 {results.latency_p99_seconds} s ({results.latency_samples:,} samples)"
    )
    for process in results.processes:
        print(f"  {process.name:14s} {process.cores_used:5.2f} cores  peak {process.peak_rss_mib:7.1f} MiB")
    print(f"Figures: {args.out / 'pipeline.json'}, chart: {args.out / 'pipeline.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
