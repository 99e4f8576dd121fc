"""Routing's consumer and escalation timer: the only place routing touches topics.

One agent reads ``case.triaged`` and ``agent.actions`` (case_accepted, merge_undone, resolved,
reopened; other actions are not routing's business) in batches; each batch is one transaction:
claims, case identity and placement, personal data revealed for the queues that may see it (audited),
and the events it emits (``case.routed.<queue>``, ``reputation.alerts``) through the outbox. A timer
escalates cases nobody accepted within their target's timeout.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg
from pydantic import BaseModel

from schemas import topics
from schemas.agent import CaseAcceptedEvent, MergeUndoneEvent, ReopenedEvent, ResolvedEvent
from schemas.channels import RegulatorDetails, SocialDetails
from schemas.envelope import CONTENT_TYPE_HEADER, STRUCTURED_CONTENT_TYPE
from schemas.reputation import ViralPostEvent
from schemas.routing import CaseRoutedEvent
from schemas.sla import Severity
from schemas.triage import CaseTriagedEvent
from schemas.values import Queue
from services.routing import logic, store
from services.routing.logic import Alert, Delivery, Lane, Output, RoutingState
from services.routing.rules import RoutingRules, load_rules
from services.runtime import metrics
from services.runtime.collector import BATCH_YOUNG_COLLECTION_THRESHOLD, tune_for_batches
from services.runtime.db import transaction
from services.runtime.deadletter import InboundMessage
from services.runtime.errors import PermanentError
from services.runtime.kafka import Record
from services.runtime.settings import Settings
from services.runtime.worker import Connections, ProcessorApp

log = logging.getLogger(__name__)

PROCESSOR = "routing"

ACTION_MODELS: dict[str, type[BaseModel]] = {
    model.model_fields["type"].default: model
    for model in (CaseAcceptedEvent, MergeUndoneEvent, ResolvedEvent, ReopenedEvent)
}

Routed = CaseTriagedEvent | CaseAcceptedEvent | MergeUndoneEvent | ResolvedEvent | ReopenedEvent

DELIVERIES = metrics.counter(
    "parley_routing_deliveries_total",
    "Cases routed to a queue, by how the delivery relates to the case (new_case, merged, post_update, split, "
    "escalated; public_opinion for the PR desk's copy).",
    ("queue", "link"),
)
OVERFLOWS = metrics.counter(
    "parley_routing_overflows_total", "Cases a full queue sent to the AI lane, by the full queue.", ("queue",)
)
VIRAL_ALERTS = metrics.counter(
    "parley_routing_viral_alerts_total", "Reputational alerts raised for spreading social posts.", ("severity",)
)
BACKLOG = metrics.gauge(
    "parley_routing_queue_backlog", "Unaccepted cases per queue, as this worker last saw it.", ("queue",)
)


def observe(outputs: list[Output], state: RoutingState) -> None:
    """Count what a committed batch routed (bounded labels only: queues, link kinds, severities)."""
    deliveries: Counter[tuple[Queue, str]] = Counter()
    alerts: Counter[Severity] = Counter()
    for output in outputs:
        if isinstance(output, Alert):
            alerts[output.event.data.severity] += 1
            continue
        data = output.event.data
        deliveries[data.queue, "public_opinion" if data.lane == Lane.PUBLIC_OPINION.value else data.link.kind] += 1
    # One increment per label set, not per output: a batch of 500 touches a handful of series.
    for (queue, link), count in deliveries.items():
        DELIVERIES.labels(queue.value, link).inc(count)
    for severity, count in alerts.items():
        VIRAL_ALERTS.labels(severity.value).inc(count)
    for queue, count in state.changes.overflowed.items():
        OVERFLOWS.labels(queue.value).inc(count)
    for queue, waiting in state.backlog.items():
        BACKLOG.labels(queue.value).set(waiting)


def _event_type(value: bytes) -> str | None:
    try:
        body = json.loads(value)
    except (ValueError, UnicodeDecodeError):
        return None
    kind = body.get("type") if isinstance(body, dict) else None
    return kind if isinstance(kind, str) else None


def wanted_for(events: list[Routed]) -> store.Wanted:
    wanted = store.Wanted()
    for event in events:
        if isinstance(event, CaseTriagedEvent):
            data = event.data
            wanted.triaged_ids.add(data.feedback_id)
            if data.customer_ref:
                wanted.customer_refs.add(data.customer_ref)
            if data.case_id:
                wanted.case_ids.add(data.case_id)
            if isinstance(data.details, RegulatorDetails):
                wanted.keys.add(logic.regulator_key(data.details))
            if isinstance(data.details, SocialDetails):
                key = logic.post_key(data.details)
                wanted.keys.add(key)
                wanted.post_keys.add(key)
                wanted.rate_scopes.add(f"account:{data.details.platform.value}:{data.details.author_handle}")
                wanted.rate_scopes.add(f"topic:{data.category.value}")
        else:
            wanted.case_ids.add(event.data.case_id)
            if isinstance(event, MergeUndoneEvent):
                wanted.feedback_ids.add(event.data.feedback_id)
    return wanted


@dataclass(frozen=True)
class Outcome:
    deliveries: Counter[str]
    alerts: int
    counts: Counter[str]


class Router:
    """The processor's work, free of faust (the benchmark and ``parley route`` reuse the same pieces)."""

    def __init__(self, pool: asyncpg.Pool, settings: Settings, rules: RoutingRules) -> None:
        self.pool = pool
        self.settings = settings
        self.rules = rules
        self._triaged_topic = settings.topic(topics.CASE_TRIAGED)
        self._alerts_topic = settings.topic(topics.REPUTATION_ALERTS)
        self._routed_topics = {queue: settings.topic(topics.routed_topic(queue)) for queue in Queue}
        self._lz4: bool | None = None  # whether the server compresses with lz4: asked on the first batch

    def parse(self, message: InboundMessage) -> Routed | None:
        """The record as an event routing acts on; None for agent actions that are not routing's business."""
        if message.topic == self._triaged_topic:
            return message.parse(CaseTriagedEvent)
        event_type = _event_type(message.value)
        if event_type is None:
            raise PermanentError("schema_violation", "not a CloudEvent with a type")
        if not event_type.startswith("com.parley.agent."):
            raise PermanentError("unknown_event_type", f"type {event_type[:100]!r} is not an agent action")
        model = ACTION_MODELS.get(event_type)
        if model is None:
            return None
        parsed = message.parse(model)
        assert isinstance(parsed, CaseAcceptedEvent | MergeUndoneEvent | ResolvedEvent | ReopenedEvent)
        return parsed

    async def handle(self, messages: list[InboundMessage]) -> Counter[str]:
        tune_for_batches(young_threshold=BATCH_YOUNG_COLLECTION_THRESHOLD)
        parsed: dict[str, tuple[Routed, bytes]] = {}  # by event id, as claimed
        for message in messages:
            event = self.parse(message)
            if event is not None:
                parsed.setdefault(str(event.id), (event, message.value))
        counts: Counter[str] = Counter(ignored=len(messages) - len(parsed))
        if not parsed:
            return counts
        now = datetime.now(UTC)
        async with transaction(self.pool) as conn:
            # What every event may touch is loaded with the claim (one round trip); a repeat's rows come for nothing.
            if self._lz4 is None:
                self._lz4 = await store.lz4_available(conn)
            fresh, state = await store.claim_and_load(
                conn, list(parsed), wanted_for([event for event, _ in parsed.values()]), lz4=self._lz4
            )
            todo = [item for event_id, item in parsed.items() if event_id in fresh]
            counts["duplicates"] += len(parsed) - len(todo)
            if not todo:
                return counts
            outputs: list[Output] = []
            for event, value in todo:
                outputs += self.apply(event, state, now, counts)
                if isinstance(event, CaseTriagedEvent):
                    record = state.feedback.get(event.data.feedback_id)
                    if record is not None and record.triaged is event.data:
                        record.source = value  # stored as it came: its data object is the triage
            records = await self.records(conn, outputs)
            await store.save(conn, state, records, now)
        observe(outputs, state)
        counts.update(_kinds(outputs))
        return counts

    def apply(self, event: Routed, state: RoutingState, now: datetime, counts: Counter[str]) -> list[Output]:
        if isinstance(event, CaseTriagedEvent):
            counts["triaged"] += 1
            return logic.on_triaged(event.data, state, self.rules, now)
        case = state.cases.get(event.data.case_id)
        if case is None:
            counts["action_unknown_case"] += 1  # a case routing never placed (before routing, or a typo)
            return []
        if isinstance(event, CaseAcceptedEvent):
            counts["accepted"] += 1
            logic.on_accepted(event.data, event.time, case, state)
        elif isinstance(event, ResolvedEvent):
            counts["resolved"] += 1
            logic.on_resolved(event.data, case, state)
        elif isinstance(event, ReopenedEvent):
            counts["reopened"] += 1
            logic.on_reopened(event.data, case, state)
        else:
            result = logic.on_merge_undone(event.data, event.time, case, state, self.rules, now)
            if isinstance(result, logic.SplitRefused):
                counts["split_refused"] += 1
                log.info("merge_undone changes nothing", extra={"case_id": str(case.case_id), "why": result.why})
                return []
            counts["split"] += 1
            return result
        return []

    async def records(self, conn: Any, outputs: list[Output]) -> list[Record]:
        """Outputs as records; a queue that may see some personal data gets it revealed (one audit row each)."""
        requests: list[store.RevealRequest] = []
        revealing: list[int] = []
        for position, output in enumerate(outputs):
            if isinstance(output, Delivery):
                tokens = logic.visible_tokens(output.event)
                if tokens:
                    queue = output.queue.value
                    reader, purpose = f"routing:{queue}", f"case {output.event.data.case_id} routed to queue {queue}"
                    requests.append(store.RevealRequest(tokens, reader, purpose))
                    revealing.append(position)
        # Every delivery's tokens in one statement (the audit rows are the same as one call per delivery).
        revealed = dict(zip(revealing, await store.reveal_many(conn, requests), strict=True))
        records = []
        for position, output in enumerate(outputs):
            if isinstance(output, Alert):
                records.append(_record(self._alerts_topic, str(output.event.data.case_id), output.event))
                continue
            event = output.event
            values = revealed.get(position)
            if values is not None:
                event = logic.unmask(event, values)
            records.append(_record(self._routed_topics[output.queue], str(event.subject), event))
        return records

    async def escalate_due(self, now: datetime) -> int:
        """Escalate assignments due at ``now`` (one transaction); returns how many were looked at."""
        async with transaction(self.pool) as conn:
            state = await store.take_due(conn, now, self.settings.routing_timer_batch)
            if state is None:
                return 0
            outputs: list[Output] = []
            due = [
                (case, assignment.lane)
                for case in state.cases.values()
                for assignment in case.assignments.values()
                if assignment.due_at is not None and assignment.due_at <= now
            ]
            for case, lane in due:
                record = state.feedback.get(case.assignments[lane].feedback_id)
                if record is None:  # never: every assignment names a feedback routing stored; stop its timer
                    case.assignments[lane].due_at = None
                    state.changes.assignments.add((case.case_id, lane))
                    continue
                outputs += logic.on_timeout(case, lane, record, self.rules, state, now)
            records = await self.records(conn, outputs)
            await store.save(conn, state, records, now)
        observe(outputs, state)
        if outputs:
            log.info("escalated", extra={"escalations": len(outputs)})
        return len(due)


_CONTENT_TYPE = (CONTENT_TYPE_HEADER, STRUCTURED_CONTENT_TYPE.encode())


def _record(topic: str, key: str, event: CaseRoutedEvent | ViralPostEvent) -> Record:
    """``event_record``'s record, the event serialised straight to bytes (not to text, then encoded)."""
    return Record(topic, key.encode(), event.__pydantic_serializer__.to_json(event), [_CONTENT_TYPE])


def _kinds(outputs: list[Output]) -> Counter[str]:
    counts: Counter[str] = Counter()
    for output in outputs:
        if isinstance(output, Delivery):
            data = output.event.data
            counts[f"routed_{data.link.kind}" if data.lane == Lane.PRIMARY.value else "routed_public_opinion"] += 1
            if data.overflow:
                counts["overflowed"] += 1
        else:
            counts["alerts"] += 1
    return counts


def consumed_topics(settings: Settings) -> list[str]:
    return [settings.topic(topics.CASE_TRIAGED), settings.topic(topics.AGENT_ACTIONS)]


def create_app(settings: Settings, connections: Connections) -> ProcessorApp:
    rules = load_rules(settings.routing_rules_path)  # a mistake stops the worker here, with line and field
    app = ProcessorApp(PROCESSOR, settings, connections, relays_outbox=True)
    router: Router | None = None

    def the_router() -> Router:
        nonlocal router
        if router is None:
            router = Router(app.pool, settings, rules)
        return router

    async def handle(messages: list[InboundMessage]) -> None:
        app.counters.update(await the_router().handle(messages))

    app.consume_topics(consumed_topics(settings), handle)

    @app.timer(interval=settings.routing_timer_poll_seconds)  # type: ignore[untyped-decorator]
    async def escalate() -> None:
        try:
            while await the_router().escalate_due(datetime.now(UTC)) >= settings.routing_timer_batch:
                pass  # a full batch: more may be due
        except Exception as exc:  # the next tick retries; a timer must not stop the worker
            log.warning("escalation failed; will retry", extra={"error": type(exc).__name__})

    return app
