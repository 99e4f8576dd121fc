"""The SLA processor: the only place the SLA engine touches topics.

One agent reads ``case.tracking`` (every step of every case) and ``agent.actions`` (clock pauses and
resumptions, and the actions some clock restarts on) in batches; each batch is one transaction:
the consumed event ids, the clocks' changes, the journal and the alerts (through the outbox). A
poller fires warnings, breaches and escalations as they fall due, reading the wall clock and
handing it to the pure logic; deadlines themselves come from event times. With
``PARLEY_SLA_ALERTMANAGER_URL`` set, a second agent forwards ``sla.alerts`` to Alertmanager.
"""

from __future__ import annotations

import asyncio
import logging
import operator
import uuid
from collections import Counter
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from functools import lru_cache, reduce
from typing import Annotated, Any, Union

from pydantic import BaseModel, Discriminator, Tag, TypeAdapter, ValidationError

from schemas import topics
from schemas.agent import ClockExtendedEvent, ClockPausedEvent, ClockResumedEvent
from schemas.base import ConsumedModel
from schemas.envelope import CONTENT_TYPE_HEADER, STRUCTURED_CONTENT_TYPE, CloudEventAttributes
from schemas.tracking import CaseMergedEvent, CaseOpenedEvent, CaseRoutedStepEvent, CaseTriagedStepEvent
from services.runtime import metrics
from services.runtime.collector import BATCH_YOUNG_COLLECTION_THRESHOLD, tune_for_batches
from services.runtime.deadletter import InboundMessage
from services.runtime.errors import ConfigurationError, PermanentError
from services.runtime.kafka import Record
from services.runtime.settings import Settings
from services.runtime.worker import Connections, ProcessorApp
from services.sla import logic, store
from services.sla.calendar import CalendarDataMissingError, Unit
from services.sla.logic import Alert, CaseFacts, ClockState, SlaEvent, Target, new_sla_event
from services.sla.policies import PolicyBook, PolicyError, load_policy_book
from services.sla.webhook import AlertmanagerSender, alertmanager_alerts

log = logging.getLogger(__name__)

PROCESSOR = "sla"
FACT_TRIGGERS = frozenset({logic.OPENED, logic.TRIAGED, logic.ROUTED, logic.PAUSE, logic.RESUME, logic.EXTEND})
RETRY_BROKEN_CLOCK_AFTER = timedelta(minutes=1)
ALERT_HEADERS = ((CONTENT_TYPE_HEADER, STRUCTURED_CONTENT_TYPE.encode()),)
"""What ``event_record`` puts on a record: a CloudEvent in structured mode."""


class _Envelope(ConsumedModel, CloudEventAttributes):
    """Any CloudEvent, read only for its attributes and its data's case id."""

    data: dict[str, Any]


class _CaseRef(ConsumedModel):
    case_id: uuid.UUID
    agent_id: str | None = None


def trigger_of(event_type: str) -> str:
    """'com.parley.tracking.first_contact.v1' -> 'tracking.first_contact'."""
    name = event_type.removeprefix("com.parley.")
    head, _, version = name.rpartition(".")
    return head if version.startswith("v") and version[1:].isdigit() else name


_MODELS: dict[str, type[BaseModel]] = {
    logic.OPENED: CaseOpenedEvent,
    logic.TRIAGED: CaseTriagedStepEvent,
    logic.ROUTED: CaseRoutedStepEvent,
    logic.MERGED: CaseMergedEvent,
    logic.PAUSE: ClockPausedEvent,
    logic.RESUME: ClockResumedEvent,
    logic.EXTEND: ClockExtendedEvent,
}
"""The triggers the engine reads more of than the case id, and the model each is read as."""
_ENVELOPE_TAG = "envelope"


class EventReader:
    """Reads a consumed record in one pass: straight into its event model when the engine wants its type and reads
    more of it than the case id, else into the bare envelope. A record that does not validate is read again the
    step-by-step way (envelope first, then the model), so that its schema violation names the same fields."""

    def __init__(self, wanted: frozenset[str]) -> None:
        self.wanted = wanted
        self._tags: dict[str, str] = {}
        choices = [Annotated[model, Tag(trigger)] for trigger, model in _MODELS.items()]
        one_of: Any = Annotated[Union[(*choices, Annotated[_Envelope, Tag(_ENVELOPE_TAG)])], Discriminator(self._tag)]
        self._adapter: TypeAdapter[Any] = TypeAdapter(one_of)
        # The common case first, without calling back into Python: the exact (v1) type of a model the engine wants,
        # told apart by the type field; anything else (another version, another type, a broken record) falls back.
        wanted_models = [model for trigger, model in _MODELS.items() if trigger in wanted]
        self._triggers = {
            model.model_fields["type"].default: trigger_of(model.model_fields["type"].default)
            for model in wanted_models
        }
        exact: Any = (
            Annotated[reduce(operator.or_, wanted_models), Discriminator("type")]
            if len(wanted_models) > 1
            else wanted_models[0]
            if wanted_models
            else None
        )
        self._exact: TypeAdapter[Any] | None = TypeAdapter(exact) if exact is not None else None

    def _tag(self, value: Any) -> str:
        event_type = value.get("type") if isinstance(value, dict) else None
        if not isinstance(event_type, str):
            return _ENVELOPE_TAG
        tag = self._tags.get(event_type)
        if tag is None:
            trigger = trigger_of(event_type)
            tag = trigger if trigger in self.wanted and trigger in _MODELS else _ENVELOPE_TAG
            if len(self._tags) < 1000:  # event types are few; a flood of made-up ones is not remembered
                self._tags[event_type] = tag
        return tag

    def read(self, message: InboundMessage) -> SlaEvent | None:
        """The consumed record as the engine sees it; None when no clock cares about its type."""
        if self._exact is not None:
            try:
                parsed = self._exact.validate_json(message.value)
            except ValidationError:
                pass
            else:
                return _event_of(parsed, self._triggers[parsed.type])
        try:
            parsed = self._adapter.validate_json(message.value)
        except ValidationError:
            return _read_step_by_step(message, self.wanted)
        if isinstance(parsed, _Envelope):
            trigger = trigger_of(parsed.type)
            return None if trigger not in self.wanted else _reference_event(parsed, trigger)
        return _event_of(parsed, trigger_of(parsed.type))


@lru_cache(maxsize=16)
def reader_for(wanted: frozenset[str]) -> EventReader:
    return EventReader(wanted)


def to_sla_event(message: InboundMessage, wanted: frozenset[str]) -> SlaEvent | None:
    """The consumed record as the engine sees it; None when no clock cares about its type."""
    return reader_for(wanted).read(message)


def _read_step_by_step(message: InboundMessage, wanted: frozenset[str]) -> SlaEvent | None:
    envelope: _Envelope = message.parse(_Envelope)
    trigger = trigger_of(envelope.type)
    if trigger not in wanted:
        return None
    if trigger not in _MODELS:
        return _reference_event(envelope, trigger)
    return _event_of(message.parse(_MODELS[trigger]), trigger)


def _reference_event(envelope: _Envelope, trigger: str) -> SlaEvent:
    """A wanted event the engine reads only the case id (and an agent's id) of."""
    try:
        reference = _CaseRef.model_validate(envelope.data)
    except ValueError as exc:
        raise PermanentError("schema_violation", f"{envelope.type}: data.case_id missing or not a UUID") from exc
    return new_sla_event(envelope.id, trigger, reference.case_id, envelope.time, agent_id=reference.agent_id)


def _event_of(parsed: Any, trigger: str) -> SlaEvent:
    """The engine's view of an event read as its model."""
    if trigger == logic.OPENED:
        opened: CaseOpenedEvent = parsed
        data = opened.data
        return new_sla_event(
            opened.id,
            trigger,
            data.case_id,
            opened.time,
            opened_at=data.opened_at,
            channel=data.channel.value,
            jurisdiction=data.jurisdiction.value if data.jurisdiction else None,
            regulator_deadline=data.regulator_deadline,
        )
    if trigger == logic.TRIAGED:
        triaged: CaseTriagedStepEvent = parsed
        return new_sla_event(
            triaged.id,
            trigger,
            triaged.data.case_id,
            triaged.time,
            category=triaged.data.category.value,
            priority=triaged.data.priority.value,
        )
    if trigger == logic.ROUTED:
        routed: CaseRoutedStepEvent = parsed
        return new_sla_event(
            routed.id,
            trigger,
            routed.data.case_id,
            routed.time,
            priority=routed.data.priority.value,
            queue=routed.data.queue.value,
            lane=routed.data.lane,
        )
    if trigger == logic.MERGED:
        merged: CaseMergedEvent = parsed
        return new_sla_event(merged.id, trigger, merged.data.case_id, merged.time, new_facts=merged.data.new_facts)
    if trigger in (logic.PAUSE, logic.RESUME):
        action: ClockPausedEvent | ClockResumedEvent = parsed
        return new_sla_event(
            action.id,
            trigger,
            action.data.case_id,
            action.time,
            clock=action.data.clock,
            reason=action.data.reason,
            agent_id=action.data.agent_id,
        )
    extension: ClockExtendedEvent = parsed
    wanted_target = extension.data.new_target
    return new_sla_event(
        extension.id,
        trigger,
        extension.data.case_id,
        extension.time,
        clock=extension.data.clock,
        reason=extension.data.reason,
        agent_id=extension.data.agent_id,
        approved_by=extension.data.approved_by,
        new_target=Target(wanted_target.amount, Unit(wanted_target.unit.value)) if wanted_target else None,
    )


@dataclass
class BatchResult:
    alerts: list[Alert] = field(default_factory=list)
    events: int = 0


class SlaApp(ProcessorApp):
    """A processor that checks, before it consumes anything, that no policy version changed under its clocks."""

    def __init__(self, settings: Settings, connections: Connections, book: PolicyBook) -> None:
        super().__init__(PROCESSOR, settings, connections, relays_outbox=True)
        self.book = book

    async def on_start(self) -> None:
        await super().on_start()
        async with store.unit_of_work(self.pool) as work:
            for version in await store.record_policy_versions(work.conn, self.book.versions):
                self.book.add(version)  # left the file, but clocks may still run under it


class SlaEngine:
    """Consumed batches and due clocks, each in one transaction."""

    def __init__(self, app: ProcessorApp, book: PolicyBook, settings: Settings) -> None:
        self.app = app
        self.book = book
        self.settings = settings
        self.alerts_topic = settings.topic(topics.SLA_ALERTS)
        self.wanted = frozenset(book.triggers() | FACT_TRIGGERS)
        self.reader = reader_for(self.wanted)

    def records(self, alerts: list[Alert]) -> list[Record]:
        """``event_record`` of each alert, keyed by its case, serialised straight to bytes (not text, then bytes)."""
        topic, headers = self.alerts_topic, ALERT_HEADERS
        return [
            Record(
                topic, str(alert.data.case_id).encode(), type(alert).__pydantic_serializer__.to_json(alert), [*headers]
            )
            for alert in alerts
        ]

    async def handle(self, messages: list[InboundMessage]) -> BatchResult:
        tune_for_batches(young_threshold=BATCH_YOUNG_COLLECTION_THRESHOLD)
        events = [e for e in map(self.reader.read, messages) if e is not None]
        result = BatchResult()
        if not events:
            return result
        async with store.unit_of_work(self.app.pool) as work:
            seen = await work.claim_and_lock([e.event_id for e in events], [e.case_id for e in events])
            if seen:
                events = [e for e in events if e.event_id not in seen]
            if not events:
                return result
            facts, found = await work.load({e.case_id for e in events})
            clocks: dict[uuid.UUID, dict[Any, ClockState]] = {
                case_id: {c.key: c for c in runs} for case_id, runs in found.items()
            }
            changed_facts: dict[uuid.UUID, CaseFacts] = {}
            changed_clocks: dict[Any, ClockState] = {}
            journal: list[logic.JournalEntry] = []
            alerts = result.alerts
            book = self.book
            for event in events:
                case_id = event.case_id
                case_clocks = clocks.get(case_id)
                if case_clocks is None:
                    case_clocks = clocks[case_id] = {}
                known = facts.get(case_id)
                try:
                    outcome = logic.on_event(known, list(case_clocks.values()), event, book)
                except CalendarDataMissingError as exc:
                    raise PermanentError("calendar_data_missing", str(exc)) from exc
                if outcome.facts is not known and outcome.facts != known:
                    facts[case_id] = changed_facts[case_id] = outcome.facts
                if outcome.clocks:
                    case_clocks.update(outcome.clocks)
                    changed_clocks.update(outcome.clocks)
                journal.extend(outcome.journal)
                alerts.extend(outcome.alerts)
            await work.save(changed_facts.values(), changed_clocks.values(), journal, self.records(result.alerts))
        result.events = len(events)
        return result

    async def fire_due(self, now: datetime) -> int:
        """Fire what is due on up to a batch of clocks; returns how many clocks were due."""
        alerts: list[Alert] = []
        async with store.unit_of_work(self.app.pool) as work:
            due = await work.due_clocks(now, self.settings.sla_poll_batch)
            updated: list[ClockState] = []
            for clock in due:
                try:
                    fired, found = logic.fire_due(self.book, clock, now)
                except (CalendarDataMissingError, KeyError) as exc:
                    # A clock whose policy version or calendar data is gone: say so loudly, look again later.
                    log.error(
                        "SLA clock cannot be evaluated",
                        extra={
                            "case_id": str(clock.case_id),
                            "clock": clock.clock.value,
                            "cycle": clock.cycle,
                            "error": type(exc).__name__,
                        },
                    )
                    fired, found = replace(clock, next_due_at=now + RETRY_BROKEN_CLOCK_AFTER), []
                updated.append(fired)
                alerts.extend(found)
            await work.mark_fired(updated)
            await work.queue_alerts(self.records(alerts))
        count_alerts(alerts)
        if alerts:
            log.info("SLA alerts fired", extra={"clocks": len(due), "alerts": len(alerts)})
        return len(due)

    async def seconds_until_next_due(self, now: datetime) -> float | None:
        async with store.unit_of_work(self.app.pool) as work:
            next_due = await work.next_due_at()
        return None if next_due is None else (next_due - now).total_seconds()

    async def poll_forever(self) -> None:
        """Fire due alerts as they fall due: sleep until the next one, but never longer than the poll interval
        (a clock armed meanwhile by another worker is seen within it)."""
        interval = self.settings.sla_poll_interval_seconds
        backoff = interval
        while True:
            try:
                now = datetime.now(UTC)
                if await self.fire_due(now) >= self.settings.sla_poll_batch:
                    continue  # a full batch: more may be due
                wait = await self.seconds_until_next_due(datetime.now(UTC))
                delay = interval if wait is None else min(max(wait, 0.005), interval)
                backoff = interval
            except Exception as exc:  # the next round retries; the poller must not stop the worker
                log.warning("SLA poll failed; will retry", extra={"error": type(exc).__name__})
                delay = backoff
                backoff = min(backoff * 2, self.settings.retry_max_backoff_seconds)
            await asyncio.sleep(delay)


def count_alerts(alerts: list[Alert]) -> None:
    """The SLA metrics of the alerts: counted by metric and labels first, each counter then moved once."""
    counts: Counter[tuple[Any, tuple[str, ...]]] = Counter()
    for alert in alerts:
        data = alert.data
        clock = data.clock.value
        kind = _trigger_of_type(alert.type)
        if kind == "sla.clock_started":
            counts[metrics.SLA_CLOCKS_ARMED, (clock,)] += 1
        elif kind == "sla.clock_met" and not data.overdue_seconds:
            counts[metrics.SLA_CLOCKS_MET, (clock,)] += 1
        elif kind == "sla.warning":
            counts[metrics.SLA_WARNINGS, (clock, data.priority.value)] += 1
        elif kind == "sla.breached":
            counts[metrics.SLA_BREACHES, (clock, data.priority.value)] += 1
        elif kind == "sla.escalated":
            counts[metrics.SLA_ESCALATIONS, (clock,)] += 1
    for (metric, labels), count in counts.items():
        metric.labels(*labels).inc(count)


@lru_cache(maxsize=256)
def _trigger_of_type(event_type: str) -> str:
    return trigger_of(event_type)


def load_book(settings: Settings) -> PolicyBook:
    try:
        return load_policy_book(settings.sla_policies_path)
    except PolicyError as exc:
        raise ConfigurationError(str(exc)) from None


def consumed_topics(settings: Settings) -> list[str]:
    return [settings.topic(topics.CASE_TRACKING), settings.topic(topics.AGENT_ACTIONS)]


def create_app(settings: Settings, connections: Connections) -> ProcessorApp:
    book = load_book(settings)  # a mistake in the policies stops the worker here, naming the policy and field
    app = SlaApp(settings, connections, book)
    engine = SlaEngine(app, book, settings)

    async def handle(messages: list[InboundMessage]) -> None:
        result = await engine.handle(messages)
        count_alerts(result.alerts)
        app.counters["sla_events"] += result.events
        app.counters["sla_alerts"] += len(result.alerts)

    app.consume_topics(consumed_topics(settings), handle)

    @app.task  # type: ignore[untyped-decorator]
    async def poller() -> None:
        await engine.poll_forever()

    if settings.sla_alertmanager_url:
        sender = AlertmanagerSender(settings.sla_alertmanager_url)

        async def forward(messages: list[InboundMessage]) -> None:
            alerts: list[dict[str, Any]] = []
            for message in messages:
                envelope: _Envelope = message.parse(_Envelope)
                alerts.extend(alertmanager_alerts(envelope.type, envelope.time, envelope.data))
            await sender.send(alerts)
            app.counters["alertmanager_alerts"] += len(alerts)

        app.consume_topics([settings.topic(topics.SLA_ALERTS)], forward)

    return app
