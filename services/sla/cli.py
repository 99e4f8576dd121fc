"""``parley sla deadline`` (one clock's deadline, warnings and escalations) and ``parley alerts`` (follow
``sla.alerts`` in the terminal, colour-coded, for on-call)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from schemas import topics
from schemas.values import ClockName
from services.runtime.kafka import client_options
from services.runtime.settings import Settings
from services.sla import logic
from services.sla.calendar import CalendarDataMissingError
from services.sla.logic import MarkKind
from services.sla.policies import PolicyBook, PolicyError, load_policy_book, parse_duration

RESET = "\033[0m"
COLOURS = {
    "breached": "\033[1;31m",  # bold red
    "escalated": "\033[1;35m",  # bold magenta
    "warning": "\033[33m",  # yellow
    "clock_pause_refused": "\033[33m",
    "clock_extension_refused": "\033[33m",
    "clock_met": "\033[32m",  # green
    "clock_started": "\033[36m",  # cyan
    "clock_resumed": "\033[36m",
    "clock_extended": "\033[36m",
    "clock_paused": "\033[34m",  # blue
    "clock_cancelled": "\033[2m",  # dim
}
LABELS = {
    "breached": "BREACHED",
    "escalated": "ESCALATED",
    "warning": "WARNING",
    "clock_pause_refused": "PAUSE REFUSED",
    "clock_extension_refused": "EXT. REFUSED",
    "clock_met": "met",
    "clock_started": "started",
    "clock_resumed": "resumed",
    "clock_extended": "extended",
    "clock_paused": "paused",
    "clock_cancelled": "cancelled",
}


def _out(text: str = "") -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def _usage_error(message: str) -> Exception:
    from services.cli import UsageError  # the caller's module, loaded by now

    return UsageError(message)


# ---- parley sla deadline ----


def _instant(command: str, what: str, text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        value = None
    if value is None or value.tzinfo is None:
        raise _usage_error(
            f"parley {command}: {what} must be an ISO time with its UTC offset, e.g. "
            f"2026-11-23T09:00:00+08:00, not {text!r}"
        )
    return value


def _pause(text: str) -> tuple[datetime, datetime]:
    start, slash, end = text.partition("/")
    if not slash:
        raise _usage_error(f"parley sla deadline: --paused takes FROM/TO, two ISO times, not {text!r}")
    first = _instant("sla deadline", "a pause's start", start)
    last = _instant("sla deadline", "a pause's end", end)
    if last < first:
        raise _usage_error(f"parley sla deadline: the pause {text!r} ends before it starts")
    return first, last


def _load(command: str, path: Path) -> PolicyBook:
    try:
        return load_policy_book(path)
    except PolicyError as exc:
        raise _usage_error(f"parley {command}: {exc}") from None


def _local(instant: datetime, zone: ZoneInfo) -> str:
    return instant.astimezone(zone).strftime("%Y-%m-%d %H:%M:%S %a (%z)")


def command_deadline(args: argparse.Namespace) -> int:
    settings = Settings()
    book = _load("sla deadline", Path(args.policies) if args.policies else settings.sla_policies_path)
    try:
        clock = ClockName(args.clock)
    except ValueError:
        raise _usage_error(
            f"parley sla deadline: unknown clock {args.clock!r}; clocks: {', '.join(c.value for c in ClockName)}"
        ) from None
    start = _instant("sla deadline", "--start", args.start)
    pauses = [_pause(text) for text in args.paused or []]
    regulator = (
        _instant("sla deadline", "--regulator-deadline", args.regulator_deadline) if args.regulator_deadline else None
    )
    try:
        line = logic.timeline(book, args.policy, clock, start, pauses, args.extensions, regulator, args.queue)
    except (KeyError, ValueError) as exc:
        known = ", ".join(sorted({v.policy.id for v in book.versions}))
        raise _usage_error(f"parley sla deadline: {exc.args[0]}; policies: {known}") from None
    except CalendarDataMissingError as exc:
        sys.stderr.write(f"parley sla deadline: {exc}\n")
        return 1
    version = book.in_force(args.policy, start)
    assert version is not None
    config = version.policy.clock(clock)
    assert config is not None
    if args.json:
        _out(
            json.dumps(
                {
                    "policy": args.policy,
                    "version": version.policy.version,
                    "clock": clock.value,
                    "calendar": line.calendar.name,
                    "start": start.isoformat(),
                    "deadline": line.deadline.astimezone(line.calendar.zone).isoformat(),
                    "marks": [
                        {"kind": m.kind.value, "level": m.level, "at": m.at.astimezone(line.calendar.zone).isoformat()}
                        for m in line.marks
                    ],
                }
            )
        )
        return 0
    zone = line.calendar.zone
    on_regulator = config.use_regulator_deadline and regulator is not None
    allowed = "the regulator's own deadline" if on_regulator else line.span.describe()
    _out(f"Policy {args.policy} v{version.policy.version}, clock {clock.value}: {allowed}")
    _out(f"Calendar {line.calendar.name}: {line.calendar.working_days.description}, {zone.key}")
    if args.extensions:
        _out(f"Extensions granted: {args.extensions}")
    _out(f"  start     {_local(start, zone)}")
    for first, last in pauses:
        _out(f"  paused    {_local(first, zone)} -> {_local(last, zone)}")
    _out(f"  deadline  {_local(line.deadline, zone)}   {line.deadline.astimezone(UTC).isoformat()}")
    _out("Alerts:")
    warnings = dict(enumerate(config.warnings, start=1))
    escalations = {e.level: e for e in config.escalations}
    for mark in line.marks:
        if mark.kind is MarkKind.WARNING:
            rule = warnings[mark.level]
            if rule.before is not None:
                why = f"{_duration(int(rule.before.total_seconds()))} before the deadline"
            else:
                why = f"{rule.percent:g} % of the allowed time"
            text = f"warning {mark.level} ({why})"
        elif mark.kind is MarkKind.BREACHED:
            text = "breach"
        else:
            escalation = escalations[mark.level]
            who = f" ({', '.join(escalation.recipients)})" if escalation.recipients else ""
            text = f"escalation {mark.level} to {escalation.to}{who}"
        _out(f"  {_local(mark.at, zone)}  {text}")
    return 0


# ---- parley alerts ----


def alert_line(value: bytes, colour: bool) -> str | None:
    """One sla.alerts record as a terminal line; None when it is not an SLA event."""
    try:
        event = json.loads(value)
        kind = str(event["type"]).removeprefix("com.parley.sla.").rsplit(".v", 1)[0]
        data = event["data"]
    except (ValueError, KeyError, TypeError):
        return None
    label = LABELS.get(kind, kind)
    left = data.get("remaining_seconds")
    overdue = data.get("overdue_seconds")
    if overdue:
        timing = f"overdue {_duration(overdue)}"
    elif left is not None:
        timing = f"{_duration(left)} left"
    else:
        timing = ""
    who = " ".join(part for part in (data.get("priority"), data.get("queue")) if part)
    extra = ""
    if kind == "escalated":
        extra = f" -> {data.get('escalated_to')} (level {data.get('level')})"
    elif kind == "warning" and data.get("elapsed_fraction") is not None:
        extra = f" ({float(data['elapsed_fraction']):.0%} used)"
    elif kind in ("clock_pause_refused", "clock_extension_refused"):
        extra = f" ({data.get('refusal', '')})"[:160]
    elif kind in ("clock_paused", "clock_resumed", "clock_cancelled", "clock_extended"):
        extra = f" ({data.get('reason', '')})"[:120]
    line = (
        f"{event.get('time', '')}  {label:<13} {data.get('clock', ''):<18} case {data.get('case_id', '')}  "
        f"deadline {data.get('deadline', '')}  {timing:<16} {who:<22} "
        f"{data.get('policy_id', '')} v{data.get('policy_version') or '?'}{extra}"
    )
    if colour and kind in COLOURS:
        return f"{COLOURS[kind]}{line}{RESET}"
    return line


def _duration(seconds: int) -> str:
    """90061 -> '1d1h1m1s'; zero parts left out."""
    minutes, second = divmod(int(seconds), 60)
    hours, minute = divmod(minutes, 60)
    days, hour = divmod(hours, 24)
    parts = [f"{value}{unit}" for value, unit in ((days, "d"), (hour, "h"), (minute, "m"), (second, "s")) if value]
    return "".join(parts) or "0s"


async def follow_alerts(settings: Settings, args: argparse.Namespace, colour: bool) -> int:
    from aiokafka import AIOKafkaConsumer, TopicPartition

    assert settings.kafka_bootstrap_servers is not None
    topic = settings.topic(topics.SLA_ALERTS)
    consumer = AIOKafkaConsumer(
        **client_options(settings, settings.kafka_bootstrap_servers),
        group_id=None,
        enable_auto_commit=False,
        fetch_max_wait_ms=200,
    )
    await consumer.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    shown = 0
    try:
        await consumer.topics()  # fetches the cluster's metadata
        partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or [])]
        if not partitions:
            sys.stderr.write(f"parley alerts: no topic {topic} on the broker\n")
            return 1
        consumer.assign(partitions)
        if args.from_beginning:
            await consumer.seek_to_beginning(*partitions)
        else:
            since_ms = int((datetime.now(UTC) - args.since).timestamp() * 1000)
            offsets = await consumer.offsets_for_times(dict.fromkeys(partitions, since_ms))
            ends = await consumer.end_offsets(partitions)
            for tp in partitions:
                found = offsets.get(tp)
                consumer.seek(tp, found.offset if found is not None else ends[tp])
        _out(f"Following {topic} (Ctrl-C to stop)")
        started = time.monotonic()
        while not stop.is_set():
            if args.timeout is not None and time.monotonic() - started > args.timeout:
                break
            batches = await consumer.getmany(timeout_ms=300)
            records = sorted((r for batch in batches.values() for r in batch), key=lambda r: r.timestamp)
            for record in records:
                if args.case and (record.key or b"").decode() != args.case:
                    continue
                line = alert_line(record.value or b"", colour)
                if line is None:
                    continue
                _out(line)
                shown += 1
                if args.max is not None and shown >= args.max:
                    return 0
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
        with contextlib.suppress(Exception):
            await consumer.stop()
    return 0


def _since(text: str) -> timedelta:
    try:
        return parse_duration(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"a duration such as 15m, 4h or 2d, not {text!r}") from None


def command_alerts(args: argparse.Namespace) -> int:
    settings = Settings()
    if settings.kafka_bootstrap_servers is None:
        raise _usage_error(
            "parley alerts: set KAFKA_BOOTSTRAP_SERVERS to the broker "
            "(`parley run` prints the embedded broker's address)"
        )
    colour = not args.no_colour and sys.stdout.isatty()
    return asyncio.run(follow_alerts(settings, args, colour))


def register(commands: Any) -> None:
    """Add ``parley sla deadline`` and ``parley alerts``."""
    sla = commands.add_parser("sla", help="the SLA engine: deadlines of a policy's clocks")
    sla_commands = sla.add_subparsers(dest="sla_command", required=True)
    deadline = sla_commands.add_parser(
        "deadline", help="deadline, warnings and escalations of one clock, from a start time (pauses and extensions)"
    )
    deadline.add_argument("--policy", required=True, help="policy id, e.g. cn-nfra-complaint")
    deadline.add_argument("--clock", required=True, help=f"one of: {', '.join(c.value for c in ClockName)}")
    deadline.add_argument("--start", required=True, help="ISO time with offset, e.g. 2026-09-28T10:00:00+08:00")
    deadline.add_argument(
        "--paused", action="append", metavar="FROM/TO", help="a pause, two ISO times; repeat for several"
    )
    deadline.add_argument("--extensions", type=int, default=0, help="extensions granted (0, 1, 2 ...)")
    deadline.add_argument("--regulator-deadline", help="a regulator referral's own deadline (ISO time)")
    deadline.add_argument("--queue", help="the case's queue (a team calendar may apply)")
    deadline.add_argument("--policies", help="policies file (default: PARLEY_SLA_POLICIES_PATH)")
    deadline.add_argument("--json", action="store_true", help="one JSON object instead of text")
    deadline.set_defaults(handler=command_deadline)
    alerts = commands.add_parser("alerts", help="follow sla.alerts in the terminal, colour-coded (for on-call)")
    alerts.add_argument("--since", type=_since, default=timedelta(hours=1), help="start this far back (default 1h)")
    alerts.add_argument("--from-beginning", action="store_true", help="start from the first alert on the topic")
    alerts.add_argument("--case", help="only this case's alerts (a case id)")
    alerts.add_argument("--max", type=int, default=None, help="stop after this many alerts")
    alerts.add_argument("--timeout", type=float, default=None, help="stop after this many seconds")
    alerts.add_argument("--no-colour", action="store_true", help="plain text even on a terminal")
    alerts.set_defaults(handler=command_alerts)
