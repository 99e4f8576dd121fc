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
from typing import TYPE_CHECKING, Any

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
from services.runtime.db import add_to_outbox, claim_messages
from services.runtime.errors import RetryableError
from services.runtime.kafka import Record

if TYPE_CHECKING:
    from services.runtime.db import DbConnection

CONSUMER = "routing"
SEPARATOR = "\x1f"  # joins a text[] column's values in one text cell for unnest (no reference contains it)


def _joined(values: Iterable[str]) -> str:
    return SEPARATOR.join(sorted(values))


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


async def claim(conn: DbConnection, event_ids: Iterable[uuid.UUID]) -> set[str]:
    return await claim_messages(conn, CONSUMER, [str(event_id) for event_id in event_ids])


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
    rows = await conn.fetch(
        """SELECT * FROM routing.cases WHERE case_id IN (
               SELECT case_id FROM routing.cases WHERE case_id = ANY($1::uuid[])
               UNION ALL
               SELECT case_id FROM routing.cases WHERE is_open AND customer_ref = ANY($2::text[]))
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
    for row in await conn.fetch("SELECT queue, waiting FROM routing.queues"):
        try:
            state.backlog[Queue(row["queue"])] = row["waiting"]
        except ValueError:
            continue  # a queue the rules no longer know


async def load(conn: DbConnection, wanted: Wanted) -> RoutingState:
    state = RoutingState()
    key_rows = await conn.fetch(
        "SELECT key, case_id, feedback_id FROM routing.case_keys WHERE key = ANY($1::text[]) "
        "OR feedback_id = ANY($2::uuid[])",
        sorted(wanted.keys),
        list(wanted.feedback_ids),
    )
    for row in key_rows:
        state.keys[row["key"]] = (row["case_id"], row["feedback_id"])
    await _load_feedback(conn, state, list(wanted.feedback_ids))
    if wanted.triaged_ids:
        rows = await conn.fetch(
            "SELECT feedback_id FROM routing.feedback WHERE feedback_id = ANY($1::uuid[])", list(wanted.triaged_ids)
        )
        state.placed.update(row["feedback_id"] for row in rows)
    case_ids = (
        wanted.case_ids
        | {case_id for case_id, _ in state.keys.values()}
        | {record.case_id for record in state.feedback.values()}
    )
    await _load_cases(conn, state, sorted(case_ids), sorted(wanted.customer_refs))
    if wanted.post_keys:
        for row in await conn.fetch(
            "SELECT * FROM routing.social_posts WHERE post_key = ANY($1::text[]) ORDER BY post_key FOR UPDATE",
            sorted(wanted.post_keys),
        ):
            state.posts[row["post_key"]] = PostState(
                post_key=row["post_key"],
                account_key=row["account_key"],
                last=Observation(
                    Reach(row["followers"], row["reposts"], row["comments"], row["likes"]), row["observed_at"]
                ),
                posted_at=row["posted_at"],
                observations=row["observations"],
                score=row["virality_score"],
                alert_level=row["alert_level"],
            )
    if wanted.rate_scopes:
        # Not locked: a moving average may lose one concurrent update, which moves it by a hair.
        for row in await conn.fetch(
            "SELECT scope, reposts_per_hour, observations FROM routing.repost_rates WHERE scope = ANY($1::text[])",
            sorted(wanted.rate_scopes),
        ):
            state.averages[row["scope"]] = RateAverage(row["reposts_per_hour"], row["observations"])
    await _load_backlog(conn, state)
    return state


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


async def save(conn: DbConnection, state: RoutingState, records: list[Record], now: datetime) -> None:
    """Write every change the batch made, then the events it emits (outbox), in the caller's transaction."""
    changes = state.changes
    cases = [state.cases[case_id] for case_id in sorted(changes.cases)]
    if cases:
        # One statement per table (unnest), not one per row: a batch writes hundreds of rows.
        await conn.execute(
            """INSERT INTO routing.cases (case_id, customer_ref, is_open, problem_group, categories, flags, priority,
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
                   updated_at = EXCLUDED.updated_at""",
            [case.case_id for case in cases],
            [case.customer_ref for case in cases],
            [case.is_open for case in cases],
            [case.problem_group for case in cases],
            [_joined(c.value for c in case.categories) for case in cases],
            [_joined(f.value for f in case.flags) for case in cases],
            [case.priority.value for case in cases],
            [case.human_required for case in cases],
            [_joined(case.regulator_refs) for case in cases],
            [case.opened_at for case in cases],
            [case.updated_at for case in cases],
            [case.opening_feedback_id for case in cases],
            [case.split_from for case in cases],
            SEPARATOR,
        )
    if changes.feedback:
        placed = [state.feedback[feedback_id] for feedback_id in sorted(changes.feedback)]
        await conn.execute(
            """INSERT INTO routing.feedback (feedback_id, case_id, received_at, triaged)
               SELECT feedback_id, case_id, received_at, triaged::jsonb
               FROM unnest($1::uuid[], $2::uuid[], $3::timestamptz[], $4::text[])
                   AS t(feedback_id, case_id, received_at, triaged)
               ON CONFLICT (feedback_id) DO UPDATE SET case_id = EXCLUDED.case_id""",
            [record.feedback_id for record in placed],
            [record.case_id for record in placed],
            [record.received_at for record in placed],
            [record.triaged.model_dump_json() for record in placed],
        )
    if changes.new_keys:
        rows = [(key, *state.keys[key]) for key in sorted(changes.new_keys)]
        inserted = await conn.fetch(
            """INSERT INTO routing.case_keys (key, case_id, feedback_id)
               SELECT * FROM unnest($1::text[], $2::uuid[], $3::uuid[]) ON CONFLICT (key) DO NOTHING RETURNING key""",
            [row[0] for row in rows],
            [row[1] for row in rows],
            [row[2] for row in rows],
        )
        if len(inserted) != len(rows):
            # Another worker just gave the same post or referral a case: redo the batch, which will now see it.
            raise RetryableError("a reference was claimed by another worker at the same moment")
    if changes.moved_keys:
        await conn.executemany(
            "UPDATE routing.case_keys SET case_id = $2, feedback_id = $3 WHERE key = $1",
            [(key, *state.keys[key]) for key in sorted(changes.moved_keys)],
        )
    if changes.assignments:
        assigned = [(case_id, state.cases[case_id].assignments[lane]) for case_id, lane in sorted(changes.assignments)]
        await conn.execute(
            """INSERT INTO routing.assignments (case_id, lane, queue, filter_name, target_index, timeout_seconds,
                   escalation_level, overflow, priority, feedback_id, routed_at, due_at, waiting, accepted_at,
                   accepted_by)
               SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::integer[], $6::integer[],
                   $7::integer[], $8::boolean[], $9::text[], $10::uuid[], $11::timestamptz[], $12::timestamptz[],
                   $13::boolean[], $14::timestamptz[], $15::text[])
               ON CONFLICT (case_id, lane) DO UPDATE SET queue = EXCLUDED.queue, filter_name = EXCLUDED.filter_name,
                   target_index = EXCLUDED.target_index, timeout_seconds = EXCLUDED.timeout_seconds,
                   escalation_level = EXCLUDED.escalation_level, overflow = EXCLUDED.overflow,
                   priority = EXCLUDED.priority, feedback_id = EXCLUDED.feedback_id, routed_at = EXCLUDED.routed_at,
                   due_at = EXCLUDED.due_at, waiting = EXCLUDED.waiting, accepted_at = EXCLUDED.accepted_at,
                   accepted_by = EXCLUDED.accepted_by""",
            [case_id for case_id, _ in assigned],
            [a.lane.value for _, a in assigned],
            [a.queue.value for _, a in assigned],
            [a.filter_name for _, a in assigned],
            [a.target_index for _, a in assigned],
            [a.timeout_seconds for _, a in assigned],
            [a.escalation_level for _, a in assigned],
            [a.overflow for _, a in assigned],
            [a.priority.value for _, a in assigned],
            [a.feedback_id for _, a in assigned],
            [a.routed_at for _, a in assigned],
            [a.due_at for _, a in assigned],
            [a.waiting for _, a in assigned],
            [a.accepted_at for _, a in assigned],
            [a.accepted_by for _, a in assigned],
        )
    if changes.posts:
        await conn.executemany(
            """INSERT INTO routing.social_posts (post_key, account_key, posted_at, followers, reposts, comments, likes,
                   observed_at, observations, virality_score, alert_level)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
               ON CONFLICT (post_key) DO UPDATE SET followers = EXCLUDED.followers, reposts = EXCLUDED.reposts,
                   comments = EXCLUDED.comments, likes = EXCLUDED.likes, observed_at = EXCLUDED.observed_at,
                   observations = EXCLUDED.observations, virality_score = EXCLUDED.virality_score,
                   alert_level = EXCLUDED.alert_level""",
            [
                (
                    post.post_key,
                    post.account_key,
                    post.posted_at,
                    post.last.reach.followers,
                    post.last.reach.reposts,
                    post.last.reach.comments,
                    post.last.reach.likes,
                    post.last.observed_at,
                    post.observations,
                    post.score,
                    post.alert_level,
                )
                for post in (state.posts[key] for key in sorted(changes.posts))
            ],
        )
    if changes.averages:
        await conn.executemany(
            """INSERT INTO routing.repost_rates (scope, reposts_per_hour, observations) VALUES ($1, $2, $3)
               ON CONFLICT (scope) DO UPDATE SET reposts_per_hour = EXCLUDED.reposts_per_hour,
                   observations = EXCLUDED.observations""",
            [
                (scope, state.averages[scope].reposts_per_hour, state.averages[scope].observations)
                for scope in sorted(changes.averages)
            ],
        )
    await add_to_outbox(conn, CONSUMER, records)
    await _count(conn, state, now)


async def _count(conn: DbConnection, state: RoutingState, now: datetime) -> None:
    changes = state.changes
    counters = (changes.waiting, changes.routed, changes.accepted, changes.overflowed, changes.escalated)
    queues = sorted({queue for counter in counters for queue, delta in counter.items() if delta})
    if not queues:
        return
    await conn.executemany(
        """INSERT INTO routing.queues AS q (queue, waiting, routed_total, accepted_total, overflowed_total,
               escalated_total, updated_at)
           VALUES ($1, $2, $3, $4, $5, $6, $7)
           ON CONFLICT (queue) DO UPDATE SET waiting = q.waiting + EXCLUDED.waiting,
               routed_total = q.routed_total + EXCLUDED.routed_total,
               accepted_total = q.accepted_total + EXCLUDED.accepted_total,
               overflowed_total = q.overflowed_total + EXCLUDED.overflowed_total,
               escalated_total = q.escalated_total + EXCLUDED.escalated_total, updated_at = EXCLUDED.updated_at""",
        [(queue.value, *(counter[queue] for counter in counters), now) for queue in queues],
    )


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
