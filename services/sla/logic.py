"""Pure SLA rules: what a consumed event does to a case's clocks, and which alerts fall due when.

Nothing here reads the clock. Consumed events bring their own time; the poller passes ``now``.
Every deadline and every alert time comes from event times and the policy's calendar, so the
same events give the same clocks and the same alerts (same ids, same dedup keys) in any replay:

- before an event changes a clock, the warnings, breach and escalations already due at the
  event's time are fired first (a case resolved late shows its breach, then its met, whether the
  poller saw the breach in time or not);
- an alert's time is the instant it describes (the warning threshold, the deadline), not when
  a worker noticed it; its id is a UUID5 of its dedup key.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable, Sequence
from dataclasses import MISSING, dataclass, field, fields, replace
from datetime import datetime, timedelta
from enum import StrEnum
from operator import itemgetter
from typing import Any, TypeVar

from schemas.envelope import CloudEvent
from schemas.sla import (
    ClockCancelled,
    ClockCancelledEvent,
    ClockExtended,
    ClockExtendedEvent,
    ClockExtensionRefused,
    ClockExtensionRefusedEvent,
    ClockMet,
    ClockMetEvent,
    ClockPaused,
    ClockPausedEvent,
    ClockPauseRefused,
    ClockPauseRefusedEvent,
    ClockResumed,
    ClockResumedEvent,
    ClockStarted,
    ClockStartedEvent,
    Severity,
    SlaBreached,
    SlaBreachedEvent,
    SlaEscalated,
    SlaEscalatedEvent,
    SlaWarning,
    SlaWarningEvent,
)
from schemas.values import ClockName, Priority, Queue
from services.sla.calendar import BusinessCalendar, CalendarDataMissingError, Counting, Pause, Span, Unit
from services.sla.policies import NEW_FACTS_TRIGGER, CaseProfile, ClockConfig, PolicyBook, PolicyVersion

SOURCE = "/parley/sla"
ALERT_ID_NAMESPACE = uuid.UUID("5b0e8c1d-2f4a-4e7b-9c3d-8a1f6e2b7d40")

OPENED = "tracking.opened"
TRIAGED = "tracking.triaged"
ROUTED = "tracking.routed"
MERGED = NEW_FACTS_TRIGGER
PAUSE = "agent.clock_paused"
RESUME = "agent.clock_resumed"
EXTEND = "agent.clock_extended"
CLOCK_REQUESTS = (PAUSE, RESUME, EXTEND)
PR_LANE = "public_opinion"
"""tracking.routed for a copy of the case on the PR desk: the case keeps its own queue."""
MAX_PARKED = 20
"""Requests kept per case for clocks it does not have yet; the oldest go first (journaled)."""

Alert = CloudEvent[Any]
StateT = TypeVar("StateT", "ClockState", "CaseFacts")


def evolve(state: StateT, **changes: Any) -> StateT:
    """``dataclasses.replace`` for the engine's frozen states, ten times cheaper: a copy of the instance's fields
    with the changes, without running ``__init__`` again (these dataclasses have no ``__post_init__``)."""
    if not changes.keys() <= _FIELD_NAMES[type(state)]:
        raise TypeError(f"{type(state).__name__} has no field {sorted(changes.keys() - _FIELD_NAMES[type(state)])}")
    copied = object.__new__(type(state))
    copied.__dict__.update(state.__dict__)
    copied.__dict__.update(changes)
    return copied


class ClockStatus(StrEnum):
    RUNNING = "running"
    PAUSED = "paused"
    MET = "met"
    CANCELLED = "cancelled"

    @property
    def active(self) -> bool:
        return self in (ClockStatus.RUNNING, ClockStatus.PAUSED)


_ACTIVE = frozenset({ClockStatus.RUNNING, ClockStatus.PAUSED})
"""``ClockStatus.active``, as a set: the engine asks it of every clock of every event."""


class MarkKind(StrEnum):
    WARNING = "warning"
    BREACHED = "breached"
    ESCALATED = "escalated"


@dataclass(frozen=True)
class CaseFacts:
    """What the SLA engine knows of a case, from case.tracking."""

    case_id: uuid.UUID
    opened_at: datetime | None = None
    channel: str | None = None
    jurisdiction: str | None = None
    category: str | None = None
    priority: str | None = None
    queue: str | None = None
    regulator_deadline: datetime | None = None
    parked: tuple[SlaEvent, ...] = ()
    """Agents' requests (pause, resume, extend) for a clock the case does not have yet, oldest first."""

    @property
    def selectable(self) -> bool:
        """Policies select on priority (and category), which triage gives: clocks wait for it."""
        return self.priority is not None

    def profile(self) -> CaseProfile:
        return CaseProfile(self.jurisdiction, self.channel, self.category, self.priority, self.queue)


@dataclass(frozen=True)
class PauseRecord:
    start: datetime
    end: datetime | None
    reason: str
    condition: str

    def as_pause(self) -> Pause:
        return Pause(self.start, self.end)


@dataclass(frozen=True)
class ClockState:
    """One run (cycle) of one clock of one case."""

    case_id: uuid.UUID
    clock: ClockName
    cycle: int
    policy_id: str
    policy_version: int
    calendar: str
    status: ClockStatus
    started_at: datetime
    deadline: datetime
    """The deadline as last computed (while paused: as it stood when the pause began)."""
    priority: str
    queue: str | None = None
    extensions: int = 0
    regulator_deadline: datetime | None = None
    pauses: tuple[PauseRecord, ...] = ()
    fired: frozenset[str] = frozenset()
    next_due_at: datetime | None = None
    stopped_at: datetime | None = None

    @property
    def key(self) -> tuple[uuid.UUID, ClockName, int]:
        return self.case_id, self.clock, self.cycle

    def dedup_key(self, suffix: str) -> str:
        return f"{self.case_id}/{self.clock.value}/{self.cycle}/{suffix}"

    @property
    def open_pause(self) -> PauseRecord | None:
        return self.pauses[-1] if self.pauses and self.pauses[-1].end is None else None


@dataclass(frozen=True)
class Target:
    """An allowed time as an agent asks for it (an extension's ``new_target``), e.g. 30 days."""

    amount: int
    unit: Unit

    def __str__(self) -> str:
        return f"{self.amount} {self.unit.value}"


@dataclass(frozen=True)
class SlaEvent:
    """A consumed event as the SLA engine sees it (built by the app from case.tracking or agent.actions)."""

    event_id: uuid.UUID
    trigger: str
    """``tracking.<step>`` or ``agent.<action>`` (the CloudEvents type without prefix and version)."""
    case_id: uuid.UUID
    at: datetime
    opened_at: datetime | None = None
    channel: str | None = None
    jurisdiction: str | None = None
    category: str | None = None
    priority: str | None = None
    queue: str | None = None
    regulator_deadline: datetime | None = None
    clock: ClockName | None = None
    reason: str | None = None
    agent_id: str | None = None
    approved_by: str | None = None
    new_target: Target | None = None
    """An extension's wanted step (None: the next one)."""
    lane: str | None = None
    """tracking.routed: primary (None means primary) or public_opinion (a copy for the PR desk)."""
    new_facts: bool = False
    """tracking.merged: the feedback that joined the case brought new facts."""


@dataclass(frozen=True)
class JournalEntry:
    """A clock change or a refused request, for the SLA's own audit table."""

    case_id: uuid.UUID
    clock: ClockName
    cycle: int | None
    action: str
    at: datetime
    event_id: uuid.UUID | None
    reason: str | None = None


@dataclass
class Outcome:
    facts: CaseFacts
    clocks: dict[tuple[uuid.UUID, ClockName, int], ClockState] = field(default_factory=dict)
    """Clocks created or changed, by key."""
    alerts: list[Alert] = field(default_factory=list)
    journal: list[JournalEntry] = field(default_factory=list)


_FIELD_NAMES: dict[type, frozenset[str]] = {
    kind: frozenset(f.name for f in fields(kind)) for kind in (ClockState, CaseFacts, SlaEvent)
}
_EVENT_DEFAULTS = {f.name: f.default for f in fields(SlaEvent) if f.default is not MISSING}


def new_sla_event(event_id: uuid.UUID, trigger: str, case_id: uuid.UUID, at: datetime, **optional: Any) -> SlaEvent:
    """``SlaEvent(event_id, trigger, case_id, at, **optional)`` without the frozen ``__init__``'s field-by-field
    setting (one per consumed record: it adds up); the optional fields are checked by name."""
    if not optional.keys() <= _EVENT_DEFAULTS.keys():
        raise TypeError(f"SlaEvent has no field {sorted(optional.keys() - _EVENT_DEFAULTS.keys())}")
    event = object.__new__(SlaEvent)
    values = event.__dict__
    values.update(_EVENT_DEFAULTS)
    values.update(optional, event_id=event_id, trigger=trigger, case_id=case_id, at=at)
    return event


def _new_clock(
    case_id: uuid.UUID,
    clock: ClockName,
    cycle: int,
    policy_id: str,
    policy_version: int,
    calendar: str,
    started_at: datetime,
    priority: str,
    queue: str | None,
    regulator_deadline: datetime | None,
) -> ClockState:
    """A clock run just started (running, deadline at its start until settled), as ``ClockState(...)`` makes it,
    without the frozen ``__init__``'s field-by-field setting."""
    state = object.__new__(ClockState)
    state.__dict__.update(
        case_id=case_id,
        clock=clock,
        cycle=cycle,
        policy_id=policy_id,
        policy_version=policy_version,
        calendar=calendar,
        status=ClockStatus.RUNNING,
        started_at=started_at,
        deadline=started_at,
        priority=priority,
        queue=queue,
        extensions=0,
        regulator_deadline=regulator_deadline,
        pauses=(),
        fired=frozenset(),
        next_due_at=None,
        stopped_at=None,
    )
    return state


@dataclass(frozen=True)
class Mark:
    """A moment on a clock's timeline when an alert is due."""

    key: str
    at: datetime
    kind: MarkKind
    level: int


# ---- the timeline of one clock ----


def _version(book: PolicyBook, clock: ClockState) -> PolicyVersion:
    return book.version(clock.policy_id, clock.policy_version)


def clock_config(book: PolicyBook, clock: ClockState) -> ClockConfig:
    config = book.clock_config(clock.policy_id, clock.policy_version, clock.clock)
    if config is None:
        raise KeyError(f"policy {clock.policy_id} v{clock.policy_version} has no {clock.clock.value} clock")
    return config


def calendar_of(book: PolicyBook, clock: ClockState) -> BusinessCalendar:
    return book.calendar(clock.calendar, _version(book, clock))


def span_of(config: ClockConfig, extensions: int) -> Span:
    spans = config.spans()
    return spans[min(extensions, len(spans) - 1)]


def _span(book: PolicyBook, clock: ClockState) -> Span:
    """``span_of`` the clock's config, from the book's spans built once."""
    spans = book.spans(clock.policy_id, clock.policy_version, clock.clock)
    return spans[min(clock.extensions, len(spans) - 1)]


def _pauses(clock: ClockState) -> list[Pause]:
    return [p.as_pause() for p in clock.pauses] if clock.pauses else []


def on_regulator_deadline(config: ClockConfig, clock: ClockState) -> bool:
    return config.use_regulator_deadline and clock.regulator_deadline is not None


_WARNING, _BREACHED, _ESCALATED = 0, 1, 2
"""How marks at the same instant are ordered: warnings, then the breach, then escalations."""
_MARK_KINDS = (MarkKind.WARNING, MarkKind.BREACHED, MarkKind.ESCALATED)
_in_time_order = itemgetter(0, 1, 2)

MarkPlan = tuple[tuple[int, int, str, float | None, timedelta | None, timedelta | None], ...]
"""A clock's marks as its policy defines them, in the policy's order: (kind, level, key, percent, before, after)."""


@dataclass(frozen=True)
class _Rules:
    """What a clock's timeline is computed from, for one policy version, clock, calendar and extension."""

    config: ClockConfig
    calendar: BusinessCalendar
    span: Span
    plan: MarkPlan


def _rules(book: PolicyBook, clock: ClockState) -> _Rules:
    """The clock's rules, looked up once (policy versions never change) and kept with the book."""
    key = ("rules", clock.policy_id, clock.policy_version, clock.clock, clock.calendar, clock.extensions)
    found: _Rules | None = book.derived.get(key)
    if found is None:
        config = clock_config(book, clock)
        plan: list[tuple[int, int, str, float | None, timedelta | None, timedelta | None]] = [
            (_WARNING, level, f"warning/{level}/x{clock.extensions}", w.percent, w.before, None)
            for level, w in enumerate(config.warnings, start=1)
        ]
        plan.append((_BREACHED, 0, "breached", None, None, None))
        plan.extend(
            (_ESCALATED, e.level, f"escalated/{e.level}", e.percent, e.before, e.after) for e in config.escalations
        )
        found = book.derived[key] = _Rules(config, calendar_of(book, clock), _span(book, clock), tuple(plan))
    return found


def compute_deadline(book: PolicyBook, clock: ClockState) -> datetime | None:
    """The clock's deadline from its start, span, pauses and extensions; None while an open pause matters."""
    return _deadline(_rules(book, clock), clock)


def _deadline(rules: _Rules, clock: ClockState) -> datetime | None:
    if rules.config.use_regulator_deadline and clock.regulator_deadline is not None:
        return clock.regulator_deadline
    return rules.calendar.deadline(clock.started_at, rules.span, _pauses(clock))


def marks(book: PolicyBook, clock: ClockState) -> list[Mark]:
    """Warnings, breach and escalations of the clock as it stands, in time order."""
    points = _mark_points(_rules(book, clock), clock, clock.deadline)
    points.sort(key=_in_time_order)
    return [Mark(key, at, _MARK_KINDS[kind], level) for at, kind, level, key in points]


def _mark_points(rules: _Rules, clock: ClockState, deadline: datetime) -> list[tuple[datetime, int, int, str]]:
    """The clock's marks with this deadline, in the policy's order, as (at, kind, level, key)."""
    calendar = rules.calendar
    counting = rules.span.counting
    pauses = _pauses(clock)
    started_at = clock.started_at
    allowed = calendar.active_time(counting, started_at, deadline, pauses)
    # Elapsed time without pauses: a share of the allowed time falls that long after the start (calendar.advance).
    elapsed = counting is Counting.CALENDAR and not pauses
    found = []
    for kind, level, key, percent, before, after in rules.plan:
        if kind == _BREACHED:
            at = deadline
        elif after is not None:
            at = deadline + after
        elif before is not None:
            at = max(deadline - before, started_at)
        else:
            assert percent is not None
            share = allowed * (percent / 100)
            at = started_at + share if elapsed else calendar.advance(counting, started_at, share, pauses)
        found.append((at, kind, level, key))
    return found


def _next_due(rules: _Rules, clock: ClockState, deadline: datetime) -> datetime | None:
    if clock.status is not ClockStatus.RUNNING:
        return None
    fired = clock.fired
    earliest = None
    for at, _, _, key in _mark_points(rules, clock, deadline):
        if key not in fired and (earliest is None or at < earliest):
            earliest = at  # the first of equal instants, as min() keeps
    return earliest


def _settle(book: PolicyBook, clock: ClockState) -> ClockState:
    """Recompute the deadline (unless an open pause leaves it unknown) and the next due mark."""
    rules = _rules(book, clock)
    deadline = _deadline(rules, clock) or clock.deadline
    return evolve(clock, deadline=deadline, next_due_at=_next_due(rules, clock, deadline))


def fire_due(book: PolicyBook, clock: ClockState, now: datetime) -> tuple[ClockState, list[Alert]]:
    """Alerts due on a running clock at ``now`` that have not fired yet, in time order; the clock updated."""
    if clock.status is not ClockStatus.RUNNING:
        return evolve(clock, next_due_at=None), []
    alerts: list[Alert] = []
    fired = set(clock.fired)
    timeline = marks(book, clock)
    for mark in timeline:
        if mark.at > now or mark.key in fired:
            continue
        fired.add(mark.key)
        alerts.append(_mark_alert(book, clock, mark))
    next_due = min((m.at for m in timeline if m.key not in fired), default=None)
    return evolve(clock, fired=frozenset(fired), next_due_at=next_due), alerts


# ---- alerts ----


def _seconds(delta: timedelta) -> int:
    return max(int(delta.total_seconds()), 0)


def _alert_id(dedup_key: str) -> uuid.UUID:
    return uuid.uuid5(ALERT_ID_NAMESPACE, dedup_key)


_ALERT_ID_PREFIX = ALERT_ID_NAMESPACE.bytes


def _alert_id_text(dedup_key: str) -> str:
    """``str(_alert_id(dedup_key))`` without building the UUID (the event model reads the text into one)."""
    digest = bytearray(hashlib.sha1(_ALERT_ID_PREFIX + dedup_key.encode(), usedforsecurity=False).digest()[:16])
    digest[6] = (digest[6] & 0x0F) | 0x50  # version 5
    digest[8] = (digest[8] & 0x3F) | 0x80  # RFC 4122 variant
    text = digest.hex()
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"


def _common(clock: ClockState, suffix: str, at: datetime) -> dict[str, Any]:
    return {
        "case_id": clock.case_id,
        "clock": clock.clock,
        "policy_id": clock.policy_id,
        "policy_version": clock.policy_version,
        "cycle": clock.cycle,
        "deadline": clock.deadline,
        "dedup_key": clock.dedup_key(suffix),
        "remaining_seconds": _seconds(clock.deadline - at),
        "overdue_seconds": _seconds(at - clock.deadline),
    }


def _envelope(event_class: Callable[..., Alert], clock: ClockState, at: datetime, data: Any) -> Alert:
    return event_class(id=_alert_id_text(data.dedup_key), source=SOURCE, time=at, subject=str(clock.case_id), data=data)


def _mark_alert(book: PolicyBook, clock: ClockState, mark: Mark) -> Alert:
    common = _common(clock, mark.key, mark.at)
    priority = Priority(clock.priority)
    queue = Queue(clock.queue) if clock.queue else None
    if mark.kind is MarkKind.WARNING:
        config = clock_config(book, clock)
        fraction = calendar_of(book, clock).elapsed_fraction(
            span_of(config, clock.extensions).counting,
            clock.started_at,
            clock.deadline,
            mark.at,
            [p.as_pause() for p in clock.pauses],
        )
        data: Any = SlaWarning(
            **common, elapsed_fraction=round(fraction, 4), level=mark.level, priority=priority, queue=queue
        )
        return _envelope(SlaWarningEvent, clock, mark.at, data)
    if mark.kind is MarkKind.BREACHED:
        return _envelope(SlaBreachedEvent, clock, mark.at, SlaBreached(**common, priority=priority, queue=queue))
    escalation = next(e for e in clock_config(book, clock).escalations if e.level == mark.level)
    if mark.at >= clock.deadline:
        why = f"{clock.clock.value} deadline passed {_human(mark.at - clock.deadline)} ago"
    else:
        why = f"{clock.clock.value} deadline in {_human(clock.deadline - mark.at)}"
    data = SlaEscalated(
        **common,
        level=mark.level,
        escalated_to=escalation.to,
        recipients=list(escalation.recipients) or None,
        reason=f"{why}; escalated to {escalation.to} (policy {clock.policy_id} v{clock.policy_version})",
    )
    return _envelope(SlaEscalatedEvent, clock, mark.at, data)


def _human(delta: timedelta) -> str:
    seconds = _seconds(delta)
    if seconds < 60:
        return f"{seconds}s"
    minutes, _ = divmod(seconds, 60)
    hours, minutes = divmod(minutes, 60)
    days, hours = divmod(hours, 24)
    parts = [f"{days}d" if days else "", f"{hours}h" if hours else "", f"{minutes}m" if minutes else ""]
    return "".join(parts)


def started_alert(book: PolicyBook, clock: ClockState, at: datetime) -> Alert:
    # _common and _envelope written out: one of these for every clock, the most frequent alert by far.
    subject = str(clock.case_id)
    dedup_key = f"{subject}/{clock.clock}/{clock.cycle}/started"  # a StrEnum formats as its value
    deadline = clock.deadline
    data = ClockStarted(
        case_id=clock.case_id,
        clock=clock.clock,
        policy_id=clock.policy_id,
        policy_version=clock.policy_version,
        cycle=clock.cycle,
        deadline=deadline,
        dedup_key=dedup_key,
        remaining_seconds=_seconds(deadline - at),
        overdue_seconds=_seconds(at - deadline),
        started_at=clock.started_at,
        calendar=clock.calendar,
    )
    return ClockStartedEvent(id=_alert_id_text(dedup_key), source=SOURCE, time=at, subject=subject, data=data)


# ---- consumed events ----


def _facts_after(facts: CaseFacts, event: SlaEvent) -> CaseFacts:
    changes: dict[str, Any] = {}
    if event.trigger == OPENED:
        changes.update(
            opened_at=event.opened_at or event.at,
            channel=event.channel,
            jurisdiction=event.jurisdiction,
            regulator_deadline=event.regulator_deadline,
        )
    # A PR-desk copy (lane public_opinion) is not where the case is worked: its queue is not the case's.
    names = ("category", "priority") if event.lane == PR_LANE else ("category", "priority", "queue")
    for name in names:
        value = getattr(event, name)
        if value is not None and event.trigger in (TRIAGED, ROUTED):
            changes[name] = value
    return evolve(facts, **changes) if changes else facts


def on_event(facts: CaseFacts | None, clocks: Sequence[ClockState], event: SlaEvent, book: PolicyBook) -> Outcome:
    """What one consumed event does to a case's clocks, in order:

    1. alerts already due at the event's time fire;
    2. the case's facts are updated (opened, triaged, routed);
    3. a pause, resume or extension request for a named clock is applied or refused;
    4. clocks whose policy stops, cancels or restarts on the event do so;
    5. clocks that start on it start (and, when the case has just become selectable, the clocks
       that start when a case opens start, counted from its opening).
    """
    known = facts or CaseFacts(event.case_id)
    outcome = Outcome(known)
    current: dict[tuple[uuid.UUID, ClockName, int], ClockState] = {c.key: c for c in clocks}

    def put(clock: ClockState) -> None:
        current[clock.key] = clock
        outcome.clocks[clock.key] = clock

    for clock in list(current.values()):
        if clock.status is ClockStatus.RUNNING and clock.next_due_at is not None and clock.next_due_at <= event.at:
            fired, alerts = fire_due(book, clock, event.at)
            put(fired)
            outcome.alerts.extend(alerts)

    updated = _facts_after(known, event)
    became_selectable = updated.selectable and not known.selectable
    if became_selectable and updated.opened_at is None:
        updated = replace(updated, opened_at=event.at)  # no tracking.opened seen: count from now on
    outcome.facts = updated
    if (updated.priority, updated.queue) != (known.priority, known.queue):
        for clock in [c for c in current.values() if c.status in _ACTIVE]:
            _follow_case(book, clock, updated, event, outcome, put)

    if event.trigger in CLOCK_REQUESTS:
        assert event.clock is not None
        if any(c.clock is event.clock for c in current.values()):
            _REQUESTS[event.trigger](book, current, event, outcome, put)
        else:
            _park(event, outcome)

    _stop_and_restart(book, current, updated, event, outcome, put)

    if updated.selectable:
        profile = updated.profile()
        if event.trigger != OPENED and updated.opened_at is not None and profile != known.profile():
            # More is known of the case (its priority, category, queue): clocks that start when a case opens
            # and that no policy gave it so far may start now, counted from the opening.
            _start(
                book, current, updated, OPENED, updated.opened_at, event, outcome, put, only_new=True, profile=profile
            )
        _start(book, current, updated, event.trigger, event.at, event, outcome, put, profile=profile)

    for key in list(outcome.clocks):
        clock = current[key]
        if clock.status is ClockStatus.RUNNING and clock.next_due_at is not None and clock.next_due_at <= event.at:
            fired, alerts = fire_due(book, clock, event.at)
            put(fired)
            outcome.alerts.extend(alerts)
    return outcome


def _park(event: SlaEvent, outcome: Outcome) -> None:
    """Agents' actions and the tracker's steps travel on two topics with no order between them: a pause can
    arrive before the clock it names. Keep it and apply it, at its own time, when the clock starts."""
    assert event.clock is not None
    parked = (*outcome.facts.parked, event)
    for dropped in parked[:-MAX_PARKED]:
        assert dropped.clock is not None
        outcome.journal.append(
            JournalEntry(dropped.case_id, dropped.clock, None, "parked_dropped", dropped.at, dropped.event_id)
        )
    outcome.facts = replace(outcome.facts, parked=parked[-MAX_PARKED:])
    outcome.journal.append(
        JournalEntry(event.case_id, event.clock, None, "parked", event.at, event.event_id, event.trigger)
    )


def _apply_parked(book: PolicyBook, current: Clocks, name: ClockName, outcome: Outcome, put: Put) -> None:
    waiting = sorted((p for p in outcome.facts.parked if p.clock is name), key=lambda p: p.at)
    if not waiting:
        return
    outcome.facts = replace(outcome.facts, parked=tuple(p for p in outcome.facts.parked if p.clock is not name))
    for request in waiting:
        _REQUESTS[request.trigger](book, current, request, outcome, put)


def _active(current: Clocks, name: ClockName) -> ClockState | None:
    """The running or paused run of the clock with the highest cycle (the first of equals)."""
    found = None
    for clock in current.values():
        if clock.clock is name and clock.status in _ACTIVE and (found is None or clock.cycle > found.cycle):
            found = clock
    return found


def _next_cycle(current: Clocks, name: ClockName) -> int:
    return max((c.cycle + 1 for c in current.values() if c.clock is name), default=0)


Put = Callable[[ClockState], None]
Clocks = dict[tuple[uuid.UUID, ClockName, int], ClockState]


def _follow_case(
    book: PolicyBook, clock: ClockState, facts: CaseFacts, event: SlaEvent, outcome: Outcome, put: Put
) -> None:
    """Alerts show the case's priority and queue as they are now; a team calendar applies once the case reaches it."""
    moved = evolve(clock, priority=facts.priority or clock.priority, queue=facts.queue)
    calendar = clock_config(book, clock).calendar_for(facts.queue)
    if calendar != clock.calendar:
        moved = _settle(book, evolve(moved, calendar=calendar))
        outcome.journal.append(
            JournalEntry(
                clock.case_id,
                clock.clock,
                clock.cycle,
                "calendar_changed",
                event.at,
                event.event_id,
                f"{clock.calendar} -> {calendar} (queue {facts.queue})",
            )
        )
    put(moved)


def _pause(book: PolicyBook, current: Clocks, event: SlaEvent, outcome: Outcome, put: Put) -> None:
    assert event.clock is not None
    clock = _active(current, event.clock)
    reason = event.reason or ""
    if clock is None or clock.status is ClockStatus.PAUSED:
        why = "no running clock of that name" if clock is None else "already paused"
        outcome.journal.append(
            JournalEntry(
                event.case_id,
                event.clock,
                clock.cycle if clock else None,
                "pause_ignored",
                event.at,
                event.event_id,
                f"{why}: {reason}"[:1000],
            )
        )
        return
    config = clock_config(book, clock)
    condition = book.pause_condition(reason)
    refusal = None
    if on_regulator_deadline(config, clock):
        refusal = "the clock runs on the regulator's own deadline, which no pause moves"
    elif not config.pause_conditions:
        refusal = f"the {clock.clock.value} clock of policy {clock.policy_id} cannot be paused"
    elif condition is None or condition not in config.pause_conditions:
        allowed = ", ".join(config.pause_conditions)
        refusal = f"the reason names none of the allowed pause conditions ({allowed})"
    if refusal is not None:
        refused = ClockPauseRefused(
            **_common(clock, f"pause_refused/{event.event_id}", event.at),
            reason=reason if len(reason) >= 3 else "(no reason given)",
            refusal=refusal,
            agent_id=event.agent_id,
            severity=Severity.WARNING,
        )
        outcome.alerts.append(_envelope(ClockPauseRefusedEvent, clock, event.at, refused))
        outcome.journal.append(
            JournalEntry(clock.case_id, clock.clock, clock.cycle, "pause_refused", event.at, event.event_id, refusal)
        )
        return
    assert condition is not None
    paused = replace(
        clock,
        status=ClockStatus.PAUSED,
        pauses=(*clock.pauses, PauseRecord(event.at, None, reason, condition)),
        next_due_at=None,
    )
    number = len(paused.pauses)
    data = ClockPaused(**_common(paused, f"paused/{number}", event.at), reason=reason)
    outcome.alerts.append(_envelope(ClockPausedEvent, paused, event.at, data))
    outcome.journal.append(
        JournalEntry(
            clock.case_id, clock.clock, clock.cycle, "paused", event.at, event.event_id, f"{condition}: {reason}"[:1000]
        )
    )
    put(paused)


def _close_pause(clock: ClockState, at: datetime) -> ClockState:
    pause = clock.open_pause
    if pause is None:
        return clock
    return replace(clock, pauses=(*clock.pauses[:-1], replace(pause, end=max(at, pause.start))))


def _resume(book: PolicyBook, current: Clocks, event: SlaEvent, outcome: Outcome, put: Put) -> None:
    assert event.clock is not None
    clock = _active(current, event.clock)
    if clock is None or clock.status is not ClockStatus.PAUSED:
        outcome.journal.append(
            JournalEntry(
                event.case_id,
                event.clock,
                clock.cycle if clock else None,
                "resume_ignored",
                event.at,
                event.event_id,
                f"no paused clock of that name: {event.reason or ''}"[:1000],
            )
        )
        return
    pause = clock.open_pause
    assert pause is not None
    resumed = _settle(book, replace(_close_pause(clock, event.at), status=ClockStatus.RUNNING))
    number = len(resumed.pauses)
    data = ClockResumed(
        **_common(resumed, f"resumed/{number}", event.at),
        reason=event.reason or "resumed",
        paused_seconds=_seconds(event.at - pause.start),
    )
    outcome.alerts.append(_envelope(ClockResumedEvent, resumed, event.at, data))
    outcome.journal.append(
        JournalEntry(clock.case_id, clock.clock, clock.cycle, "resumed", event.at, event.event_id, event.reason)
    )
    put(resumed)


def _step_of(config: ClockConfig, target: Target) -> int | None:
    """Which extension step (1 = the first) allows exactly ``target``."""
    for number, step in enumerate(config.extensions, start=1):
        if (step.to.amount, step.to.unit) == (target.amount, target.unit):
            return number
    return None


def _steps_text(config: ClockConfig) -> str:
    return ", ".join(
        f"{step.to.amount} {step.to.unit.value}{' with approval' if step.approval_required else ''}"
        for step in config.extensions
    )


def _extension_refusal(config: ClockConfig, clock: ClockState, event: SlaEvent) -> tuple[int, str | None]:
    """The extension step the request reaches, and why it cannot be granted (None: granted)."""
    step = clock.extensions + 1
    if on_regulator_deadline(config, clock):
        return step, "the clock runs on the regulator's own deadline, which no extension moves"
    if not config.extensions:
        return step, f"the {clock.clock.value} clock of policy {clock.policy_id} cannot be extended"
    if clock.extensions >= len(config.extensions):
        return step, f"the policy allows {len(config.extensions)} extension(s) ({_steps_text(config)}), all used"
    if event.new_target is not None:
        wanted = _step_of(config, event.new_target)
        if wanted is None:
            return step, f"no extension step of the policy allows {event.new_target} ({_steps_text(config)})"
        if wanted <= clock.extensions:
            return step, f"the clock already has {event.new_target} or more"
        if wanted > step and not config.extension_choice:
            nxt = config.extensions[clock.extensions].to
            return step, f"the policy grants its extensions one at a time: the next is to {nxt.amount} {nxt.unit.value}"
        step = wanted
    crossed = config.extensions[clock.extensions : step]
    if any(s.approval_required for s in crossed):
        if not event.approved_by:
            return step, "this extension needs an approver (approved_by)"
        if event.approved_by == event.agent_id:
            return step, "the agent who asks for an extension cannot also approve it"
    if clock.status is ClockStatus.RUNNING and event.at >= clock.deadline:
        return step, "the deadline has passed: a breached clock is not extended"
    return step, None


def _extend(book: PolicyBook, current: Clocks, event: SlaEvent, outcome: Outcome, put: Put) -> None:
    assert event.clock is not None
    clock = _active(current, event.clock)
    if clock is None:
        outcome.journal.append(
            JournalEntry(
                event.case_id,
                event.clock,
                None,
                "extension_refused",
                event.at,
                event.event_id,
                f"no running clock of that name: {event.reason or ''}"[:1000],
            )
        )
        return
    config = clock_config(book, clock)
    step, refusal = _extension_refusal(config, clock, event)
    reason = event.reason if event.reason and len(event.reason) >= 3 else "(no reason given)"
    extended = clock
    if refusal is None:
        try:
            extended = _settle(book, replace(clock, extensions=step))
        except CalendarDataMissingError as exc:  # a clear answer to the agent, not a dead letter
            refusal = f"the extended deadline cannot be computed: {exc}"[:1000]
    if refusal is not None:
        refused = ClockExtensionRefused(
            **_common(clock, f"extension_refused/{event.event_id}", event.at),
            reason=reason,
            refusal=refusal,
            agent_id=event.agent_id,
            approved_by=event.approved_by,
        )
        outcome.alerts.append(_envelope(ClockExtensionRefusedEvent, clock, event.at, refused))
        outcome.journal.append(
            JournalEntry(
                clock.case_id, clock.clock, clock.cycle, "extension_refused", event.at, event.event_id, refusal
            )
        )
        return
    data = ClockExtended(
        **_common(extended, f"extended/{extended.extensions}", event.at),
        previous_deadline=clock.deadline,
        extension=extended.extensions,
        approved_by=event.approved_by,
        reason=reason,
        agent_id=event.agent_id,
    )
    outcome.alerts.append(_envelope(ClockExtendedEvent, extended, event.at, data))
    span = span_of(config, extended.extensions)
    outcome.journal.append(
        JournalEntry(
            clock.case_id,
            clock.clock,
            clock.cycle,
            "extended",
            event.at,
            event.event_id,
            f"to {span.amount} {span.unit.value}"
            + (f", approved by {event.approved_by}" if event.approved_by else "")
            + f": {event.reason or ''}"[:900],
        )
    )
    put(extended)


_REQUESTS: dict[str, Callable[[PolicyBook, Clocks, SlaEvent, Outcome, Put], None]] = {
    PAUSE: _pause,
    RESUME: _resume,
    EXTEND: _extend,
}


def _finish(
    book: PolicyBook,
    clock: ClockState,
    status: ClockStatus,
    event: SlaEvent,
    outcome: Outcome,
    put: Put,
    reason: str | None = None,
) -> ClockState:
    closed = _close_pause(clock, event.at)
    deadline = compute_deadline(book, closed) or closed.deadline
    finished = replace(closed, status=status, deadline=deadline, stopped_at=event.at, next_due_at=None)
    if status is ClockStatus.MET:
        data: Any = ClockMet(
            **_common(finished, "met", event.at),
            met_at=event.at,
            seconds_to_spare=_seconds(finished.deadline - event.at),
        )
        outcome.alerts.append(_envelope(ClockMetEvent, finished, event.at, data))
    else:
        data = ClockCancelled(
            **_common(finished, "cancelled", event.at), reason=reason or f"case event {event.trigger}"
        )
        outcome.alerts.append(_envelope(ClockCancelledEvent, finished, event.at, data))
    outcome.journal.append(
        JournalEntry(
            clock.case_id,
            clock.clock,
            clock.cycle,
            status.value,
            event.at,
            event.event_id,
            f"{event.trigger}: {reason}" if reason else event.trigger,
        )
    )
    put(finished)
    return finished


def _stop_and_restart(
    book: PolicyBook, current: Clocks, facts: CaseFacts, event: SlaEvent, outcome: Outcome, put: Put
) -> None:
    for clock in [c for c in current.values() if c.status in _ACTIVE]:
        if event.trigger not in _reacts_to(book, clock):
            continue  # as a rule: most steps neither stop, cancel nor restart a given clock
        config = clock_config(book, clock)
        if event.trigger in config.cancels_on:
            _finish(book, clock, ClockStatus.CANCELLED, event, outcome, put)
        elif event.trigger in config.stops_on:
            _finish(book, clock, ClockStatus.MET, event, outcome, put)
        elif event.trigger in config.restarts_on and event.at > clock.started_at:
            _finish(book, clock, ClockStatus.MET, event, outcome, put)
            # The next run: the same clock, chosen again for the case as it stands now.
            _start(book, current, facts, event.trigger, event.at, event, outcome, put, only=clock.clock)
        elif event.trigger == MERGED and event.new_facts and config.restart_on_new_facts:
            _restart_on_new_facts(book, current, facts, clock, event, outcome, put)


def _reacts_to(book: PolicyBook, clock: ClockState) -> frozenset[str]:
    """Every event type the clock's config starts, stops, restarts or cancels on (``ClockConfig.triggers``), once."""
    key = ("reacts", clock.policy_id, clock.policy_version, clock.clock)
    found: frozenset[str] | None = book.derived.get(key)
    if found is None:
        found = book.derived[key] = frozenset(clock_config(book, clock).triggers())
    return found


def _restart_on_new_facts(
    book: PolicyBook,
    current: Clocks,
    facts: CaseFacts,
    clock: ClockState,
    event: SlaEvent,
    outcome: Outcome,
    put: Put,
) -> None:
    """New facts make the case one received anew for this clock: the run ends (cancelled: neither met nor missed)
    and a new run, the next cycle with its own alerts and dedup keys, counts from the merge."""
    if on_regulator_deadline(clock_config(book, clock), clock):
        outcome.journal.append(
            JournalEntry(
                clock.case_id,
                clock.clock,
                clock.cycle,
                "restart_skipped",
                event.at,
                event.event_id,
                "new facts, but the clock runs on the regulator's own deadline, which they do not move",
            )
        )
        return
    if event.at <= clock.started_at:
        return  # facts the run already counts from
    _finish(book, clock, ClockStatus.CANCELLED, event, outcome, put, reason="new facts merged into the case: restarted")
    _start(book, current, facts, event.trigger, event.at, event, outcome, put, only=clock.clock, from_event=True)


def _start(
    book: PolicyBook,
    current: Clocks,
    facts: CaseFacts,
    trigger: str,
    at: datetime,
    event: SlaEvent,
    outcome: Outcome,
    put: Put,
    only: ClockName | None = None,
    only_new: bool = False,
    from_event: bool = False,
    profile: CaseProfile | None = None,
) -> None:
    """Start the clocks the trigger starts; ``from_event``: ``only`` starts, counted from the event, whatever its
    policy's triggers and anchor (a restart on new facts)."""
    if only is None:
        candidates = book.starting(trigger, profile or facts.profile(), at)
    else:
        selection = book.select(only, facts.profile(), at)
        if selection is None:
            return
        if not from_event and trigger not in selection.clock.starts_on and trigger not in selection.clock.restarts_on:
            return
        candidates = ((only, selection),)
    for name, selection in candidates:
        if _active(current, name) is not None:
            continue
        if only_new and any(c.clock is name for c in current.values()):
            continue
        config = selection.clock
        from_opening = not from_event and config.anchor == "case_opened" and facts.opened_at is not None
        started_at = facts.opened_at if from_opening and facts.opened_at is not None else at
        policy = selection.version.policy
        assert facts.priority is not None
        clock = _new_clock(
            case_id=facts.case_id,
            clock=name,
            cycle=_next_cycle(current, name) if current else 0,
            policy_id=policy.id,
            policy_version=policy.version,
            calendar=config.calendar_for(facts.queue),
            started_at=started_at,
            priority=facts.priority,
            queue=facts.queue,
            regulator_deadline=facts.regulator_deadline if config.use_regulator_deadline else None,
        )
        clock = _settle(book, clock)
        outcome.alerts.append(started_alert(book, clock, max(at, started_at)))
        outcome.journal.append(
            JournalEntry(
                clock.case_id,
                name,
                clock.cycle,
                "started",
                at,
                event.event_id,
                f"{trigger}; policy {policy.id} v{policy.version}; calendar {clock.calendar}",
            )
        )
        put(clock)
        if outcome.facts.parked:
            _apply_parked(book, current, name, outcome, put)


# ---- questions people ask (the CLI) ----


@dataclass(frozen=True)
class Timeline:
    deadline: datetime
    marks: list[Mark]
    span: Span
    calendar: BusinessCalendar


def timeline(
    book: PolicyBook,
    policy_id: str,
    clock_name: ClockName,
    start: datetime,
    pauses: Sequence[tuple[datetime, datetime]] = (),
    extensions: int = 0,
    regulator_deadline: datetime | None = None,
    queue: str | None = None,
) -> Timeline:
    """Deadline, warnings and escalations of one clock of a policy (the version in force at ``start``)."""
    version = book.in_force(policy_id, start)
    if version is None:
        raise KeyError(f"no version of policy {policy_id!r} is in force at {start.isoformat()}")
    config = version.policy.clock(clock_name)
    if config is None:
        names = ", ".join(c.name.value for c in version.policy.clocks)
        raise KeyError(f"policy {policy_id} v{version.policy.version} has no {clock_name.value} clock (it has {names})")
    if extensions > len(config.extensions):
        raise ValueError(f"policy {policy_id} allows {len(config.extensions)} extension(s) of {clock_name.value}")
    clock = ClockState(
        case_id=uuid.UUID(int=0),
        clock=clock_name,
        cycle=0,
        policy_id=policy_id,
        policy_version=version.policy.version,
        calendar=config.calendar_for(queue),
        status=ClockStatus.RUNNING,
        started_at=start,
        deadline=start,
        priority=Priority.P3.value,
        extensions=extensions,
        regulator_deadline=regulator_deadline if config.use_regulator_deadline else None,
        pauses=tuple(PauseRecord(a, b, "given", "given") for a, b in pauses),
    )
    clock = _settle(book, clock)
    return Timeline(clock.deadline, marks(book, clock), span_of(config, extensions), calendar_of(book, clock))
