"""Tracker's consumer and timer: the only place the tracker touches topics.

One agent reads every ``case.routed.<queue>`` topic, ``agent.actions`` and ``plan.proposed`` in
batches; each batch is one transaction (claims, state, audit trail, outbox). A timer fires due
follow-up and close timers. Everything the tracker emits (``case.tracking``, ``plan.requested``)
leaves through the outbox.
"""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from schemas import topics
from schemas.envelope import CONTENT_TYPE_HEADER, STRUCTURED_CONTENT_TYPE
from schemas.plans import PlanProposedEvent
from schemas.routing import CaseRoutedEvent
from services.runtime.collector import tune_for_batches
from services.runtime.db import transaction
from services.runtime.deadletter import InboundMessage
from services.runtime.errors import PermanentError
from services.runtime.kafka import Record
from services.runtime.metrics import counter
from services.runtime.settings import Settings
from services.runtime.worker import Connections, ProcessorApp
from services.tracker import store
from services.tracker.logic import (
    AGENT_EVENT_MODELS,
    Batch,
    EmitTopic,
    InboundKind,
    Incoming,
    Outcome,
    TrackerConfig,
    World,
    peek_type,
)

log = logging.getLogger(__name__)

STRUCTURED_CONTENT = STRUCTURED_CONTENT_TYPE.encode()

PROCESSOR = "tracker"

TRACKER_STEPS = counter(
    "parley_tracker_steps_total",
    "What the tracker did, by step: opened, merged, split, rejected (impossible transitions), parked, unparked, "
    "plans_requested, plans_active, plans_completed, plans_broken, resolved, follow_up_requested, closed, duplicates.",
    ("step",),
)


def _count(counts: dict[str, int]) -> None:
    for step, number in counts.items():
        if number:
            TRACKER_STEPS.labels(step=step).inc(number)


def tracker_config(settings: Settings) -> TrackerConfig:
    return TrackerConfig(
        jurisdiction=settings.tracker_jurisdiction,
        follow_up_after=timedelta(seconds=settings.tracker_follow_up_after_seconds),
        close_after=timedelta(seconds=settings.tracker_close_after_seconds),
        plan_broken_after_missed=settings.tracker_plan_broken_after_missed,
    )


def consumed_topics(settings: Settings) -> list[str]:
    return [settings.topic(name) for name in (*topics.ROUTED_TOPICS, topics.AGENT_ACTIONS, topics.PLAN_PROPOSED)]


def parse(kind: InboundKind, value: bytes, message: InboundMessage | None = None) -> Incoming:
    """A consumed record as an event; anything malformed is a PermanentError (dead letter)."""
    record = message or InboundMessage(topic=kind, partition=-1, offset=-1, key=None, value=value, headers=[])
    if kind == "routed":
        return Incoming(kind, record.parse(CaseRoutedEvent), value)
    if kind == "plan_proposed":
        return Incoming(kind, record.parse(PlanProposedEvent), value)
    event_type = peek_type(value)
    model = AGENT_EVENT_MODELS.get(event_type or "")
    if model is None:
        shown = (event_type or "none")[:100]
        raise PermanentError("unknown_event_type", f"type {shown!r} is not an agent action the tracker knows")
    return Incoming(kind, record.parse(model), value)


class Tracker:
    """The processor's work, free of faust (the benchmark drives it directly)."""

    def __init__(self, pool: asyncpg.Pool, settings: Settings) -> None:
        self.pool = pool
        self.settings = settings
        self.config = tracker_config(settings)
        self._routed_topics = {settings.topic(name) for name in topics.ROUTED_TOPICS}
        self._agent_topic = settings.topic(topics.AGENT_ACTIONS)
        self._proposed_topic = settings.topic(topics.PLAN_PROPOSED)
        self._emit_topics: dict[EmitTopic, str] = {
            "tracking": settings.topic(topics.CASE_TRACKING),
            "plan_requested": settings.topic(topics.PLAN_REQUESTED),
        }

    def kind_of(self, message: InboundMessage) -> InboundKind:
        if message.topic in self._routed_topics:
            return "routed"
        if message.topic == self._agent_topic:
            return "agent_action"
        if message.topic == self._proposed_topic:
            return "plan_proposed"
        raise PermanentError("unexpected_topic", f"the tracker does not read {message.topic}")

    async def handle(self, messages: list[InboundMessage]) -> dict[str, int]:
        tune_for_batches()
        # Parse first: a malformed record fails the batch before any SQL (the worker then isolates it).
        parsed: dict[str, Incoming] = {}
        for message in messages:
            incoming = parse(self.kind_of(message), message.value, message)
            parsed.setdefault(str(incoming.event.id), incoming)  # the same event twice in one batch counts once
        async with transaction(self.pool) as conn:
            fresh = await store.claim(conn, list(parsed))
            todo = [incoming for event_id, incoming in parsed.items() if event_id in fresh]
            if not todo:
                return {"duplicates": len(messages)}
            world = await self._load(conn, todo)
            batch = Batch(world, self.config)
            for incoming in todo:
                batch.apply(incoming)
            outcome = batch.finish()
            records = self._records(outcome)
            await store.write(conn, outcome, records)
        counts = dict(outcome.counts)
        counts["duplicates"] = len(messages) - len(todo)
        return counts

    async def _load(self, conn: Any, todo: list[Incoming]) -> World:
        case_ids: set[uuid.UUID] = set()
        for incoming in todo:
            case_ids.add(incoming.case_id)
            if isinstance(incoming.event, CaseRoutedEvent) and incoming.event.data.link.split_from_case_id:
                case_ids.add(incoming.event.data.link.split_from_case_id)
        # No need to sort ids here: the statements order what they lock.
        await store.lock_case_ids(conn, case_ids)
        cases = await store.load_cases(conn, list(case_ids))
        parked: dict[uuid.UUID, list[Incoming]] = {}
        for row in await store.load_parked(conn, list(case_ids - cases.keys())):
            parked.setdefault(row.case_id, []).append(parse(row.kind, row.value))
        everything = todo + [item for items in parked.values() for item in items]
        plan_ids = {getattr(i.event.data, "plan_id", None) for i in everything if i.kind == "agent_action"}
        customer_refs = {case.customer_ref for case in cases.values() if case.customer_ref} | {
            i.event.data.customer_ref for i in everything if isinstance(i.event, CaseRoutedEvent)
        }
        return World(
            cases=cases,
            plans=await store.load_plans(conn, list(cases)),
            proposals=await store.load_proposals(conn, [p for p in plan_ids if p is not None]),
            accounts=await store.load_accounts(conn, [r for r in customer_refs if r]),
            parked=parked,
        )

    def _records(self, outcome: Outcome) -> list[Record]:
        """What the outbox gets: each event's JSON as written once by the logic (as ``event_record`` would write it)."""
        return [
            Record(self._emit_topics[e.topic], e.key.encode(), e.value, [(CONTENT_TYPE_HEADER, STRUCTURED_CONTENT)])
            for e in outcome.emitted
        ]

    async def fire_due_timers(self, now: datetime) -> int:
        """Fire timers due at ``now`` (one transaction); returns how many fired."""
        async with transaction(self.pool) as conn:
            due = await store.take_due_timers(conn, now, self.settings.tracker_timer_batch)
            if not due:
                return 0
            cases = await store.load_cases(conn, sorted({timer.case_id for timer in due}), skip_locked=True)
            batch = Batch(World(cases=cases), self.config)
            fired = [timer for timer in due if timer.case_id in cases]  # a case in a batch's hands waits
            for timer in fired:
                batch.fire(timer)
            outcome = batch.finish()
            records = self._records(outcome)
            await store.write(conn, outcome, records)
        _count(dict(outcome.counts))
        return len(fired)


def create_app(settings: Settings, connections: Connections) -> ProcessorApp:
    app = ProcessorApp(PROCESSOR, settings, connections, relays_outbox=True)
    tracker: Tracker | None = None

    def the_tracker() -> Tracker:
        nonlocal tracker
        if tracker is None:
            tracker = Tracker(app.pool, settings)
        return tracker

    async def handle(messages: list[InboundMessage]) -> None:
        counts = await the_tracker().handle(messages)
        app.counters.update(counts)
        _count(counts)

    app.consume_topics(consumed_topics(settings), handle)

    @app.timer(interval=settings.tracker_timer_poll_seconds)  # type: ignore[untyped-decorator]
    async def fire_timers() -> None:
        try:
            while await the_tracker().fire_due_timers(datetime.now(UTC)) >= settings.tracker_timer_batch:
                pass  # a full batch: more may be due
        except Exception as exc:  # the next tick retries; a timer must not stop the worker
            log.warning("firing tracker timers failed; will retry", extra={"error": type(exc).__name__})

    return app
