"""The ``parley`` command: run the whole pipeline, or publish a channel system's file of events."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING

from schemas import topics
from schemas.catalog import EVENTS
from schemas.channels import Channel
from schemas.validate import find_event_type, validate_lines
from services.monitor import PipelineMonitor, routing_progress, routing_summary
from services.planner.cli import register as register_planner_commands
from services.routing.cli import register as register_routing_commands
from services.runtime.db import connect_pool
from services.runtime.embedded import die_with_parent
from services.runtime.errors import ConfigurationError
from services.runtime.infra import provide_connections
from services.runtime.kafka import ensure_topics, new_producer
from services.runtime.logs import configure_logging
from services.runtime.settings import Settings
from services.runtime.worker import Connections
from services.simulator.app import SimulatorStats, simulate
from services.sla.cli import register as register_sla_commands
from services.tracker.cli import register as register_tracker_commands

if TYPE_CHECKING:
    from services.triage.logic import Triage

PROCESSORS = ("intake", "triage", "routing", "planner", "tracker", "sla")


class UsageError(Exception):
    """A command cannot run as asked; ``main`` prints the message and exits 2."""


def _input_file(command: str, name: str) -> Path:
    path = Path(name)
    if not path.is_file():
        raise UsageError(f"parley {command}: no such file: {path}")
    return path


def _redact(url: str) -> str:
    """A database URL fit to print: the password, if any, replaced."""
    scheme, sep, rest = url.partition("://")
    credentials, at, host = rest.rpartition("@")
    if not at or ":" not in credentials:
        return url
    user = credentials.split(":", 1)[0]
    return f"{scheme}{sep}{user}:***@{host}"


@dataclass
class WorkerProcess:
    name: str
    process: subprocess.Popen[bytes]
    log: IO[bytes]


def spawn_workers(settings: Settings, connections: Connections, per_processor: int) -> list[WorkerProcess]:
    log_dir = settings.data_dir / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": connections.bootstrap_servers,
        "DATABASE_URL": connections.database_url,
        "PARLEY_DATA_DIR": str(settings.data_dir),
    }
    workers = []
    for processor in PROCESSORS:
        for index in range(per_processor):
            name = f"{processor}-{index + 1}"
            log = (log_dir / f"{name}.log").open("ab")
            # PARLEY_HTTP_PORT is a base port here: each worker takes the next, so none collide (0: each any free port).
            offset = PROCESSORS.index(processor) * per_processor + index
            port = {"PARLEY_HTTP_PORT": str(settings.http_port + offset)} if settings.http_port else {}
            process = subprocess.Popen(  # noqa: S603 - our own interpreter and module
                [sys.executable, "-m", f"services.{processor}"],
                env={**env, **port},
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=die_with_parent,
            )
            workers.append(WorkerProcess(name, process, log))
    return workers


def stop_workers(workers: list[WorkerProcess], timeout_seconds: float = 20.0) -> None:
    for worker in workers:
        if worker.process.poll() is None:
            worker.process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + timeout_seconds
    for worker in workers:
        try:
            worker.process.wait(max(deadline - time.monotonic(), 0.1))
        except subprocess.TimeoutExpired:
            print(f"  {worker.name} did not stop in {timeout_seconds:.0f} s; killed")
            worker.process.kill()
            worker.process.wait()
        worker.log.close()


def _progress_line(elapsed: float, stats: SimulatorStats, monitor: PipelineMonitor, rate: float) -> str:
    counts = monitor.counts
    return (
        f"[{elapsed:6.1f}s] published {stats.published_total:>7,} "
        f"(valid {sum(stats.valid.values()):,}, malformed {sum(stats.flawed.values()):,}, "
        f"repeats {sum(stats.duplicates.values()):,}) | accepted {sum(counts.accepted.values()):>7,} "
        f"| rejected {sum(counts.rejected.values()):>6,} | triaged {sum(counts.triaged_priorities.values()):>7,} "
        f"(P1 {counts.triaged_priorities['P1']:,}) | {routing_progress(counts)} "
        f"| cases {sum(counts.cases.values()):>7,} "
        f"| {rate:7.1f} cases/s"
    )


def _summary(stats: SimulatorStats, monitor: PipelineMonitor, throughput: float, offered: float) -> str:
    counts = monitor.counts
    lines = [
        "",
        "Per channel:",
        f"  {'channel':<10} {'published':>10} {'valid':>8} {'malformed':>10} "
        f"{'repeats':>8} {'accepted':>9} {'rejected':>9} {'cases':>8}",
    ]
    for channel in Channel:
        lines.append(
            f"  {channel.value:<10} {stats.published[channel]:>10,} {stats.valid[channel]:>8,} "
            f"{stats.flawed_by_channel[channel]:>10,} {stats.duplicates[channel]:>8,} "
            f"{counts.accepted[channel.value]:>9,} {counts.rejected[channel.value]:>9,} "
            f"{counts.cases[channel.value]:>8,}"
        )
    lines.append(
        "Triaged, by priority: "
        + ", ".join(f"{priority} {counts.triaged_priorities[priority]:,}" for priority in ("P1", "P2", "P3", "P4"))
    )
    lines += routing_summary(counts)
    if stats.post_updates or stats.follow_ups:
        lines.append(
            f"Simulated: {sum(stats.follow_ups.values()):,} follow-ups of a recent customer (any channel), "
            f"{stats.post_updates:,} later reach figures of a recent post."
        )
    lines.append("Rejected, by reason:")
    for reason, count in sorted(counts.rejected_reasons.items()):
        lines.append(f"  {reason:<20} {count:>8,}")
    valid = sum(stats.valid.values())
    cases = sum(counts.cases.values())
    accepted = sum(counts.accepted.values())
    triaged = sum(counts.triaged_priorities.values())
    routed = counts.routed_feedback
    opened = counts.links()["new_case"] + counts.links()["split"]  # routing decides; the tracker records
    rejected = sum(counts.rejected.values())
    malformed = sum(stats.flawed.values())
    lines.append(
        f"Check: {valid:,} distinct valid messages -> {accepted:,} accepted, {triaged:,} triaged, {routed:,} routed "
        f"({opened:,} cases opened) -> {cases:,} cases recorded; {malformed:,} malformed -> {rejected:,} rejected."
    )
    if valid == accepted == triaged == routed and cases == opened and malformed == rejected:
        lines.append("       Every message accounted for: nothing lost, nothing doubled.")
    elif accepted <= valid and triaged <= accepted and routed <= triaged and cases <= opened and rejected <= malformed:
        lines.append(
            f"       Still in flight when the drain window closed: {valid - accepted:,} to accept, "
            f"{valid - routed:,} to route, {opened - cases:,} cases to record, {malformed - rejected:,} to reject "
            "(the offered rate was above what the workers handle; see the throughput below)."
        )
    else:
        lines.append("       MISMATCH: more came out than went in; see the worker logs in .parley/logs/.")
    lines.append(f"Throughput: {throughput:,.1f} cases/s opened at an offered rate of {offered:,.0f} messages/s.")
    return "\n".join(lines)


async def run_pipeline(settings: Settings, connections: Connections, args: argparse.Namespace) -> int:
    await ensure_topics(settings, connections.bootstrap_servers, topics.ALL_TOPICS)
    pool = await connect_pool(connections.database_url, min_size=1, max_size=2)
    workers = spawn_workers(settings, connections, args.workers)
    print(f"Workers: {', '.join(w.name for w in workers)} (logs in {settings.data_dir / 'logs'})")
    monitor = PipelineMonitor(settings, connections.bootstrap_servers, pool)
    await monitor.start()
    producer = new_producer(settings, connections.bootstrap_servers)
    await producer.start()
    stats = SimulatorStats()
    stop_simulator = asyncio.Event()
    stop_run = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop_run.set)
    simulator = (
        asyncio.ensure_future(
            simulate(
                producer,
                settings,
                stats,
                stop_simulator,
                rate_per_second=args.rate,
                malformed_share=args.malformed_share,
                duplicate_share=args.duplicate_share,
                seed=args.seed,
            )
        )
        if args.rate > 0
        else None
    )
    started = loop.time()
    first_case_at: float | None = None
    last_cases, last_change_at = 0, started
    try:
        while not stop_run.is_set():
            with suppress(TimeoutError):
                await asyncio.wait_for(stop_run.wait(), args.progress_interval)
            await monitor.refresh_cases()
            now = loop.time()
            cases = sum(monitor.counts.cases.values())
            if cases and first_case_at is None:
                first_case_at = now
            if cases != last_cases:
                last_cases, last_change_at = cases, now
            rate = cases / (now - first_case_at) if first_case_at and now > first_case_at else 0.0
            print(_progress_line(now - started, stats, monitor, rate), flush=True)
            if args.duration is not None and now - started >= args.duration:
                break
            if any(w.process.poll() is not None for w in workers):
                print("A worker exited unexpectedly; stopping (see its log).")
                break
        stop_simulator.set()
        if simulator is not None:
            await simulator
        print("Simulator stopped; waiting for the pipeline to drain...", flush=True)
        drain_deadline = loop.time() + args.drain_seconds
        while loop.time() < drain_deadline and not _drained(stats, monitor):
            await asyncio.sleep(0.5)
            await monitor.refresh_cases()
            if sum(monitor.counts.cases.values()) != last_cases:
                last_cases, last_change_at = sum(monitor.counts.cases.values()), loop.time()
        throughput = (
            last_cases / (last_change_at - first_case_at)
            if first_case_at is not None and last_change_at > first_case_at
            else 0.0
        )
        print(_progress_line(loop.time() - started, stats, monitor, throughput))
        print(_summary(stats, monitor, throughput, args.rate))
    finally:
        stop_simulator.set()
        await producer.stop()
        await monitor.stop()
        print("Stopping workers...", flush=True)
        await asyncio.to_thread(stop_workers, workers)
        await pool.close()
    print("Stopped; nothing left running.")
    return 0


def _drained(stats: SimulatorStats, monitor: PipelineMonitor) -> bool:
    counts = monitor.counts
    valid = sum(stats.valid.values())
    return (
        sum(counts.accepted.values()) >= valid
        and sum(counts.triaged_priorities.values()) >= valid
        and counts.routed_feedback >= valid
        and sum(counts.cases.values()) >= counts.links()["new_case"] + counts.links()["split"]
        and sum(counts.rejected.values()) >= sum(stats.flawed.values())
    )


def command_run(args: argparse.Namespace) -> int:
    settings = Settings()
    configure_logging(settings)
    with provide_connections(settings) as connections:
        print("parley: negotiation-desk pipeline")
        embedded = " (embedded Tansu, in memory)" if settings.uses_embedded_broker else ""
        print(f"Broker:   {connections.bootstrap_servers}{embedded}")
        embedded = f" (embedded, files in {settings.data_dir / 'pgdata'})" if settings.database_url is None else ""
        print(f"Database: {_redact(connections.database_url)}{embedded}")
        duration = f"{args.duration:.0f} s" if args.duration is not None else "until Ctrl-C"
        print(
            f"Simulator: {args.rate:g} messages/s, {args.malformed_share:.0%} malformed, "
            f"{args.duplicate_share:.0%} repeats; running {duration}",
            flush=True,
        )
        return asyncio.run(run_pipeline(settings, connections, args))


async def publish_file(settings: Settings, channel: Channel, path: Path) -> tuple[int, int, int, int]:
    """Publish every non-blank line of ``path`` as one raw record; returns (sent, bytes, blank, not_json)."""
    assert settings.kafka_bootstrap_servers is not None
    producer = new_producer(settings, settings.kafka_bootstrap_servers)
    await producer.start()
    sent = size = blank = not_json = 0
    try:
        deliveries = []
        with path.open("rb") as lines:
            for line in lines:
                value = line.rstrip(b"\r\n")
                if not value.strip():
                    blank += 1
                    continue
                key = _record_key(value)
                if key is None:
                    not_json += 1
                deliveries.append(
                    await producer.send(
                        settings.topic(topics.raw_topic(channel)),
                        value=value,
                        key=key.encode() if key else None,
                    )
                )
                sent += 1
                size += len(value)
        await asyncio.gather(*deliveries)
    finally:
        await producer.stop()
    return sent, size, blank, not_json


def _record_key(value: bytes) -> str | None:
    """The key a channel system would use: the customer id, else the message id; None if unreadable."""
    try:
        body = json.loads(value)
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(body, dict):
        return None
    key = body.get("customer_id") or body.get("message_id")
    return str(key) if key is not None else None


def command_publish(args: argparse.Namespace) -> int:
    settings = Settings()
    configure_logging(settings)
    if settings.kafka_bootstrap_servers is None:
        raise UsageError(
            "parley publish: set KAFKA_BOOTSTRAP_SERVERS to the broker to publish to "
            "(`parley run` prints the embedded broker's address)."
        )
    try:
        channel = Channel(args.channel)
    except ValueError:
        raise UsageError(
            f"parley publish: unknown channel {args.channel!r}; channels: {', '.join(c.value for c in Channel)}"
        ) from None
    path = _input_file("publish", args.file)
    sent, size, blank, not_json = asyncio.run(publish_file(settings, channel, path))
    print(
        f"Published {sent:,} records ({size:,} bytes) to {settings.topic(topics.raw_topic(channel))}; "
        f"{blank:,} blank lines skipped."
    )
    if not_json:
        print(
            f"{not_json:,} of them are not JSON objects; intake will reject them to "
            f"{settings.topic(topics.FEEDBACK_REJECTED)} with the reason in headers."
        )
    return 0


def command_schemas_validate(args: argparse.Namespace) -> int:
    spec = find_event_type(args.type)
    if spec is None:
        raise UsageError(
            f"parley schemas validate: unknown event type {args.type!r}; `parley schemas list` shows them all"
        )
    path = _input_file("schemas validate", args.file)
    with path.open(encoding="utf-8", errors="replace") as lines:
        report = validate_lines(spec, lines)
    for problem in report.problems or []:
        print(problem)
    tolerant = " (unknown fields are ignored for this type)" if spec.consumed else ""
    print(
        f"{path}: {report.lines:,} events of {spec.name}{tolerant}: {report.valid:,} valid, {report.invalid:,} invalid"
    )
    return 0 if report.invalid == 0 else 1


def _triage_line(triage: Triage, key: bytes, text: str, channel: Channel, line_id: object = None) -> dict[str, object]:
    from services.privacy.logic import mask

    masked = mask(text, key)
    result = triage.assess(masked.text, channel)
    output: dict[str, object] = {} if line_id is None else {"id": line_id}
    output.update(
        category=result.category.value,
        confidence=result.category_confidence,
        flags=[flag.value for flag in result.flags],
        sentiment={"label": result.sentiment.value, "score": result.sentiment_score},
        priority=result.priority.value,
        priority_score=result.priority_score,
        human_required=result.human_required,
        masked_text=masked.text,
        pii=[
            {
                "kind": s.span.kind.value,
                "start": s.span.start,
                "end": s.span.end,
                "token": s.token,
                "confidence": s.span.confidence,
            }
            for s in masked.spans
        ],
        reasons=[reason.published().model_dump(exclude_none=True) for reason in result.reasons],
    )
    return output


def command_triage(args: argparse.Namespace) -> int:
    from services.triage.logic import Triage  # numpy and the models load only when needed

    if args.jsonl is None and not args.text:
        raise UsageError("parley triage: give a TEXT, or --jsonl FILE")
    path = None if args.jsonl is None else _input_file("triage", args.jsonl)
    key = Settings().pii_key()
    triage = Triage.shipped()
    if path is None:
        print(json.dumps(_triage_line(triage, key, args.text, Channel(args.channel)), ensure_ascii=False, indent=2))
        return 0
    failed = 0
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                item = json.loads(line)
                text, channel = item["text"], Channel(item.get("channel", "app"))
                if not isinstance(text, str) or not text.strip():
                    raise ValueError("text must be non-empty text")
            except (ValueError, KeyError, TypeError) as exc:
                failed += 1
                print(
                    f"parley triage: line {number}: {type(exc).__name__}: needs a JSON object with "
                    f'"text" and optionally "id" and "channel" ({exc})',
                    file=sys.stderr,
                )
                continue
            print(json.dumps(_triage_line(triage, key, text, channel, item.get("id")), ensure_ascii=False))
    return 1 if failed else 0


def command_schemas_list(_args: argparse.Namespace) -> int:
    for spec in EVENTS:
        print(f"{spec.name:<50} {', '.join(spec.topics):<28} {spec.summary}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="parley", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="run broker, database, every processor and the simulator")
    run.add_argument("--duration", type=float, default=None, help="stop after this many seconds (default: Ctrl-C)")
    run.add_argument("--rate", type=float, default=200.0, help="simulated messages per second (0: none)")
    run.add_argument("--malformed-share", type=float, default=0.05, help="share of malformed messages")
    run.add_argument("--duplicate-share", type=float, default=0.05, help="share of repeated messages")
    run.add_argument("--workers", type=int, default=1, help="worker processes per processor")
    run.add_argument("--seed", type=int, default=None, help="simulator random seed, for repeatable runs")
    run.add_argument("--progress-interval", type=float, default=2.0, help="seconds between progress lines")
    run.add_argument("--drain-seconds", type=float, default=30.0, help="how long to wait for in-flight events")
    run.set_defaults(handler=command_run)
    publish = commands.add_parser("publish", help="publish a JSON-lines file of raw events for a channel")
    publish.add_argument("--channel", required=True, help=f"one of: {', '.join(c.value for c in Channel)}")
    publish.add_argument("file", help="one raw event (a JSON object) per line")
    publish.set_defaults(handler=command_publish)
    triage = commands.add_parser("triage", help="triage a text (or a JSON-lines file) and print the result as JSON")
    triage.add_argument("text", nargs="?", help="the customer's words")
    triage.add_argument("--channel", default="app", choices=[c.value for c in Channel], help="where it came from")
    triage.add_argument("--jsonl", metavar="FILE", help='lines of {"id": …, "text": …, "channel": …}')
    triage.set_defaults(handler=command_triage)
    contracts = commands.add_parser("schemas", help="the event contracts: list types, validate a file")
    schema_commands = contracts.add_subparsers(dest="schemas_command", required=True)
    validate = schema_commands.add_parser("validate", help="check a JSON-lines file of events, line by line")
    validate.add_argument("--type", required=True, help="event type, e.g. com.parley.raw.hotline.v1 or raw.hotline")
    validate.add_argument("file", help="one event (a JSON object) per line")
    validate.set_defaults(handler=command_schemas_validate)
    listing = schema_commands.add_parser("list", help="every event type, its topics and what it means")
    listing.set_defaults(handler=command_schemas_list)
    register_tracker_commands(commands)
    register_routing_commands(commands)
    register_sla_commands(commands)
    register_planner_commands(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code: int = args.handler(args)
    except ConfigurationError as exc:
        print(f"parley: {exc}", file=sys.stderr)
        return 2
    except UsageError as exc:
        print(exc, file=sys.stderr)
        return 2
    return code


if __name__ == "__main__":
    sys.exit(main())
