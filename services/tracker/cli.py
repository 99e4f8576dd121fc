"""``parley case``, ``parley audit verify`` and ``parley accounts load``: the tracker's records, read and fed.

All three talk to the database that ``DATABASE_URL`` names (``parley run`` prints the address of
its embedded one).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import importlib
import importlib.util
import sys
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg

from services.runtime.db import connect_pool, transaction
from services.runtime.errors import ConfigurationError
from services.runtime.settings import Settings
from services.tracker import accounts, audit, store

SHOWN_FIELDS = (
    "queue",
    "priority",
    "escalation_level",
    "match_basis",
    "new_facts",
    "new_case_id",
    "agent_id",
    "contact_channel",
    "failed_attempts",
    "plan_id",
    "proposals",
    "instalments",
    "instalment_number",
    "missed_instalments",
    "resolution",
    "satisfaction",
    "rejected_type",
    "requested_by",
    "request_id",
    "reason",
)
LONG_FIELDS = frozenset({"reason"})


def _out(text: str = "") -> None:
    sys.stdout.write(text + "\n")


def _err(text: str) -> None:
    sys.stderr.write(text + "\n")


def _usage_error(message: str) -> Exception:
    from services.cli import UsageError  # the caller's module, loaded by now

    return UsageError(message)


def _database_url(command: str) -> str:
    url = Settings().database_url
    if url is None:
        raise _usage_error(
            f"parley {command}: set DATABASE_URL to the tracker's database (`parley run` prints the embedded one's)"
        )
    return url.get_secret_value()


def _case_id(command: str, text: str) -> uuid.UUID:
    try:
        return uuid.UUID(text)
    except ValueError:
        raise _usage_error(f"parley {command}: {text!r} is not a case id (a UUID)") from None


async def _with_pool(url: str, work: Callable[[asyncpg.Pool], Awaitable[int]]) -> int:
    pool = await connect_pool(url, min_size=1, max_size=1)
    try:
        return await work(pool)
    finally:
        await pool.close()


def _when(moment: datetime | None) -> str:
    return "-" if moment is None else moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def _short_type(event_type: str) -> str:
    return event_type.removeprefix("com.parley.").rsplit(".", 1)[0]


def _summary(payload: Any) -> str:
    data = payload.get("data") if isinstance(payload, dict) else None
    if not isinstance(data, dict):
        return ""
    parts = []
    if "status" in data:
        parts.append(f"-> {data['status']}")
    link = data.get("link")
    if isinstance(link, dict):
        parts.append(f"link={link.get('kind')}")
    for name in SHOWN_FIELDS:
        value = data.get(name)
        if value is None or value == "" or (name == "escalation_level" and value == 0):
            continue
        if isinstance(value, dict) and "amount" in value:
            value = f"{value['amount']} {value.get('currency', '')}".strip()
        if isinstance(value, list):
            value = len(value)  # plan.proposed's proposals: how many
        text = str(value)
        limit = 300 if name in LONG_FIELDS else 80
        parts.append(f"{name}={text[:limit] + '…' if len(text) > limit else text}")
    for money in ("amount", "amount_due", "total_repaid", "proposed_instalment", "preferred_instalment"):
        value = data.get(money)
        if isinstance(value, dict) and "amount" in value:
            parts.append(f"{money}={value['amount']} {value.get('currency', '')}".rstrip())
    return " ".join(parts)


CLOCK_FIELDS = (
    "clock",
    "cycle",
    "status",
    "policy_id",
    "policy_version",
    "calendar",
    "started_at",
    "deadline",
    "next_due_at",
    "stopped_at",
    "extensions",
    "regulator_deadline",
)


def _plain(item: Any) -> dict[str, Any] | str:
    if dataclasses.is_dataclass(item) and not isinstance(item, type):
        return {f.name: getattr(item, f.name) for f in dataclasses.fields(item)}
    if isinstance(item, asyncpg.Record):
        return dict(item)
    if hasattr(item, "model_dump"):
        result: dict[str, Any] = item.model_dump()
        return result
    return str(item)


def _clock_text(fields: dict[str, Any]) -> str:
    shown = [name for name in CLOCK_FIELDS if name in fields] or list(fields)
    parts = []
    for name in shown:
        value = fields[name]
        if value is None or (value == 0 and name == "extensions"):
            continue
        text = _when(value) if isinstance(value, datetime) else getattr(value, "value", value)
        parts.append(f"{name}={text}")
    pauses = fields.get("pauses")
    if pauses:
        parts.append(f"pauses={len(pauses)}")
    return "  " + " ".join(parts)


async def _clock_lines(conn: Any, case_id: uuid.UUID) -> list[str] | None:
    """The SLA engine's clocks for the case, when the SLA store is installed (None when it is not)."""
    if importlib.util.find_spec("services.sla") is None or importlib.util.find_spec("services.sla.store") is None:
        return None
    module = importlib.import_module("services.sla.store")
    clocks_for_case = getattr(module, "clocks_for_case", None)
    if clocks_for_case is None:
        return None
    try:
        clocks = await clocks_for_case(conn, case_id)
    except asyncpg.UndefinedTableError:
        return None  # the SLA engine's tables are not in this database
    lines = []
    for clock in clocks:
        plain = _plain(clock)
        lines.append(_clock_text(plain) if isinstance(plain, dict) else f"  {plain}")
    return lines


async def show_case(pool: asyncpg.Pool, case_id: uuid.UUID) -> int:
    async with pool.acquire() as conn:
        case = await store.case_row(conn, case_id)
        if case is None:
            waiting = await store.parked_count(conn, case_id)
            note = f"; {waiting} events are parked for it, waiting for routing to open it" if waiting else ""
            _err(f"parley case: no case {case_id} on record{note}")
            return 1
        rows = await store.stored_audit_rows(conn, case_id)
        plans = await store.plans_of(conn, case_id)
        timers = await store.timers_of(conn, case_id)
        parked = await store.parked_count(conn, case_id)
        clocks = await _clock_lines(conn, case_id)
    verification = audit.verify_chain(case_id, rows, case["audit_seq"], case["audit_head"])
    _out(f"Case {case_id}: {case['status']}")
    _out(
        f"  channel {case['channel']} · category {case['category'] or '-'} · priority {case['priority'] or '-'} · "
        f"queue {case['queue'] or '-'} (escalation {case['escalation_level']}) · "
        f"jurisdiction {case['jurisdiction'] or '-'}"
    )
    _out(
        f"  customer {case['customer_ref'] or 'anonymous'} · feedback {case['feedback_count']} · "
        f"agent {case['assigned_agent'] or '-'} · failed contact attempts {case['failed_contact_attempts']}"
    )
    _out(
        f"  opened {_when(case['opened_at'])} · first contact {_when(case['first_contact_at'])} · "
        f"resolved {_when(case['resolved_at'])} ({case['resolution'] or '-'}) · "
        f"regulator deadline {_when(case['regulator_deadline'])}"
    )
    chain = "intact" if verification.intact else "BROKEN (see `parley audit verify`)"
    _out(f"  audit trail: {len(rows)} rows, chain {chain}")
    _out()
    _out("Timeline:")
    for row in rows:
        _out(
            f"  {_when(row.occurred_at)}  #{row.seq or '-':<4} {_short_type(row.event_type):<30} "
            f"{_summary(row.payload)}"
        )
    if plans:
        _out()
        _out("Plans:")
        for plan in plans:
            paid = ", ".join(str(n) for n in sorted(plan.paid)) or "-"
            missed = ", ".join(str(n) for n in sorted(plan.missed)) or "-"
            _out(
                f"  {plan.plan_id} {plan.status.value}: {len(plan.schedule)} x {plan.instalment} {plan.currency}, "
                f"first due {plan.schedule[0].due_date if plan.schedule else '-'}; paid {paid}; missed {missed}; "
                f"repaid {plan.paid_total} {plan.currency}"
            )
    if timers:
        _out()
        _out("Timers:")
        for timer in timers:
            _out(f"  {timer.kind:<10} due {_when(timer.due_at)}")
    if parked:
        _out()
        _out(f"Parked: {parked} events wait for this case to open")
    _out()
    if clocks is None:
        _out("Clocks: the SLA engine is not installed here, or its tables are not in this database")
    else:
        _out("Clocks:" if clocks else "Clocks: none")
        for line in clocks:
            _out(line)
    return 0


async def verify_cases(pool: asyncpg.Pool, case_ids: list[uuid.UUID] | None) -> int:
    broken = checked = 0
    async with pool.acquire() as conn:
        targets = case_ids if case_ids is not None else await store.all_case_ids(conn)
        for case_id in targets:
            async with conn.transaction(isolation="repeatable_read", readonly=True):
                case = await store.case_row(conn, case_id)
                if case is None:
                    _err(f"parley audit verify: no case {case_id} on record")
                    return 2
                rows = await store.stored_audit_rows(conn, case_id)
            result = audit.verify_chain(case_id, rows, case["audit_seq"], case["audit_head"])
            checked += 1
            legacy = (
                f"; {result.unchained_before_chain} older rows from before the chain are not covered"
                if result.unchained_before_chain
                else ""
            )
            if result.first_break is not None:
                broken += 1
                _out(f"case {case_id}: chain BROKEN at {result.first_break.describe()}")
            elif case_ids is not None:
                head = (case["audit_head"] or audit.GENESIS).hex()
                _out(f"case {case_id}: chain intact, {result.chained_rows} rows, head sha256 {head}{legacy}")
    if case_ids is None:
        _out(f"{checked:,} cases checked: {checked - broken:,} intact, {broken:,} broken")
    return 1 if broken else 0


async def load_accounts(pool: asyncpg.Pool, path: Path) -> int:
    with path.open(encoding="utf-8") as lines:
        parsed = accounts.parse_lines(lines)
    if parsed.errors:
        for error in parsed.errors[:50]:
            _err(f"{path}: {error.describe()}")
        if len(parsed.errors) > 50:
            _err(f"{path}: … and {len(parsed.errors) - 50} more")
        _err(f"{path}: {len(parsed.errors):,} lines refused; nothing loaded (fix the file and load it again)")
        return 1
    async with transaction(pool) as conn:
        changed = await store.upsert_accounts(conn, parsed.snapshots)
    older = len(parsed.snapshots) - changed
    kept = f"; {older:,} older than the snapshot on record were not applied" if older else ""
    _out(f"{path}: {len(parsed.snapshots):,} account snapshots read, {changed:,} loaded{kept}")
    return 0


def command_case(args: argparse.Namespace) -> int:
    case_id = _case_id("case", args.case)
    url = _database_url("case")
    return asyncio.run(_with_pool(url, lambda pool: show_case(pool, case_id)))


def command_audit_verify(args: argparse.Namespace) -> int:
    if args.all == bool(args.case):
        raise _usage_error("parley audit verify: give a CASE id, or --all")
    case_ids = None if args.all else [_case_id("audit verify", args.case)]
    url = _database_url("audit verify")
    return asyncio.run(_with_pool(url, lambda pool: verify_cases(pool, case_ids)))


def command_accounts_load(args: argparse.Namespace) -> int:
    path = Path(args.file)
    if not path.is_file():
        raise _usage_error(f"parley accounts load: no such file: {path}")
    url = _database_url("accounts load")
    try:
        return asyncio.run(_with_pool(url, lambda pool: load_accounts(pool, path)))
    except UnicodeDecodeError as exc:
        raise ConfigurationError(f"{path} is not UTF-8 text (byte {exc.start})") from None


def register(commands: Any) -> None:
    """Add ``case``, ``audit`` and ``accounts`` to the ``parley`` command's subparsers."""
    case = commands.add_parser("case", help="a case's state, timeline, plans, timers and SLA clocks")
    case.add_argument("case", help="the case id")
    case.set_defaults(handler=command_case)
    audit_parser = commands.add_parser("audit", help="the tamper-evident audit trail")
    audit_commands = audit_parser.add_subparsers(dest="audit_command", required=True)
    verify = audit_commands.add_parser("verify", help="check a case's hash chain; names the first row that breaks it")
    verify.add_argument("case", nargs="?", help="the case id")
    verify.add_argument("--all", action="store_true", help="check every case")
    verify.set_defaults(handler=command_audit_verify)
    accounts_parser = commands.add_parser("accounts", help="account snapshots from the core-banking extract")
    accounts_commands = accounts_parser.add_subparsers(dest="accounts_command", required=True)
    load = accounts_commands.add_parser("load", help="load a JSON-lines file of account snapshots (all or nothing)")
    load.add_argument("file", help="one snapshot per line: customer_ref, as_of, debt, income")
    load.set_defaults(handler=command_accounts_load)
