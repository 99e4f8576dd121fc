"""The SLA engine's SQL: clocks, case facts, policy versions and the clock journal (schema ``sla``).

Every change to a clock is written in the transaction that records the consumed event's id
(``processed_messages``) and queues its alerts in the outbox. The poller locks due clocks with
``FOR UPDATE SKIP LOCKED``, so several workers share the due clocks and none fires an alert twice:
the alert and the clock's record of having fired it commit together.
"""

from __future__ import annotations

import json
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from datetime import datetime
from functools import lru_cache
from typing import TYPE_CHECKING, Any

import asyncpg

from schemas.values import ClockName
from services.runtime.db import OUTBOX_CHANNEL, add_to_outbox, headers_to_json, transaction
from services.runtime.errors import ConfigurationError
from services.runtime.kafka import Record
from services.sla.calendar import Unit
from services.sla.logic import CaseFacts, ClockState, ClockStatus, JournalEntry, PauseRecord, SlaEvent, Target
from services.sla.policies import PolicyVersion

if TYPE_CHECKING:
    from services.runtime.db import DbConnection

CONSUMER = "sla"
OUTBOX_SOURCE = "sla"

CLOCK_COLUMNS = (
    "case_id, clock, cycle, policy_id, policy_version, calendar, status, started_at, deadline, priority, queue, "
    "extensions, regulator_deadline, pauses::text AS pauses, fired, next_due_at, stopped_at"
)
CLOCK_NAMES = (
    "case_id, clock, cycle, policy_id, policy_version, calendar, status, started_at, deadline, priority, queue, "
    "extensions, regulator_deadline, pauses, fired, next_due_at, stopped_at"
)


# ---- rows ----


def _pauses_json(pauses: Sequence[PauseRecord]) -> str:
    return json.dumps(
        [
            {
                "start": p.start.isoformat(),
                "end": p.end.isoformat() if p.end else None,
                "reason": p.reason,
                "condition": p.condition,
            }
            for p in pauses
        ],
        ensure_ascii=False,
    )


def _pauses(text: str) -> tuple[PauseRecord, ...]:
    return tuple(
        PauseRecord(
            datetime.fromisoformat(p["start"]),
            datetime.fromisoformat(p["end"]) if p["end"] else None,
            p["reason"],
            p["condition"],
        )
        for p in json.loads(text)
    )


def _parked_json(parked: Sequence[SlaEvent]) -> str:
    return json.dumps(
        [
            {
                "event_id": str(e.event_id),
                "trigger": e.trigger,
                "at": e.at.isoformat(),
                "clock": e.clock.value if e.clock else None,
                "reason": e.reason,
                "agent_id": e.agent_id,
                "approved_by": e.approved_by,
                "new_target": _target_json(e.new_target),
            }
            for e in parked
        ],
        ensure_ascii=False,
    )


def _target_json(target: Target | None) -> dict[str, Any] | None:
    return {"amount": target.amount, "unit": target.unit.value} if target else None


def _target(value: dict[str, Any] | None) -> Target | None:
    return Target(int(value["amount"]), Unit(value["unit"])) if value else None


def _parked(text: str, case_id: uuid.UUID) -> tuple[SlaEvent, ...]:
    return tuple(
        SlaEvent(
            event_id=uuid.UUID(e["event_id"]),
            trigger=e["trigger"],
            case_id=case_id,
            at=datetime.fromisoformat(e["at"]),
            clock=ClockName(e["clock"]) if e["clock"] else None,
            reason=e["reason"],
            agent_id=e["agent_id"],
            approved_by=e["approved_by"],
            new_target=_target(e.get("new_target")),
        )
        for e in json.loads(text)
    )


def clock_from_row(row: asyncpg.Record) -> ClockState:
    return ClockState(
        case_id=row["case_id"],
        clock=ClockName(row["clock"]),
        cycle=row["cycle"],
        policy_id=row["policy_id"],
        policy_version=row["policy_version"],
        calendar=row["calendar"],
        status=ClockStatus(row["status"]),
        started_at=row["started_at"],
        deadline=row["deadline"],
        priority=row["priority"],
        queue=row["queue"],
        extensions=row["extensions"],
        regulator_deadline=row["regulator_deadline"],
        pauses=_pauses(row["pauses"]),
        fired=frozenset(row["fired"]),
        next_due_at=row["next_due_at"],
        stopped_at=row["stopped_at"],
    )


def clock_row(clock: ClockState) -> tuple[Any, ...]:
    return (
        clock.case_id,
        clock.clock,  # a StrEnum: its text
        clock.cycle,
        clock.policy_id,
        clock.policy_version,
        clock.calendar,
        clock.status,
        clock.started_at,
        clock.deadline,
        clock.priority,
        clock.queue,
        clock.extensions,
        clock.regulator_deadline,
        _pauses_json(clock.pauses) if clock.pauses else "[]",
        _text_array(sorted(clock.fired)),
        clock.next_due_at,
        clock.stopped_at,
    )


# Claims first (the sort in ``locks`` reads every claimed row), then the cases' locks in key order: the same
# order as claim_messages followed by a lock statement, in one round trip. It returns the ids handled before (as a
# rule none: a redelivery), not the fresh ones.
_CLAIM_AND_LOCK = """
WITH claimed AS (
    INSERT INTO processed_messages (consumer, message_key)
    SELECT $1, key::text FROM unnest($2::uuid[]) AS key
    ON CONFLICT DO NOTHING RETURNING message_key
), locks AS (
    SELECT pg_advisory_xact_lock(ordered.k) FROM (
        SELECT DISTINCT e.k FROM unnest($2::uuid[], $3::bigint[]) AS e(key, k)
        JOIN claimed ON claimed.message_key = e.key::text
        ORDER BY e.k
    ) AS ordered
)
SELECT e.key FROM unnest($2::uuid[]) AS e(key)
WHERE (SELECT count(*) FROM locks) >= 0 AND e.key::text NOT IN (SELECT message_key FROM claimed)
"""

# After the locks (a statement of its own: its snapshot must see what the locks' last holders committed).
_LOAD = f"""
WITH locked AS (
    SELECT {CLOCK_COLUMNS} FROM sla.clocks WHERE case_id = ANY($1::uuid[]) ORDER BY case_id, clock, cycle FOR UPDATE
)
SELECT false AS is_facts, {CLOCK_NAMES}, NULL::timestamptz AS opened_at, NULL::text AS channel,
       NULL::text AS jurisdiction, NULL::text AS category, NULL::text AS parked
FROM locked
UNION ALL
SELECT true, case_id, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, priority, queue, NULL, regulator_deadline,
       NULL, NULL, NULL, NULL, opened_at, channel, jurisdiction, category, parked::text
FROM sla.cases WHERE case_id = ANY($1::uuid[])
ORDER BY is_facts, case_id, clock, cycle
"""


def _fact_row(facts: CaseFacts) -> tuple[Any, ...]:
    return (
        facts.case_id,
        facts.opened_at,
        facts.channel,
        facts.jurisdiction,
        facts.category,
        facts.priority,
        facts.queue,
        facts.regulator_deadline,
        _parked_json(facts.parked) if facts.parked else "[]",
    )


def _text_array(values: Iterable[str]) -> str:
    """A text[] literal: one array per row travels inside unnest() as text (unnest flattens arrays of arrays)."""
    return "{" + ",".join('"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"' for v in values) + "}"


@lru_cache(maxsize=64)
def _headers_json(headers: tuple[tuple[str, bytes], ...]) -> str:
    return json.dumps(headers_to_json(list(headers)))


def _columns(rows: Sequence[tuple[Any, ...]], width: int) -> list[list[Any]]:
    """Rows as one list per column, for unnest()."""
    return [list(column) for column in zip(*rows, strict=True)] if rows else [[] for _ in range(width)]


_FACT_TYPES = ("uuid", "timestamptz", "text", "text", "text", "text", "text", "timestamptz", "text")
_CLOCK_TYPES = (
    "uuid", "text", "int4", "text", "int4", "text", "text", "timestamptz", "timestamptz", "text", "text", "int2",
    "timestamptz", "text", "text", "timestamptz", "timestamptz",
)  # fmt: skip
_JOURNAL_TYPES = ("uuid", "text", "int4", "text", "timestamptz", "uuid", "text")


def _params(first: int, types: Sequence[str]) -> str:
    return ", ".join(f"${first + n}::{kind}[]" for n, kind in enumerate(types))


_F, _C, _J = 1, 1 + len(_FACT_TYPES), 1 + len(_FACT_TYPES) + len(_CLOCK_TYPES)
_O = _J + len(_JOURNAL_TYPES)
_SAVE = f"""
WITH saved_facts AS (
    INSERT INTO sla.cases (case_id, opened_at, channel, jurisdiction, category, priority, queue,
                           regulator_deadline, parked)
    SELECT f.case_id, f.opened_at, f.channel, f.jurisdiction, f.category, f.priority, f.queue,
           f.regulator_deadline, f.parked::jsonb
    FROM unnest({_params(_F, _FACT_TYPES)})
        AS f(case_id, opened_at, channel, jurisdiction, category, priority, queue, regulator_deadline, parked)
    ON CONFLICT (case_id) DO UPDATE SET
        opened_at = EXCLUDED.opened_at, channel = EXCLUDED.channel,
        jurisdiction = EXCLUDED.jurisdiction, category = EXCLUDED.category,
        priority = EXCLUDED.priority, queue = EXCLUDED.queue,
        regulator_deadline = EXCLUDED.regulator_deadline, parked = EXCLUDED.parked,
        updated_at = now()
), saved_clocks AS (
    INSERT INTO sla.clocks (case_id, clock, cycle, policy_id, policy_version, calendar, status, started_at, deadline,
                            priority, queue, extensions, regulator_deadline, pauses, fired, next_due_at, stopped_at)
    SELECT c.case_id, c.clock, c.cycle, c.policy_id, c.policy_version, c.calendar, c.status, c.started_at,
           c.deadline, c.priority, c.queue, c.extensions, c.regulator_deadline, c.pauses::jsonb, c.fired::text[],
           c.next_due_at, c.stopped_at
    FROM unnest({_params(_C, _CLOCK_TYPES)})
        AS c(case_id, clock, cycle, policy_id, policy_version, calendar, status, started_at, deadline, priority,
             queue, extensions, regulator_deadline, pauses, fired, next_due_at, stopped_at)
    ON CONFLICT (case_id, clock, cycle) DO UPDATE SET
        calendar = EXCLUDED.calendar, status = EXCLUDED.status, deadline = EXCLUDED.deadline,
        priority = EXCLUDED.priority, queue = EXCLUDED.queue, extensions = EXCLUDED.extensions,
        pauses = EXCLUDED.pauses, fired = EXCLUDED.fired, next_due_at = EXCLUDED.next_due_at,
        stopped_at = EXCLUDED.stopped_at, updated_at = now()
), journal AS (
    INSERT INTO sla.clock_journal (case_id, clock, cycle, action, at, event_id, reason)
    SELECT j.case_id, j.clock, j.cycle, j.action, j.at, j.event_id, j.reason
    FROM unnest({_params(_J, _JOURNAL_TYPES)}) WITH ORDINALITY
        AS j(case_id, clock, cycle, action, at, event_id, reason, n)
    ORDER BY j.n
), queued AS (
    INSERT INTO outbox (source, topic, key, value, headers)
    SELECT ${_O}, ${_O + 1}::text, o.key, o.value, ${_O + 4}::text::jsonb
    FROM unnest(${_O + 2}::bytea[], ${_O + 3}::bytea[]) WITH ORDINALITY AS o(key, value, n)
    ORDER BY o.n
    RETURNING 1
)
-- Delivered at commit: wakes the relay without waiting for its next poll.
SELECT pg_notify(${_O + 5}, ${_O}) WHERE ${_O + 5}::text IS NOT NULL AND EXISTS (SELECT FROM queued)
"""


# ---- policy versions ----


async def record_policy_versions(conn: DbConnection, versions: Iterable[PolicyVersion]) -> list[PolicyVersion]:
    """Record the file's versions; refuse a version whose meaning changed; return versions only the database has.

    Those are versions that left the file while clocks may still run under them.
    """
    loaded = list(versions)
    await conn.executemany(
        """INSERT INTO sla.policy_versions (policy_id, version, checksum, spec)
           VALUES ($1, $2, $3, $4::text::jsonb) ON CONFLICT DO NOTHING""",
        [(v.policy.id, v.policy.version, v.checksum, json.dumps(v.spec())) for v in loaded],
    )
    rows = await conn.fetch("SELECT policy_id, version, checksum, spec::text AS spec FROM sla.policy_versions")
    in_file = {v.key: v for v in loaded}
    stored_only: list[PolicyVersion] = []
    for row in rows:
        key = (row["policy_id"], row["version"])
        mine = in_file.get(key)
        if mine is None:
            stored_only.append(PolicyVersion.from_spec(json.loads(row["spec"])))
        elif mine.checksum != row["checksum"]:
            raise ConfigurationError(
                f"SLA policy {key[0]} version {key[1]} differs from the version first loaded "
                f"(its clocks, or a calendar it uses, changed): publish the change as version {key[1] + 1} "
                "with a later effective_from"
            )
    return stored_only


# ---- consumed events ----


class SlaStore:
    """One transaction's database work."""

    def __init__(self, conn: DbConnection) -> None:
        self.conn = conn

    async def claim_and_lock(self, event_ids: Sequence[uuid.UUID], case_ids: Sequence[uuid.UUID]) -> set[uuid.UUID]:
        """Record the events (their ids, with each one's case) as handled, then lock the cases of those not handled
        before, in a fixed order (no deadlock), to serialise work on a case across workers and agents; returns the
        ids handled before (to be skipped). One statement: every claim is made before the first lock is taken, as in
        two. The message key is the id's text, as PostgreSQL writes a uuid and as ``str`` does (lower case,
        hyphenated)."""
        if not event_ids:
            return set()
        rows = await self.conn.fetch(_CLAIM_AND_LOCK, CONSUMER, event_ids, [_lock_key(c) for c in case_ids])
        return {row[0] for row in rows}

    async def load(
        self, case_ids: Iterable[uuid.UUID]
    ) -> tuple[dict[uuid.UUID, CaseFacts], dict[uuid.UUID, list[ClockState]]]:
        """The cases' facts, and their clocks (locked, by clock and run), in one statement."""
        facts: dict[uuid.UUID, CaseFacts] = {}
        clocks: dict[uuid.UUID, list[ClockState]] = defaultdict(list)
        for row in await self.conn.fetch(_LOAD, list(set(case_ids))):
            case_id = row["case_id"]
            if row["is_facts"]:
                facts[case_id] = CaseFacts(
                    case_id=case_id,
                    opened_at=row["opened_at"],
                    channel=row["channel"],
                    jurisdiction=row["jurisdiction"],
                    category=row["category"],
                    priority=row["priority"],
                    queue=row["queue"],
                    regulator_deadline=row["regulator_deadline"],
                    parked=_parked(row["parked"], case_id),
                )
            else:
                clocks[case_id].append(clock_from_row(row))
        return facts, clocks

    async def queue_alerts(self, records: list[Record]) -> None:
        await add_to_outbox(self.conn, OUTBOX_SOURCE, records)

    async def save(
        self,
        facts: Iterable[CaseFacts],
        clocks: Iterable[ClockState],
        journal: Iterable[JournalEntry],
        records: Sequence[Record],
    ) -> None:
        """``save_facts``, ``save_clocks``, ``write_journal`` and ``queue_alerts`` in one statement (one round
        trip, one execution per table instead of one per row). Journal entries and outbox records keep their order
        (their ids follow it); each case and each clock appears at most once."""
        fact_rows = [_fact_row(f) for f in facts]
        clock_rows = [clock_row(c) for c in clocks]
        entries = [(e.case_id, e.clock, e.cycle, e.action, e.at, e.event_id, e.reason) for e in journal]
        if not (fact_rows or clock_rows or entries or records):
            return
        # The alerts share their topic and headers: sent once, not once per record (else queued the general way).
        topic, headers = (records[0].topic, records[0].headers) if records else ("", [])
        shared = all(r.topic == topic and r.headers == headers for r in records)
        queued = records if shared else ()
        await self.conn.execute(
            _SAVE,
            *_columns(fact_rows, len(_FACT_TYPES)),
            *_columns(clock_rows, len(_CLOCK_TYPES)),
            *_columns(entries, len(_JOURNAL_TYPES)),
            OUTBOX_SOURCE,
            topic,
            [r.key for r in queued],
            [r.value for r in queued],
            _headers_json(tuple(headers)),
            OUTBOX_CHANNEL if queued else None,
        )
        if not shared:
            await add_to_outbox(self.conn, OUTBOX_SOURCE, list(records))

    # ---- the poller ----

    async def due_clocks(self, now: datetime, limit: int) -> list[ClockState]:
        """Running clocks with an alert due by ``now``, locked; clocks another worker holds are skipped."""
        rows = await self.conn.fetch(
            f"""SELECT {CLOCK_COLUMNS} FROM sla.clocks
                WHERE next_due_at <= $1 ORDER BY next_due_at LIMIT $2 FOR UPDATE SKIP LOCKED""",
            now,
            limit,
        )
        return [clock_from_row(row) for row in rows]

    async def mark_fired(self, clocks: Iterable[ClockState]) -> None:
        rows = [(c.case_id, c.clock.value, c.cycle, sorted(c.fired), c.next_due_at) for c in clocks]
        if rows:
            await self.conn.executemany(
                """UPDATE sla.clocks SET fired = $4, next_due_at = $5, updated_at = now()
                   WHERE case_id = $1 AND clock = $2 AND cycle = $3""",
                rows,
            )

    async def next_due_at(self) -> datetime | None:
        value: datetime | None = await self.conn.fetchval("SELECT min(next_due_at) FROM sla.clocks")
        return value


def _lock_key(case_id: uuid.UUID) -> int:
    """A signed 64-bit advisory lock key for a case (its UUID's first 8 bytes, read big-endian)."""
    high = case_id.int >> 64
    return high - (1 << 64) if high >= 1 << 63 else high


@asynccontextmanager
async def unit_of_work(pool: asyncpg.Pool) -> AsyncIterator[SlaStore]:
    async with transaction(pool) as conn:
        yield SlaStore(conn)


# ---- for other parts: ``parley case`` ----


async def clocks_for_case(conn: DbConnection, case_id: uuid.UUID) -> list[ClockState]:
    """Every clock run of a case, by clock name then run: status, policy and version, calendar, start,
    deadline (as it stands; for a paused clock, as it stood when the pause began), pauses with their
    reasons, alerts already fired (``fired``: dedup key suffixes) and when the next one falls due."""
    rows = await conn.fetch(
        f"SELECT {CLOCK_COLUMNS} FROM sla.clocks WHERE case_id = $1 ORDER BY clock, cycle",
        case_id,
    )
    return [clock_from_row(row) for row in rows]
