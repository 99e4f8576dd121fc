"""Routing's SQL: load what a batch touches into a RoutingState, write back what changed, in one transaction.

Locks: a batch locks the cases it may change (one statement, in case-id order) and their
assignments; the escalation timer takes due assignments with ``FOR UPDATE SKIP LOCKED`` (with their
cases), so it never waits for a batch and a batch never loses a timer's change. Queue counters are
updated last, in queue order, as increments: the moment two workers hold the same counter row is short.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from operator import attrgetter
from typing import TYPE_CHECKING, Any

import asyncpg

from schemas.triage import CaseTriaged
from schemas.values import Category, Flag, Priority, Queue
from services.routing.logic import (
    Assignment,
    CaseState,
    FeedbackRecord,
    Lane,
    PostState,
    RoutingState,
)
from services.routing.virality import Observation, RateAverage, Reach
from services.runtime.db import add_to_outbox
from services.runtime.errors import RetryableError
from services.runtime.kafka import Record

if TYPE_CHECKING:
    from services.runtime.db import DbConnection

CONSUMER = "routing"
SEPARATOR = "\x1f"  # joins a text[] column's values in one text cell for unnest (no reference contains it)


def _joined(values: Iterable[str]) -> str:
    """Sorted values in one cell (enum members join as their values: they are str)."""
    return SEPARATOR.join(sorted(values))


_UUID_ORDER = attrgetter("int")  # a UUID's own order, compared as machine ints rather than through UUID.__lt__


def _in_order(ids: Iterable[uuid.UUID]) -> list[uuid.UUID]:
    return sorted(ids, key=_UUID_ORDER)


def _assignment_order(key: tuple[uuid.UUID, Lane]) -> tuple[int, str]:
    return key[0].int, key[1]


@dataclass
class Wanted:
    """What a batch's events refer to; ``load`` brings in every row they may touch."""

    customer_refs: set[str] = field(default_factory=set)
    case_ids: set[uuid.UUID] = field(default_factory=set)
    keys: set[str] = field(default_factory=set)
    feedback_ids: set[uuid.UUID] = field(default_factory=set)
    """Feedback whose triage is needed (splits)."""
    triaged_ids: set[uuid.UUID] = field(default_factory=set)
    """Feedback arriving now: only whether it is already on a case."""
    post_keys: set[str] = field(default_factory=set)
    rate_scopes: set[str] = field(default_factory=set)


def _case(row: Any) -> CaseState:
    return CaseState(
        case_id=row["case_id"],
        customer_ref=row["customer_ref"],
        is_open=row["is_open"],
        problem_group=row["problem_group"],
        categories={Category(value) for value in row["categories"]},
        flags={Flag(value) for value in row["flags"]},
        priority=Priority(row["priority"]),
        human_required=row["human_required"],
        regulator_refs=set(row["regulator_refs"]),
        opened_at=row["opened_at"],
        updated_at=row["updated_at"],
        opening_feedback_id=row["opening_feedback_id"],
        split_from=row["split_from"],
    )


def _assignment(row: Any) -> Assignment:
    return Assignment(
        lane=Lane(row["lane"]),
        queue=Queue(row["queue"]),
        filter_name=row["filter_name"],
        target_index=row["target_index"],
        timeout_seconds=row["timeout_seconds"],
        escalation_level=row["escalation_level"],
        overflow=row["overflow"],
        priority=Priority(row["priority"]),
        feedback_id=row["feedback_id"],
        routed_at=row["routed_at"],
        due_at=row["due_at"],
        waiting=row["waiting"],
        accepted_at=row["accepted_at"],
        accepted_by=row["accepted_by"],
    )


async def _load_cases(conn: DbConnection, state: RoutingState, case_ids: list[uuid.UUID], customers: list[str]) -> None:
    # The ids first (customers one by one through their index), then the rows by primary key: a join on the
    # two lists, as ``IN (… UNION ALL …)``, let the planner scan the whole table once it had a few thousand rows.
    rows = await conn.fetch(
        """SELECT * FROM routing.cases WHERE case_id = ANY(ARRAY(
               SELECT unnest($1::uuid[])
               UNION
               SELECT found.case_id FROM unnest($2::text[]) AS r(customer_ref),
                   LATERAL (SELECT case_id FROM routing.cases
                            WHERE is_open AND customer_ref = r.customer_ref OFFSET 0) AS found))
           ORDER BY case_id FOR UPDATE""",
        case_ids,
        customers,
    )
    for customer in customers:
        state.open_cases_by_customer.setdefault(customer, [])
    for row in rows:
        case = _case(row)
        state.cases[case.case_id] = case
        if case.is_open and case.customer_ref in state.open_cases_by_customer:
            state.open_cases_by_customer[case.customer_ref].append(case.case_id)
    assignment_rows = await conn.fetch(
        "SELECT * FROM routing.assignments WHERE case_id = ANY($1::uuid[]) ORDER BY case_id, lane FOR UPDATE",
        list(state.cases),
    )
    for row in assignment_rows:
        assignment = _assignment(row)
        state.cases[row["case_id"]].assignments[assignment.lane] = assignment


async def _load_feedback(conn: DbConnection, state: RoutingState, feedback_ids: list[uuid.UUID]) -> None:
    if not feedback_ids:
        return
    rows = await conn.fetch(
        "SELECT feedback_id, case_id, received_at, triaged FROM routing.feedback WHERE feedback_id = ANY($1::uuid[])",
        feedback_ids,
    )
    for row in rows:
        state.feedback[row["feedback_id"]] = FeedbackRecord(
            row["feedback_id"], row["case_id"], CaseTriaged.model_validate(row["triaged"]), row["received_at"]
        )


async def _load_backlog(conn: DbConnection, state: RoutingState) -> None:
    _backlog(state, await conn.fetch("SELECT queue, waiting FROM routing.queues"))


def _post(row: Any) -> PostState:
    return PostState(
        post_key=row["post_key"],
        account_key=row["account_key"],
        last=Observation(Reach(row["followers"], row["reposts"], row["comments"], row["likes"]), row["observed_at"]),
        posted_at=row["posted_at"],
        observations=row["observations"],
        score=row["virality_score"],
        alert_level=row["alert_level"],
    )


def _backlog(state: RoutingState, rows: Iterable[Any]) -> None:
    for row in rows:
        try:
            state.backlog[Queue(row["queue"])] = row["waiting"]
        except ValueError:
            continue  # a queue the rules no longer know


# One round trip claims the batch's events and loads, locking, every row they may touch: each of the
# dozen statements this took cost both sides more than most of the rows did. Locks are taken in the order
# the separate statements took them (cases by id, their assignments, posts by key); the arrays of table rows
# come back as records, decoded by asyncpg. Every row is looked up one by one through its key (LATERAL, in key
# order for the locked ones): the plan is cached while the tables are small, and with a list parameter
# (``= ANY($1)``) the planner kept scanning whole tables of thousands of rows, every row against every value.
CLAIM_AND_LOAD = """
WITH claimed AS (
        INSERT INTO processed_messages (consumer, message_key)
        SELECT $1, key FROM unnest($2::text[]) AS key
        ON CONFLICT DO NOTHING RETURNING message_key),
    keys AS MATERIALIZED (
        SELECT found.k FROM unnest($3::text[]) AS r(key),
            LATERAL (SELECT k FROM routing.case_keys k WHERE k.key = r.key OFFSET 0) AS found),
    wanted AS MATERIALIZED (
        SELECT DISTINCT case_id FROM (
            SELECT unnest($4::uuid[]) AS case_id
            UNION ALL SELECT (k).case_id FROM keys
            UNION ALL SELECT found.case_id FROM unnest($5::text[]) AS r(customer_ref),
                LATERAL (SELECT case_id FROM routing.cases
                         WHERE is_open AND customer_ref = r.customer_ref OFFSET 0) AS found) AS ids
        ORDER BY case_id),
    cases AS MATERIALIZED (
        SELECT found.c FROM wanted,
            LATERAL (SELECT c FROM routing.cases c WHERE c.case_id = wanted.case_id FOR UPDATE) AS found),
    assignments AS MATERIALIZED (
        SELECT found.a FROM cases,
            LATERAL (SELECT a FROM routing.assignments a WHERE a.case_id = (cases.c).case_id
                     ORDER BY a.lane FOR UPDATE) AS found),
    posts AS MATERIALIZED (
        SELECT found.p FROM (SELECT key FROM unnest($6::text[]) AS key ORDER BY key) AS r,
            LATERAL (SELECT p FROM routing.social_posts p WHERE p.post_key = r.key FOR UPDATE) AS found)
SELECT ARRAY(SELECT message_key FROM claimed) AS claimed,
    ARRAY(SELECT k FROM keys) AS keys,
    ARRAY(SELECT found.feedback_id FROM unnest($7::uuid[]) AS r(feedback_id),
        LATERAL (SELECT feedback_id FROM routing.feedback f WHERE f.feedback_id = r.feedback_id OFFSET 0) AS found)
        AS placed,
    ARRAY(SELECT c FROM cases) AS cases,
    ARRAY(SELECT a FROM assignments) AS assignments,
    ARRAY(SELECT p FROM posts) AS posts,
    -- Not locked: a moving average may lose one concurrent update, which moves it by a hair.
    ARRAY(SELECT found.r FROM unnest($8::text[]) AS s(scope),
        LATERAL (SELECT r FROM routing.repost_rates r WHERE r.scope = s.scope OFFSET 0) AS found) AS rates,
    ARRAY(SELECT q FROM routing.queues q) AS queues
"""
# The same, and for the rest of the transaction large values (the triage's JSON) compressed with lz4, not pglz:
# the same values read back, for a fraction of the server's CPU (set only where the server is built with lz4).
CLAIM_AND_LOAD_LZ4 = (
    CLAIM_AND_LOAD.rstrip()
    + """,
    set_config('default_toast_compression', 'lz4', true) AS toast_compression
"""
)


async def lz4_available(conn: DbConnection) -> bool:
    """Whether the server can compress values with lz4 (a build option)."""
    return bool(
        await conn.fetchval("SELECT 'lz4' = ANY(enumvals) FROM pg_settings WHERE name = 'default_toast_compression'")
    )


async def claim_and_load(
    conn: DbConnection, event_ids: list[str], wanted: Wanted, *, lz4: bool = False
) -> tuple[set[str], RoutingState]:
    """Record the events as handled (the ids not handled before come back) and load what they may touch;
    ``lz4``: large values this transaction writes are compressed with lz4 (see ``lz4_available``).

    ``wanted`` may cover events that turn out to be repeats: their rows are loaded (and locked) for nothing,
    which changes no decision (each event's decision reads only the rows its own references bring in).
    """
    state = RoutingState()
    case_ids = set(wanted.case_ids)
    if wanted.feedback_ids:  # a split: the feedback's triage, and the references it brought (no index: rare)
        await _load_feedback(conn, state, list(wanted.feedback_ids))
        for key_row in await conn.fetch(
            "SELECT key, case_id, feedback_id FROM routing.case_keys WHERE feedback_id = ANY($1::uuid[])",
            list(wanted.feedback_ids),
        ):
            state.keys[key_row["key"]] = (key_row["case_id"], key_row["feedback_id"])
        case_ids.update(case_id for case_id, _ in state.keys.values())
        case_ids.update(record.case_id for record in state.feedback.values())
    try:
        row = await conn.fetchrow(
            CLAIM_AND_LOAD_LZ4 if lz4 else CLAIM_AND_LOAD,
            CONSUMER,
            event_ids,
            sorted(wanted.keys),
            _in_order(case_ids),
            sorted(wanted.customer_refs),
            sorted(wanted.post_keys),
            list(wanted.triaged_ids),
            sorted(wanted.rate_scopes),
        )
    except asyncpg.exceptions.OutdatedSchemaCacheError as exc:
        # A migration changed a table's row type under this connection's decoders (asyncpg has dropped them).
        raise RetryableError("a routing table changed under the cached row types") from exc
    assert row is not None  # a SELECT without FROM: always one row
    for key in row["keys"]:
        state.keys[key["key"]] = (key["case_id"], key["feedback_id"])
    state.placed.update(row["placed"])
    for customer in wanted.customer_refs:
        state.open_cases_by_customer.setdefault(customer, [])
    for case_row in row["cases"]:
        case = _case(case_row)
        state.cases[case.case_id] = case
        if case.is_open and case.customer_ref in state.open_cases_by_customer:
            state.open_cases_by_customer[case.customer_ref].append(case.case_id)
    for assignment_row in row["assignments"]:
        assignment = _assignment(assignment_row)
        state.cases[assignment_row["case_id"]].assignments[assignment.lane] = assignment
    for post_row in row["posts"]:
        state.posts[post_row["post_key"]] = _post(post_row)
    for rate in row["rates"]:
        state.averages[rate["scope"]] = RateAverage(rate["reposts_per_hour"], rate["observations"])
    _backlog(state, row["queues"])
    return set(row["claimed"]), state


async def take_due(conn: DbConnection, now: datetime, limit: int) -> RoutingState | None:
    """Lock assignments due at ``now`` (skipping any a batch holds) and load their cases; None when none."""
    due = await conn.fetch(
        """SELECT a.case_id FROM routing.assignments a JOIN routing.cases c ON c.case_id = a.case_id
           WHERE a.due_at <= $1 ORDER BY a.due_at LIMIT $2 FOR UPDATE OF a, c SKIP LOCKED""",
        now,
        limit,
    )
    if not due:
        return None
    state = RoutingState()
    await _load_cases(conn, state, sorted({row["case_id"] for row in due}), [])
    feedback_ids = {a.feedback_id for case in state.cases.values() for a in case.assignments.values()}
    await _load_feedback(conn, state, list(feedback_ids))
    await _load_backlog(conn, state)
    return state


async def reveal(conn: DbConnection, tokens: list[str], reader: str, purpose: str) -> dict[str, str]:
    """Originals of tokens, through the vault's audited function: one access-log row per token read."""
    if not tokens:
        return {}
    rows = await conn.fetch(
        "SELECT token, pii.reveal(token, $2, $3) AS value FROM unnest($1::text[]) AS token",
        tokens,
        reader,
        purpose,
    )
    return {row["token"]: row["value"] for row in rows if row["value"] is not None}


@dataclass(frozen=True)
class RevealRequest:
    """Tokens one reader may see, for one purpose (one delivery)."""

    tokens: list[str]
    reader: str
    purpose: str


async def reveal_many(conn: DbConnection, requests: list[RevealRequest]) -> list[dict[str, str]]:
    """``reveal`` for several requests in one statement, in order: the same audit rows, one per token per request."""
    if not requests:
        return []
    rows = await conn.fetch(
        """SELECT request, token, pii.reveal(token, reader, purpose) AS value
           FROM unnest($1::integer[], $2::text[], $3::text[], $4::text[]) WITH ORDINALITY
               AS r(request, token, reader, purpose, position)
           ORDER BY position""",
        [index for index, request in enumerate(requests) for _ in request.tokens],
        [token for request in requests for token in request.tokens],
        [request.reader for request in requests for _ in request.tokens],
        [request.purpose for request in requests for _ in request.tokens],
    )
    values: list[dict[str, str]] = [{} for _ in requests]
    for row in rows:
        if row["value"] is not None:
            values[row["request"]][row["token"]] = row["value"]
    return values


# Every table a batch changes, in one statement (one round trip; rows through unnest, one array per column).
# Foreign keys are checked at the end of the statement, when the cases are in. Queue counters are increments,
# in queue order, after the outbox rows: the moment two workers hold the same counter row is short.
SAVE = """
WITH cases AS (
        INSERT INTO routing.cases (case_id, customer_ref, is_open, problem_group, categories, flags, priority,
            human_required, regulator_refs, opened_at, updated_at, opening_feedback_id, split_from)
        SELECT case_id, customer_ref, is_open, problem_group, string_to_array(categories, $14),
            string_to_array(flags, $14), priority, human_required, string_to_array(regulator_refs, $14),
            opened_at, updated_at, opening_feedback_id, split_from
        FROM unnest($1::uuid[], $2::text[], $3::boolean[], $4::text[], $5::text[], $6::text[], $7::text[],
            $8::boolean[], $9::text[], $10::timestamptz[], $11::timestamptz[], $12::uuid[], $13::uuid[])
            AS t(case_id, customer_ref, is_open, problem_group, categories, flags, priority, human_required,
                 regulator_refs, opened_at, updated_at, opening_feedback_id, split_from)
        ON CONFLICT (case_id) DO UPDATE SET customer_ref = EXCLUDED.customer_ref, is_open = EXCLUDED.is_open,
            categories = EXCLUDED.categories, flags = EXCLUDED.flags, priority = EXCLUDED.priority,
            human_required = EXCLUDED.human_required, regulator_refs = EXCLUDED.regulator_refs,
            updated_at = EXCLUDED.updated_at),
    feedback AS (
        -- The triage as it came: the case.triaged event's data object (its own JSON, not serialised again),
        -- else the triage serialised here.
        INSERT INTO routing.feedback (feedback_id, case_id, received_at, triaged)
        SELECT feedback_id, case_id, received_at,
            COALESCE(convert_from(event, 'UTF8')::jsonb -> 'data', triaged::jsonb)
        FROM unnest($15::uuid[], $16::uuid[], $17::timestamptz[], $18::bytea[], $19::text[])
            AS t(feedback_id, case_id, received_at, event, triaged)
        ON CONFLICT (feedback_id) DO UPDATE SET case_id = EXCLUDED.case_id),
    new_keys AS (
        INSERT INTO routing.case_keys (key, case_id, feedback_id)
        SELECT * FROM unnest($20::text[], $21::uuid[], $22::uuid[]) ON CONFLICT (key) DO NOTHING RETURNING key),
    moved_keys AS (
        UPDATE routing.case_keys k SET case_id = m.case_id, feedback_id = m.feedback_id
        FROM unnest($23::text[], $24::uuid[], $25::uuid[]) AS m(key, case_id, feedback_id) WHERE k.key = m.key),
    assignments AS (
        INSERT INTO routing.assignments (case_id, lane, queue, filter_name, target_index, timeout_seconds,
            escalation_level, overflow, priority, feedback_id, routed_at, due_at, waiting, accepted_at, accepted_by)
        SELECT * FROM unnest($26::uuid[], $27::text[], $28::text[], $29::text[], $30::integer[], $31::integer[],
            $32::integer[], $33::boolean[], $34::text[], $35::uuid[], $36::timestamptz[], $37::timestamptz[],
            $38::boolean[], $39::timestamptz[], $40::text[])
        ON CONFLICT (case_id, lane) DO UPDATE SET queue = EXCLUDED.queue, filter_name = EXCLUDED.filter_name,
            target_index = EXCLUDED.target_index, timeout_seconds = EXCLUDED.timeout_seconds,
            escalation_level = EXCLUDED.escalation_level, overflow = EXCLUDED.overflow,
            priority = EXCLUDED.priority, feedback_id = EXCLUDED.feedback_id, routed_at = EXCLUDED.routed_at,
            due_at = EXCLUDED.due_at, waiting = EXCLUDED.waiting, accepted_at = EXCLUDED.accepted_at,
            accepted_by = EXCLUDED.accepted_by),
    posts AS (
        INSERT INTO routing.social_posts (post_key, account_key, posted_at, followers, reposts, comments, likes,
            observed_at, observations, virality_score, alert_level)
        SELECT * FROM unnest($41::text[], $42::text[], $43::timestamptz[], $44::bigint[], $45::bigint[],
            $46::bigint[], $47::bigint[], $48::timestamptz[], $49::integer[], $50::float8[], $51::smallint[])
        ON CONFLICT (post_key) DO UPDATE SET followers = EXCLUDED.followers, reposts = EXCLUDED.reposts,
            comments = EXCLUDED.comments, likes = EXCLUDED.likes, observed_at = EXCLUDED.observed_at,
            observations = EXCLUDED.observations, virality_score = EXCLUDED.virality_score,
            alert_level = EXCLUDED.alert_level),
    rates AS (
        INSERT INTO routing.repost_rates (scope, reposts_per_hour, observations)
        SELECT * FROM unnest($52::text[], $53::float8[], $54::bigint[])
        ON CONFLICT (scope) DO UPDATE SET reposts_per_hour = EXCLUDED.reposts_per_hour,
            observations = EXCLUDED.observations),
    queues AS (
        INSERT INTO routing.queues AS q (queue, waiting, routed_total, accepted_total, overflowed_total,
            escalated_total, updated_at)
        SELECT *, $61::timestamptz FROM unnest($55::text[], $56::bigint[], $57::bigint[], $58::bigint[],
            $59::bigint[], $60::bigint[])
        ON CONFLICT (queue) DO UPDATE SET waiting = q.waiting + EXCLUDED.waiting,
            routed_total = q.routed_total + EXCLUDED.routed_total,
            accepted_total = q.accepted_total + EXCLUDED.accepted_total,
            overflowed_total = q.overflowed_total + EXCLUDED.overflowed_total,
            escalated_total = q.escalated_total + EXCLUDED.escalated_total, updated_at = EXCLUDED.updated_at)
SELECT count(*) FROM new_keys
"""


async def save(conn: DbConnection, state: RoutingState, records: list[Record], now: datetime) -> None:
    """Write the events the batch emits (outbox) and every change it made, in the caller's transaction."""
    await add_to_outbox(conn, CONSUMER, records)
    changes = state.changes
    counters = (changes.waiting, changes.routed, changes.accepted, changes.overflowed, changes.escalated)
    queues = sorted({queue for counter in counters for queue, delta in counter.items() if delta})
    if not (
        changes.cases
        or changes.feedback
        or changes.new_keys
        or changes.moved_keys
        or changes.assignments
        or changes.posts
        or changes.averages
        or queues
    ):
        return
    cases = [state.cases[case_id] for case_id in _in_order(changes.cases)]
    placed = [state.feedback[feedback_id] for feedback_id in _in_order(changes.feedback)]
    new_keys = sorted(changes.new_keys)
    moved_keys = sorted(changes.moved_keys)
    assigned = [
        (case_id, state.cases[case_id].assignments[lane])
        for case_id, lane in sorted(changes.assignments, key=_assignment_order)
    ]
    posts = [state.posts[key] for key in sorted(changes.posts)]
    scopes = sorted(changes.averages)
    inserted_keys = await conn.fetchval(
        SAVE,
        # cases
        [case.case_id for case in cases],
        [case.customer_ref for case in cases],
        [case.is_open for case in cases],
        [case.problem_group for case in cases],
        [_joined(case.categories) for case in cases],
        [_joined(case.flags) for case in cases],
        [case.priority for case in cases],
        [case.human_required for case in cases],
        [_joined(case.regulator_refs) for case in cases],
        [case.opened_at for case in cases],
        [case.updated_at for case in cases],
        [case.opening_feedback_id for case in cases],
        [case.split_from for case in cases],
        SEPARATOR,
        # feedback
        [record.feedback_id for record in placed],
        [record.case_id for record in placed],
        [record.received_at for record in placed],
        [record.source for record in placed],
        [None if record.source is not None else record.triaged.model_dump_json() for record in placed],
        # new and moved keys
        new_keys,
        [state.keys[key][0] for key in new_keys],
        [state.keys[key][1] for key in new_keys],
        moved_keys,
        [state.keys[key][0] for key in moved_keys],
        [state.keys[key][1] for key in moved_keys],
        # assignments
        [case_id for case_id, _ in assigned],
        [a.lane for _, a in assigned],
        [a.queue for _, a in assigned],
        [a.filter_name for _, a in assigned],
        [a.target_index for _, a in assigned],
        [a.timeout_seconds for _, a in assigned],
        [a.escalation_level for _, a in assigned],
        [a.overflow for _, a in assigned],
        [a.priority for _, a in assigned],
        [a.feedback_id for _, a in assigned],
        [a.routed_at for _, a in assigned],
        [a.due_at for _, a in assigned],
        [a.waiting for _, a in assigned],
        [a.accepted_at for _, a in assigned],
        [a.accepted_by for _, a in assigned],
        # social posts and usual repost rates
        [post.post_key for post in posts],
        [post.account_key for post in posts],
        [post.posted_at for post in posts],
        [post.last.reach.followers for post in posts],
        [post.last.reach.reposts for post in posts],
        [post.last.reach.comments for post in posts],
        [post.last.reach.likes for post in posts],
        [post.last.observed_at for post in posts],
        [post.observations for post in posts],
        [post.score for post in posts],
        [post.alert_level for post in posts],
        scopes,
        [state.averages[scope].reposts_per_hour for scope in scopes],
        [state.averages[scope].observations for scope in scopes],
        # queue counters (increments)
        queues,
        *([counter[queue] for queue in queues] for counter in counters),
        now,
    )
    if inserted_keys != len(new_keys):
        # Another worker just gave the same post or referral a case: redo the batch, which will now see it.
        raise RetryableError("a reference was claimed by another worker at the same moment")


@dataclass(frozen=True)
class QueueFigures:
    queue: str
    waiting: int
    routed_total: int
    accepted_total: int
    overflowed_total: int
    escalated_total: int
    updated_at: datetime


async def queue_figures(conn: DbConnection) -> list[QueueFigures]:
    rows = await conn.fetch(
        """SELECT queue, waiting, routed_total, accepted_total, overflowed_total, escalated_total, updated_at
           FROM routing.queues ORDER BY queue"""
    )
    return [QueueFigures(**dict(row)) for row in rows]
