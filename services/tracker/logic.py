"""Pure tracker rules: the case state machine, plan lifecycle and timers (no I/O, no clock).

A batch of consumed events is applied, in order, to the slice of state the store loaded for it
(``World``); the result (``Outcome``) says which rows to write, which events to emit through the
outbox and which audit rows to append. Every time in the result comes from an event (or a timer's
due time), never from the wall clock, and every id derives from its cause, so a replay gives the
same history.

What the tracker consumes:

- ``case.routed.*`` (routing owns case identity): ``new_case`` opens a case (opened, triaged,
  routed), or, for a case already open, records one more delivery (another queue); ``merged``
  joins feedback to an open case; ``split`` takes feedback out of a case into a new one;
  ``escalated`` re-routes; ``post_update`` is recorded on the case.
- ``agent.actions``: the state machine below (``TRANSITIONS``); an action the case cannot take in
  its status, or one that contradicts the record (a plan never proposed, an instalment paid twice),
  is refused with ``tracking.transition_rejected`` and changes nothing else.
- ``plan.proposed``: the planner's proposals, stored for the agent to offer.

Events about a case the tracker has not opened yet are parked and applied when it opens (topics
are not ordered with each other, so an agent action may overtake its case's routing).
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections import Counter
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from typing import Any, Literal

from pydantic_core import to_json

from schemas import agent
from schemas.channels import Channel, RegulatorDetails
from schemas.envelope import CloudEvent, ReceivedCloudEvent
from schemas.plans import HardshipReason, PlanProposal, PlanProposedEvent, PlanRequested, PlanRequestedEvent
from schemas.routing import CaseRoutedEvent
from schemas.tracking import (
    CaseClosed,
    CaseClosedEvent,
    CaseMergedEvent,
    CaseOpenedEvent,
    CaseReopened,
    CaseReopenedEvent,
    CaseResolved,
    CaseResolvedEvent,
    CaseRoutedStepEvent,
    CaseSplit,
    CaseSplitEvent,
    CaseTriagedStepEvent,
    ContactAttemptFailed,
    ContactAttemptFailedEvent,
    FirstContact,
    FirstContactEvent,
    FollowedUp,
    FollowedUpEvent,
    FollowUpRequested,
    FollowUpRequestedEvent,
    InstalmentMissed,
    InstalmentMissedEvent,
    InstalmentPaid,
    InstalmentPaidEvent,
    PlanAccepted,
    PlanAcceptedEvent,
    PlanActive,
    PlanActiveEvent,
    PlanBroken,
    PlanBrokenEvent,
    PlanCompleted,
    PlanCompletedEvent,
    PlanCountered,
    PlanCounteredEvent,
    PlanDeclined,
    PlanDeclinedEvent,
    PlanOfferedStep,
    PlanOfferedStepEvent,
    PlanProposedStep,
    PlanProposedStepEvent,
    TransitionRejected,
    TransitionRejectedEvent,
)
from schemas.values import CaseStatus, Category, Jurisdiction, Money, PlanKind, Priority, Queue, Resolution
from services.tracker import audit
from services.tracker.accounts import AccountSnapshot

SOURCE = "/parley/tracker"
TRACKER_AGENT = "parley-tracker"
"""The agent id on steps the tracker takes itself (a plan paid in full resolves its case)."""
# Case and event ids derive from their cause, so a replay yields the same ids.
CASE_ID_NAMESPACE = uuid.UUID("0d6f1e53-8a47-4c1b-b0f2-3e9c2a7d5f10")
EVENT_ID_NAMESPACE = uuid.UUID("9a3e2b71-64c5-4f08-8e1d-c27b5a90d3e4")

S = CaseStatus


_EVENT_ID_NAMESPACE_BYTES = EVENT_ID_NAMESPACE.bytes
_UUID5_CLEAR = ~((0xF000 << 64) | (0xC000 << 48))
_UUID5_SET = (5 << 76) | (0x8000 << 48)


def _event_uuid5(name: str) -> uuid.UUID:
    """``uuid.uuid5(EVENT_ID_NAMESPACE, name)``, without its per-call import and byte conversions (the
    tracker mints several ids per event)."""
    digest = hashlib.sha1(_EVENT_ID_NAMESPACE_BYTES + name.encode(), usedforsecurity=False).digest()
    return uuid.UUID(int=(int.from_bytes(digest[:16]) & _UUID5_CLEAR) | _UUID5_SET)


def case_id_for(feedback_id: uuid.UUID) -> uuid.UUID:
    return uuid.uuid5(CASE_ID_NAMESPACE, str(feedback_id))


def lifecycle_event_id(case_id: uuid.UUID, name: str, sequence: int = 0) -> uuid.UUID:
    return _event_uuid5(f"{case_id}:{name}:{sequence}")


def caused_event_id(cause_id: uuid.UUID, name: str) -> uuid.UUID:
    """The id of the event ``name`` that the event ``cause_id`` gave rise to."""
    return _event_uuid5(f"{cause_id}:{name}")


# ---------------------------------------------------------------------------------------------
# The state machine
# ---------------------------------------------------------------------------------------------


class Action(StrEnum):
    """What can happen to a case that exists. Agent actions carry their event name
    (``com.parley.agent.<name>.v1``); the others come from routing and the planner."""

    ROUTED = "routed"  # routing: one more delivery of the case (another queue) or an escalation
    MERGED = "merged"  # routing: feedback joined the case
    SPLIT = "split"  # routing: feedback left the case for a case of its own
    POST_UPDATE = "post_update"  # routing: new reach figures of a social post on the case
    PLAN_PROPOSED = "plan_proposed"  # planner
    CASE_ACCEPTED = "case_accepted"
    CONTACTED = "contacted"
    CONTACT_ATTEMPT_FAILED = "contact_attempt_failed"
    NOTE_ADDED = "note_added"
    PLAN_REQUESTED = "plan_requested"
    PLAN_OFFERED = "plan_offered"
    CUSTOMER_ACCEPTED = "customer_accepted"
    CUSTOMER_DECLINED = "customer_declined"
    CUSTOMER_COUNTERED = "customer_countered"
    PAYMENT_RECEIVED = "payment_received"
    PAYMENT_MISSED = "payment_missed"
    RESOLVED = "resolved"
    FOLLOW_UP_DONE = "follow_up_done"
    ESCALATED = "escalated"  # an agent passed the case to another queue
    CLOCK_PAUSED = "clock_paused"
    CLOCK_RESUMED = "clock_resumed"
    CLOCK_EXTENDED = "clock_extended"
    REOPENED = "reopened"
    MERGE_UNDONE = "merge_undone"


EVERY_STATUS = tuple(S)
WORKING = (S.ROUTED, S.REOPENED, S.CONTACTED, S.NEGOTIATING, S.PLAN_ACTIVE)
"""In an agent's hands."""
OPEN = (S.OPENED, S.TRIAGED, *WORKING)
"""Not yet resolved: clocks run, feedback may join."""
BEFORE_A_PLAN = (S.ROUTED, S.REOPENED, S.CONTACTED, S.NEGOTIATING)
"""Where negotiation can start or go on (an active plan must complete or break first)."""


def _stays(statuses: tuple[CaseStatus, ...]) -> dict[CaseStatus, CaseStatus]:
    return {status: status for status in statuses}


def _goes(statuses: tuple[CaseStatus, ...], to: CaseStatus) -> dict[CaseStatus, CaseStatus]:
    return dict.fromkeys(statuses, to)


TRANSITIONS: dict[Action, dict[CaseStatus, CaseStatus]] = {
    # A delivery puts a case that is not yet in an agent's hands in the routed status; a case already
    # being worked keeps its status (a late escalation, or a copy for the PR desk).
    Action.ROUTED: {
        **_goes((S.OPENED, S.TRIAGED, S.ROUTED, S.REOPENED), S.ROUTED),
        **_stays((S.CONTACTED, S.NEGOTIATING, S.PLAN_ACTIVE)),
    },
    Action.MERGED: _stays(OPEN),
    Action.SPLIT: _stays(EVERY_STATUS),
    Action.POST_UPDATE: _stays(EVERY_STATUS),
    Action.PLAN_PROPOSED: _stays(WORKING),
    Action.CASE_ACCEPTED: _stays(WORKING),
    Action.CONTACTED: {
        **_goes((S.ROUTED, S.REOPENED, S.CONTACTED), S.CONTACTED),
        **_stays((S.NEGOTIATING, S.PLAN_ACTIVE)),
    },
    Action.CONTACT_ATTEMPT_FAILED: _stays(WORKING),
    Action.NOTE_ADDED: _stays(EVERY_STATUS),
    Action.PLAN_REQUESTED: _goes(BEFORE_A_PLAN, S.NEGOTIATING),
    Action.PLAN_OFFERED: _goes(BEFORE_A_PLAN, S.NEGOTIATING),
    Action.CUSTOMER_ACCEPTED: {S.NEGOTIATING: S.PLAN_ACTIVE},
    Action.CUSTOMER_DECLINED: {S.NEGOTIATING: S.NEGOTIATING},
    Action.CUSTOMER_COUNTERED: {S.NEGOTIATING: S.NEGOTIATING},
    # Paid in full resolves the case, broken goes back to negotiating: decided by the plan, below.
    Action.PAYMENT_RECEIVED: {S.PLAN_ACTIVE: S.PLAN_ACTIVE},
    Action.PAYMENT_MISSED: {S.PLAN_ACTIVE: S.PLAN_ACTIVE},
    Action.RESOLVED: _goes(BEFORE_A_PLAN, S.RESOLVED),
    Action.FOLLOW_UP_DONE: {S.RESOLVED: S.FOLLOWED_UP},
    Action.ESCALATED: _stays(WORKING),
    Action.CLOCK_PAUSED: _stays(OPEN),
    Action.CLOCK_RESUMED: _stays(OPEN),
    Action.CLOCK_EXTENDED: _stays(OPEN),
    Action.REOPENED: _goes((S.RESOLVED, S.FOLLOWED_UP, S.CLOSED), S.REOPENED),
    Action.MERGE_UNDONE: _stays(EVERY_STATUS),
}


def transition(status: CaseStatus, action: Action) -> CaseStatus | None:
    """The status after ``action``, or None when the case cannot take it in ``status``."""
    return TRANSITIONS[action].get(status)


def refusal(status: CaseStatus, action: Action) -> str:
    allowed = [s.value for s in EVERY_STATUS if s in TRANSITIONS[action]]
    where = ", ".join(allowed[:-1]) + f" or {allowed[-1]}" if len(allowed) > 1 else allowed[0]
    return f"{action.value} is not possible while the case is {status.value}; it is possible while it is {where}"


# ---------------------------------------------------------------------------------------------
# State
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TrackerConfig:
    jurisdiction: Jurisdiction = Jurisdiction.CN
    follow_up_after: timedelta = timedelta(days=7)
    close_after: timedelta = timedelta(days=14)
    plan_broken_after_missed: int = 3


@dataclass(slots=True)
class CaseState:
    """A case as the ``cases`` row holds it (plus the feedback on it).

    Mutable: a batch changes each case many times (every audit row moves its chain head), and
    copying a twenty-field record each time cost more than the rest of the logic."""

    case_id: uuid.UUID
    customer_ref: str | None
    channel: Channel
    status: CaseStatus
    opened_at: datetime
    updated_at: datetime
    feedback_count: int = 1
    category: Category | None = None
    priority: Priority | None = None
    queue: Queue | None = None
    escalation_level: int = 0
    jurisdiction: Jurisdiction | None = None
    regulator_deadline: datetime | None = None
    assigned_agent: str | None = None
    first_contact_at: datetime | None = None
    failed_contact_attempts: int = 0
    resolved_at: datetime | None = None
    resolution: Resolution | None = None
    audit_seq: int = 0
    audit_head: bytes | None = None
    feedback_ids: frozenset[uuid.UUID] = frozenset()


class PlanStatus(StrEnum):
    OFFERED = "offered"
    DECLINED = "declined"
    COUNTERED = "countered"
    SUPERSEDED = "superseded"  # another plan of the case was accepted
    ACTIVE = "active"
    BROKEN = "broken"
    COMPLETED = "completed"


@dataclass(frozen=True)
class ScheduledPayment:
    number: int
    due_date: date
    payment: Decimal


@dataclass(frozen=True)
class PlanState:
    plan_id: uuid.UUID
    case_id: uuid.UUID
    request_id: uuid.UUID
    status: PlanStatus
    currency: str
    instalment: Decimal
    schedule: tuple[ScheduledPayment, ...]
    offered_at: datetime
    updated_at: datetime
    paid: frozenset[int] = frozenset()
    missed: frozenset[int] = frozenset()
    paid_total: Decimal = Decimal(0)

    def scheduled(self, number: int) -> ScheduledPayment | None:
        return next((item for item in self.schedule if item.number == number), None)


@dataclass(frozen=True)
class ProposalRecord:
    plan_id: uuid.UUID
    case_id: uuid.UUID
    request_id: uuid.UUID
    proposal: PlanProposal
    proposed_at: datetime

    def schedule(self) -> tuple[ScheduledPayment, ...]:
        return tuple(ScheduledPayment(i.number, i.due_date, i.payment.amount) for i in self.proposal.schedule)


InboundKind = Literal["routed", "agent_action", "plan_proposed"]
AgentEvent = ReceivedCloudEvent[Any]


@dataclass(frozen=True)
class Incoming:
    """A consumed event, parsed, with the record's bytes (kept when the event is parked)."""

    kind: InboundKind
    event: CaseRoutedEvent | PlanProposedEvent | AgentEvent
    value: bytes

    @property
    def case_id(self) -> uuid.UUID:
        case_id: uuid.UUID = self.event.data.case_id
        return case_id


@dataclass
class World:
    """The state a batch may touch, as loaded (cases locked) for it."""

    cases: dict[uuid.UUID, CaseState] = field(default_factory=dict)
    plans: dict[uuid.UUID, PlanState] = field(default_factory=dict)
    proposals: dict[uuid.UUID, ProposalRecord] = field(default_factory=dict)
    accounts: dict[str, AccountSnapshot] = field(default_factory=dict)
    parked: dict[uuid.UUID, list[Incoming]] = field(default_factory=dict)
    """Events parked earlier for cases that are not open (yet)."""


EmitTopic = Literal["tracking", "plan_requested"]


class Emitted:
    """An event for the outbox: its topic, key (the case id) and record value, the event's JSON as its model
    writes it. The events every routed case brings (opened, triaged, routed, merged) are written straight from
    their fields, without building their models; ``event`` builds the model from the value when asked."""

    __slots__ = ("_event", "_model", "key", "topic", "value")

    def __init__(
        self,
        topic: EmitTopic,
        key: str,
        value: bytes,
        *,
        event: CloudEvent[Any] | None = None,
        model: type[CloudEvent[Any]] | None = None,
    ) -> None:
        self.topic = topic
        self.key = key
        self.value = value
        self._event = event
        self._model = model

    @property
    def event(self) -> CloudEvent[Any]:
        if self._event is None:
            assert self._model is not None
            self._event = self._model.model_validate_json(self.value)
        return self._event


TimerKind = Literal["follow_up", "close"]


@dataclass
class Outcome:
    """What a batch changes; the store writes it in the transaction that claimed the events."""

    new_cases: list[uuid.UUID] = field(default_factory=list)
    changed_cases: set[uuid.UUID] = field(default_factory=set)
    audit_rows: list[audit.AuditRow] = field(default_factory=list)
    emitted: list[Emitted] = field(default_factory=list)
    feedback_added: list[tuple[uuid.UUID, uuid.UUID, datetime]] = field(default_factory=list)
    feedback_removed: list[tuple[uuid.UUID, uuid.UUID]] = field(default_factory=list)
    changed_plans: set[uuid.UUID] = field(default_factory=set)
    new_proposals: list[uuid.UUID] = field(default_factory=list)
    timers: dict[tuple[uuid.UUID, TimerKind], datetime | None] = field(default_factory=dict)
    """Timers to arm (a due time) or cancel (None); the last word per case and kind counts."""
    parked: list[Incoming] = field(default_factory=list)
    unparked_cases: set[uuid.UUID] = field(default_factory=set)
    counts: Counter[str] = field(default_factory=Counter)
    # Filled by Batch.finish: the final state of what changed.
    cases_to_insert: list[CaseState] = field(default_factory=list)
    cases_to_update: list[CaseState] = field(default_factory=list)
    plans_to_write: list[PlanState] = field(default_factory=list)
    proposals_to_insert: list[ProposalRecord] = field(default_factory=list)


@dataclass(frozen=True)
class DueTimer:
    case_id: uuid.UUID
    kind: TimerKind
    due_at: datetime


# ---------------------------------------------------------------------------------------------
# Applying a batch
# ---------------------------------------------------------------------------------------------


def _money(amount: Decimal, currency: str) -> Money:
    return Money(amount=amount, currency=currency)


def audit_payload(incoming: Incoming) -> Any:
    """What the audit trail keeps of a consumed event: all of it, except routed text and channel details,
    which may hold personal data a queue was allowed to see; a SHA-256 of the text proves what it was."""
    payload = incoming.event.model_dump(mode="json")
    if incoming.kind == "routed":
        data = payload["data"]
        text = data.pop("text")
        data.pop("details", None)
        data["text_sha256"] = hashlib.sha256(text.encode()).hexdigest()
    return payload


def _json_time(moment: datetime) -> str:
    """A time as the event models write it (pydantic's ISO 8601, ``Z`` for UTC)."""
    return to_json(moment)[1:-1].decode()


def _tracking_json(
    model: type[CloudEvent[Any]], event_id: uuid.UUID, at: datetime, subject: str, data: dict[str, Any]
) -> dict[str, Any]:
    """A ``case.tracking`` event as the JSON its model dumps (``model_dump(mode="json")``: fields in declaration
    order, ids, times and enums as text). Each event on the path of every routed case (opened, triaged, routed,
    merged) is written this way, from fields that were validated on the way in: building and dumping its model
    twice cost more than the rest of the step. The tests check each against its model (test_tracker_support.run)."""
    return {
        "specversion": "1.0",
        "id": str(event_id),
        "source": SOURCE,
        "type": model.model_fields["type"].default,
        "time": _json_time(at),
        "subject": subject,
        "datacontenttype": "application/json",
        "data": data,
    }


class Batch:
    """Applies consumed events (and due timers) in order to a ``World``; collects the ``Outcome``."""

    def __init__(self, world: World, config: TrackerConfig) -> None:
        self.world = world
        self.config = config
        self.outcome = Outcome()
        self._parked_here: dict[uuid.UUID, list[Incoming]] = {}
        self._opened_here: set[uuid.UUID] = set()

    # ---- entry points ----

    def apply(self, incoming: Incoming) -> None:
        if incoming.kind == "routed":
            assert isinstance(incoming.event, CaseRoutedEvent)
            self._routed(incoming, incoming.event)
            return
        case = self.world.cases.get(incoming.case_id)
        if case is None:
            self._park(incoming)
            return
        self._on_case(incoming, case)

    def fire(self, timer: DueTimer) -> None:
        """A due timer; its time is the due time, so firing late or twice says the same thing."""
        self.outcome.timers[(timer.case_id, timer.kind)] = None
        case = self.world.cases.get(timer.case_id)
        if case is None:
            return
        if timer.kind == "follow_up" and case.status is S.RESOLVED:
            assert case.resolved_at is not None
            # The due time and the case's place in its history name the request: the same on a replay, and a
            # second resolution due at the same instant still gets an id of its own.
            name = f"follow_up_requested:{audit.utc_text(timer.due_at)}"
            cause = lifecycle_event_id(case.case_id, name, case.audit_seq)
            event = FollowUpRequestedEvent(
                id=cause,
                source=SOURCE,
                time=timer.due_at,
                subject=str(case.case_id),
                data=FollowUpRequested(
                    case_id=case.case_id, status=S.RESOLVED, resolved_at=case.resolved_at, resolution=case.resolution
                ),
            )
            self._emit(case.case_id, event)
            self.outcome.timers[(case.case_id, "close")] = timer.due_at + self.config.close_after
            self.outcome.counts["follow_up_requested"] += 1
        elif timer.kind == "close" and case.status in (S.RESOLVED, S.FOLLOWED_UP):
            reason = (
                "closed after the follow-up"
                if case.status is S.FOLLOWED_UP
                else "closed: no follow-up answer in the configured time"
            )
            self._set(case.case_id, status=S.CLOSED)
            cause = lifecycle_event_id(case.case_id, f"closed:{audit.utc_text(timer.due_at)}", case.audit_seq)
            self._emit(
                case.case_id,
                CaseClosedEvent(
                    id=cause,
                    source=SOURCE,
                    time=timer.due_at,
                    subject=str(case.case_id),
                    data=CaseClosed(case_id=case.case_id, status=S.CLOSED, reason=reason),
                ),
            )
            self.outcome.counts["closed"] += 1

    def finish(self) -> Outcome:
        outcome = self.outcome
        world = self.world
        outcome.parked = [item for items in self._parked_here.values() for item in items]
        outcome.cases_to_insert = [world.cases[case_id] for case_id in outcome.new_cases]
        outcome.cases_to_update = [world.cases[case_id] for case_id in sorted(outcome.changed_cases)]
        outcome.plans_to_write = [world.plans[plan_id] for plan_id in sorted(outcome.changed_plans)]
        outcome.proposals_to_insert = [world.proposals[plan_id] for plan_id in outcome.new_proposals]
        return outcome

    # ---- bookkeeping ----

    def _case(self, case_id: uuid.UUID) -> CaseState:
        return self.world.cases[case_id]

    def _set(self, case_id: uuid.UUID, **changes: Any) -> CaseState:
        case = self.world.cases[case_id]
        for name, value in changes.items():
            setattr(case, name, value)
        if case_id not in self._opened_here:
            self.outcome.changed_cases.add(case_id)  # a case opened in this batch is inserted as it ends up
        return case

    def _record(
        self,
        case_id: uuid.UUID,
        event_id: uuid.UUID,
        event_type: str,
        at: datetime,
        payload: Any,
        ids_text: tuple[str, str] | None = None,
    ) -> None:
        case = self.world.cases[case_id]
        case_text, event_text = ids_text or (None, None)
        row = audit.append(
            case_id,
            case.audit_seq,
            case.audit_head,
            event_id,
            event_type,
            at,
            payload,
            case_text=case_text,
            event_text=event_text,
        )
        self.outcome.audit_rows.append(row)
        # What _set does, spelled out: every audit row passes here.
        case.audit_seq = row.seq
        case.audit_head = row.row_hash
        if at > case.updated_at:
            case.updated_at = at
        if case_id not in self._opened_here:
            self.outcome.changed_cases.add(case_id)

    def _record_incoming(self, case_id: uuid.UUID, incoming: Incoming) -> None:
        event = incoming.event
        self._record(case_id, event.id, event.type, event.time, audit_payload(incoming))

    def _emit(self, case_id: uuid.UUID, event: CloudEvent[Any], topic: EmitTopic = "tracking") -> None:
        self.outcome.emitted.append(Emitted(topic, str(case_id), event.to_json_bytes(), event=event))
        self._record(case_id, event.id, event.type, event.time, event.model_dump(mode="json"))

    def _emit_json(
        self, case_id: uuid.UUID, model: type[CloudEvent[Any]], event_id: uuid.UUID, at: datetime, body: dict[str, Any]
    ) -> None:
        """Emit an event given as its JSON value (``_tracking_json``): what ``_emit`` does with the model built."""
        self.outcome.emitted.append(Emitted("tracking", body["subject"], to_json(body), model=model))
        self._record(case_id, event_id, body["type"], at, body, (body["subject"], body["id"]))

    def _reject(self, case: CaseState, incoming: Incoming, reason: str) -> None:
        event = incoming.event
        agent_id = getattr(event.data, "agent_id", None)
        self._emit(
            case.case_id,
            TransitionRejectedEvent(
                id=caused_event_id(event.id, "transition_rejected"),
                source=SOURCE,
                time=event.time,
                subject=str(case.case_id),
                data=TransitionRejected(
                    case_id=case.case_id,
                    status=case.status,
                    rejected_type=event.type,
                    rejected_id=event.id,
                    agent_id=agent_id,
                    reason=reason[:1000],
                ),
            ),
        )
        self.outcome.counts["rejected"] += 1

    def _park(self, incoming: Incoming) -> None:
        self._parked_here.setdefault(incoming.case_id, []).append(incoming)
        self.outcome.counts["parked"] += 1

    def _unpark(self, case_id: uuid.UUID) -> None:
        """Apply what waited for this case, oldest first (stored ones before this batch's)."""
        waiting = self.world.parked.pop(case_id, [])
        if waiting:
            self.outcome.unparked_cases.add(case_id)
        waiting += self._parked_here.pop(case_id, [])
        for incoming in waiting:
            self.outcome.counts["unparked"] += 1
            self.apply(incoming)

    # ---- routing ----

    def _routed(self, incoming: Incoming, event: CaseRoutedEvent) -> None:
        data = event.data
        link = data.link
        existing = self.world.cases.get(data.case_id)
        if link.kind in ("new_case", "split"):
            if link.kind == "split" and link.split_from_case_id is not None:
                self._split_from(event, link.split_from_case_id)
            if existing is None:
                self._open(incoming, event)
                self._unpark(data.case_id)
                return
            self._on_case(incoming, existing)
            return
        if existing is None:
            self._park(incoming)
            return
        self._on_case(incoming, existing)

    def _open(self, incoming: Incoming, event: CaseRoutedEvent) -> None:
        data = event.data
        case_id = data.case_id
        opened_at = data.received_at or event.time
        regulator_deadline = data.details.response_due_by if isinstance(data.details, RegulatorDetails) else None
        case = CaseState(
            case_id=case_id,
            customer_ref=data.customer_ref,
            channel=data.channel,
            status=S.OPENED,
            opened_at=opened_at,
            updated_at=opened_at,
            category=data.category,
            priority=data.priority,
            queue=data.queue,
            escalation_level=data.escalation_level,
            jurisdiction=self.config.jurisdiction,
            regulator_deadline=regulator_deadline,
            feedback_ids=frozenset({data.feedback_id}),
        )
        self.world.cases[case_id] = case
        self.outcome.new_cases.append(case_id)
        self._opened_here.add(case_id)
        self.outcome.feedback_added.append((case_id, data.feedback_id, opened_at))
        self.outcome.counts["opened"] += 1
        self._record_incoming(case_id, incoming)
        subject = str(case_id)
        jurisdiction = self.config.jurisdiction
        opened_id = lifecycle_event_id(case_id, "opened")
        self._emit_json(
            case_id,
            CaseOpenedEvent,
            opened_id,
            opened_at,
            _tracking_json(
                CaseOpenedEvent,
                opened_id,
                opened_at,
                subject,
                {
                    "case_id": subject,
                    "status": S.OPENED._value_,
                    "customer_ref": data.customer_ref,
                    "channel": data.channel._value_,
                    "feedback_id": str(data.feedback_id),
                    "opened_at": _json_time(opened_at),
                    "jurisdiction": jurisdiction._value_,
                    "regulator_deadline": _json_time(regulator_deadline) if regulator_deadline is not None else None,
                },
            ),
        )
        self._set(case_id, status=S.TRIAGED)
        triaged_id = lifecycle_event_id(case_id, "triaged")
        self._emit_json(
            case_id,
            CaseTriagedStepEvent,
            triaged_id,
            data.routed_at,
            _tracking_json(
                CaseTriagedStepEvent,
                triaged_id,
                data.routed_at,
                subject,
                {
                    "case_id": subject,
                    "status": S.TRIAGED._value_,
                    "category": data.category._value_,
                    "priority": data.priority._value_,
                    "flags": [flag._value_ for flag in data.flags],
                },
            ),
        )
        self._set(case_id, status=S.ROUTED)
        self._emit_routed(event, self._case(case_id), data.queue, data.escalation_level, data.lane)
        if data.category is Category.REPAYMENT_HARDSHIP:
            account = self._account(self._case(case_id))
            if account is not None:
                self._request_plan(event.id, event.time, self._case(case_id), account, "tracker", None)

    def _emit_routed(
        self,
        cause: CaseRoutedEvent | AgentEvent,
        case: CaseState,
        queue: Queue,
        escalation_level: int,
        lane: Literal["primary", "public_opinion"] = "primary",
    ) -> None:
        event_id = caused_event_id(cause.id, "routed")
        at = cause.data.routed_at if isinstance(cause, CaseRoutedEvent) else cause.time
        subject = str(case.case_id)
        self._emit_json(
            case.case_id,
            CaseRoutedStepEvent,
            event_id,
            at,
            _tracking_json(
                CaseRoutedStepEvent,
                event_id,
                at,
                subject,
                {
                    "case_id": subject,
                    "status": case.status._value_,
                    "queue": queue._value_,
                    # Cases recorded before routing existed have no priority; P3 is the routine default.
                    "priority": (case.priority or Priority.P3)._value_,
                    "escalation_level": escalation_level,
                    "lane": lane,
                },
            ),
        )

    def _split_from(self, event: CaseRoutedEvent, old_case_id: uuid.UUID) -> None:
        data = event.data
        old = self.world.cases.get(old_case_id)
        if old is None or data.feedback_id not in old.feedback_ids:
            # Unknown here, or already taken out: nothing to record on the old case.
            self.outcome.counts["split_not_on_record"] += 1
            return
        assert transition(old.status, Action.SPLIT) is old.status  # a wrong merge can be undone in any status
        old = self._set(
            old_case_id,
            feedback_ids=old.feedback_ids - {data.feedback_id},
            feedback_count=max(old.feedback_count - 1, 0),
        )
        self.outcome.feedback_removed.append((old_case_id, data.feedback_id))
        self._emit(
            old_case_id,
            CaseSplitEvent(
                id=caused_event_id(event.id, "split"),
                source=SOURCE,
                time=event.time,
                subject=str(old_case_id),
                data=CaseSplit(
                    case_id=old_case_id,
                    status=old.status,
                    feedback_id=data.feedback_id,
                    new_case_id=data.case_id,
                    agent_id=event.data.link.split_by or "routing",
                    reason="a wrong merge was undone: the feedback has a case of its own",
                ),
            ),
        )
        self.outcome.counts["split"] += 1

    # ---- an event on a known case ----

    def _on_case(self, incoming: Incoming, case: CaseState) -> None:
        event = incoming.event
        action = self._action_of(incoming)
        self._record_incoming(case.case_id, incoming)
        case = self._case(case.case_id)
        after = transition(case.status, action)
        if after is None:
            self._reject(case, incoming, refusal(case.status, action))
            return
        handler = getattr(self, f"_do_{action.value}")
        problem: str | None = handler(incoming, event, case, after)
        if problem is not None:
            self._reject(self._case(case.case_id), incoming, problem)

    def _action_of(self, incoming: Incoming) -> Action:
        if incoming.kind == "plan_proposed":
            return Action.PLAN_PROPOSED
        if incoming.kind == "routed":
            assert isinstance(incoming.event, CaseRoutedEvent)
            kind = incoming.event.data.link.kind
            return {
                "new_case": Action.ROUTED,
                "split": Action.ROUTED,
                "escalated": Action.ROUTED,
                "merged": Action.MERGED,
                "post_update": Action.POST_UPDATE,
            }[kind]
        return Action(agent_action_name(incoming.event.type))

    # Each _do_<action> applies an allowed action; it returns a reason to refuse it, or None.

    def _do_routed(self, incoming: Incoming, event: CaseRoutedEvent, case: CaseState, after: CaseStatus) -> None:
        data = event.data
        changes: dict[str, Any] = {"status": after}
        if data.lane == "primary":  # a copy for the PR desk leaves the case in its own queue
            changes.update(queue=data.queue, escalation_level=data.escalation_level)
        if data.feedback_id not in case.feedback_ids:
            changes["feedback_ids"] = case.feedback_ids | {data.feedback_id}
            changes["feedback_count"] = case.feedback_count + 1
            self.outcome.feedback_added.append((case.case_id, data.feedback_id, event.time))
        case = self._set(case.case_id, **changes)
        self._emit_routed(event, case, data.queue, data.escalation_level, data.lane)
        self.outcome.counts["routed_again"] += 1

    def _do_merged(self, incoming: Incoming, event: CaseRoutedEvent, case: CaseState, after: CaseStatus) -> None:
        data = event.data
        if data.lane == "primary" and data.queue is not case.queue:
            case = self._set(case.case_id, queue=data.queue)  # routing moved the case (out of the AI lane)
        if data.feedback_id in case.feedback_ids:
            return  # the same merged feedback delivered to one more queue: on record already
        case = self._set(
            case.case_id,
            feedback_ids=case.feedback_ids | {data.feedback_id},
            feedback_count=case.feedback_count + 1,
        )
        self.outcome.feedback_added.append((case.case_id, data.feedback_id, event.time))
        basis = data.link.match_basis or ("customer_token" if data.customer_ref else "explicit_reference")
        merged_id = caused_event_id(event.id, "merged")
        at = data.received_at or event.time
        subject = str(case.case_id)
        self._emit_json(
            case.case_id,
            CaseMergedEvent,
            merged_id,
            at,
            _tracking_json(
                CaseMergedEvent,
                merged_id,
                at,
                subject,
                {
                    "case_id": subject,
                    "status": case.status._value_,
                    "feedback_id": str(data.feedback_id),
                    "channel": data.channel._value_,
                    "match_basis": basis,
                    "new_facts": data.link.new_facts,
                },
            ),
        )
        self.outcome.counts["merged"] += 1

    def _do_post_update(self, incoming: Incoming, event: CaseRoutedEvent, case: CaseState, after: CaseStatus) -> None:
        self.outcome.counts["post_updates"] += 1

    def _do_plan_proposed(
        self, incoming: Incoming, event: PlanProposedEvent, case: CaseState, after: CaseStatus
    ) -> None:
        data = event.data
        for proposal in data.proposals:
            if proposal.plan_id in self.world.proposals:
                continue
            self.world.proposals[proposal.plan_id] = ProposalRecord(
                proposal.plan_id, case.case_id, data.request_id, proposal, event.time
            )
            self.outcome.new_proposals.append(proposal.plan_id)
        best = min(data.proposals, key=lambda p: p.rank, default=None)
        self._emit(
            case.case_id,
            PlanProposedStepEvent(
                id=caused_event_id(event.id, "plan_proposed"),
                source=SOURCE,
                time=event.time,
                subject=str(case.case_id),
                data=PlanProposedStep(
                    case_id=case.case_id,
                    status=case.status,
                    request_id=data.request_id,
                    proposals=len(data.proposals),
                    best_plan_id=best.plan_id if best else None,
                ),
            ),
        )

    def _do_case_accepted(self, incoming: Incoming, event: AgentEvent, case: CaseState, after: CaseStatus) -> None:
        self._set(case.case_id, assigned_agent=event.data.agent_id)

    def _do_contacted(self, incoming: Incoming, event: AgentEvent, case: CaseState, after: CaseStatus) -> None:
        data = event.data
        first_in_this_round = case.status in (S.ROUTED, S.REOPENED)
        case = self._set(
            case.case_id,
            status=after,
            first_contact_at=case.first_contact_at or event.time,
            failed_contact_attempts=0,
            assigned_agent=case.assigned_agent or data.agent_id,
        )
        if first_in_this_round:
            seconds = max(int((event.time - case.opened_at).total_seconds()), 0)
            self._emit(
                case.case_id,
                FirstContactEvent(
                    id=caused_event_id(event.id, "first_contact"),
                    source=SOURCE,
                    time=event.time,
                    subject=str(case.case_id),
                    data=FirstContact(
                        case_id=case.case_id,
                        status=after,
                        agent_id=data.agent_id,
                        contact_channel=data.contact_channel,
                        seconds_since_opened=seconds,
                    ),
                ),
            )

    def _do_contact_attempt_failed(
        self, incoming: Incoming, event: AgentEvent, case: CaseState, after: CaseStatus
    ) -> None:
        data = event.data
        case = self._set(case.case_id, failed_contact_attempts=case.failed_contact_attempts + 1)
        self._emit(
            case.case_id,
            ContactAttemptFailedEvent(
                id=caused_event_id(event.id, "contact_attempt_failed"),
                source=SOURCE,
                time=event.time,
                subject=str(case.case_id),
                data=ContactAttemptFailed(
                    case_id=case.case_id,
                    status=case.status,
                    agent_id=data.agent_id,
                    contact_channel=data.contact_channel,
                    failed_attempts=case.failed_contact_attempts,
                ),
            ),
        )

    def _do_note_added(self, incoming: Incoming, event: AgentEvent, case: CaseState, after: CaseStatus) -> None:
        return None

    _do_clock_paused = _do_note_added
    _do_clock_resumed = _do_note_added
    _do_clock_extended = _do_note_added  # on the audit trail; the SLA engine grants or refuses it
    _do_merge_undone = _do_note_added  # the split itself arrives from routing

    def _do_plan_requested(
        self, incoming: Incoming, event: AgentEvent, case: CaseState, after: CaseStatus
    ) -> str | None:
        account = self._account(case)
        if account is None:
            return self._no_account(case)
        case = self._set(case.case_id, status=after)
        data = event.data
        asked = data if isinstance(data, agent.PlanRequestedByAgent) else None
        self._request_plan(
            event.id,
            event.time,
            case,
            account,
            data.agent_id,
            None,
            hardship_reason=asked.hardship_reason if asked else None,
            preferred_kinds=list(asked.preferred_kinds) if asked else [],
        )
        return None

    def _do_plan_offered(self, incoming: Incoming, event: AgentEvent, case: CaseState, after: CaseStatus) -> str | None:
        data = event.data
        proposal = self.world.proposals.get(data.plan_id)
        if proposal is None or proposal.case_id != case.case_id:
            return f"plan {data.plan_id} was not proposed for this case"
        plan = self.world.plans.get(data.plan_id)
        if plan is not None and plan.status in (PlanStatus.ACTIVE, PlanStatus.BROKEN, PlanStatus.COMPLETED):
            return f"plan {data.plan_id} is {plan.status.value}; it cannot be offered again"
        schedule = proposal.schedule()
        self._put_plan(
            PlanState(
                plan_id=data.plan_id,
                case_id=case.case_id,
                request_id=proposal.request_id,
                status=PlanStatus.OFFERED,
                currency=proposal.proposal.instalment.currency,
                instalment=proposal.proposal.instalment.amount,
                schedule=schedule,
                offered_at=event.time,
                updated_at=event.time,
            )
        )
        case = self._set(case.case_id, status=after)
        self._emit(
            case.case_id,
            PlanOfferedStepEvent(
                id=caused_event_id(event.id, "plan_offered"),
                source=SOURCE,
                time=event.time,
                subject=str(case.case_id),
                data=PlanOfferedStep(
                    case_id=case.case_id,
                    status=after,
                    plan_id=data.plan_id,
                    agent_id=data.agent_id,
                    instalment=proposal.proposal.instalment,
                    instalments=len(schedule),
                ),
            ),
        )
        return None

    def _offered_plan(self, case: CaseState, plan_id: uuid.UUID) -> PlanState | str:
        plan = self.world.plans.get(plan_id)
        if plan is None or plan.case_id != case.case_id:
            return f"plan {plan_id} was never offered on this case"
        if plan.status is not PlanStatus.OFFERED:
            return f"plan {plan_id} is {plan.status.value}, not on offer"
        return plan

    def _do_customer_accepted(
        self, incoming: Incoming, event: AgentEvent, case: CaseState, after: CaseStatus
    ) -> str | None:
        data = event.data
        plan = self._offered_plan(case, data.plan_id)
        if isinstance(plan, str):
            return plan
        for other in list(self.world.plans.values()):
            if other.case_id == case.case_id and other.status is PlanStatus.OFFERED and other.plan_id != plan.plan_id:
                self._put_plan(replace(other, status=PlanStatus.SUPERSEDED, updated_at=event.time))
        plan = self._put_plan(replace(plan, status=PlanStatus.ACTIVE, updated_at=event.time))
        case = self._set(case.case_id, status=after)
        subject = str(case.case_id)
        self._emit(
            case.case_id,
            PlanAcceptedEvent(
                id=caused_event_id(event.id, "plan_accepted"),
                source=SOURCE,
                time=event.time,
                subject=subject,
                data=PlanAccepted(case_id=case.case_id, status=after, plan_id=plan.plan_id, agent_id=data.agent_id),
            ),
        )
        self._emit(
            case.case_id,
            PlanActiveEvent(
                id=caused_event_id(event.id, "plan_active"),
                source=SOURCE,
                time=event.time,
                subject=subject,
                data=PlanActive(
                    case_id=case.case_id,
                    status=after,
                    plan_id=plan.plan_id,
                    instalments=len(plan.schedule),
                    instalment=_money(plan.instalment, plan.currency),
                    first_due_date=plan.schedule[0].due_date,
                ),
            ),
        )
        self.outcome.counts["plans_active"] += 1
        return None

    def _do_customer_declined(
        self, incoming: Incoming, event: AgentEvent, case: CaseState, after: CaseStatus
    ) -> str | None:
        data = event.data
        plan = self._offered_plan(case, data.plan_id)
        if isinstance(plan, str):
            return plan
        self._put_plan(replace(plan, status=PlanStatus.DECLINED, updated_at=event.time))
        self._emit(
            case.case_id,
            PlanDeclinedEvent(
                id=caused_event_id(event.id, "plan_declined"),
                source=SOURCE,
                time=event.time,
                subject=str(case.case_id),
                data=PlanDeclined(
                    case_id=case.case_id, status=after, plan_id=plan.plan_id, agent_id=data.agent_id, reason=data.reason
                ),
            ),
        )
        return None

    def _do_customer_countered(
        self, incoming: Incoming, event: AgentEvent, case: CaseState, after: CaseStatus
    ) -> str | None:
        data = event.data
        plan = self._offered_plan(case, data.plan_id)
        if isinstance(plan, str):
            return plan
        self._put_plan(replace(plan, status=PlanStatus.COUNTERED, updated_at=event.time))
        preferred = (
            _money(data.proposed_instalment.amount, data.proposed_instalment.currency)
            if data.proposed_instalment is not None
            else None
        )
        account = self._account(case)
        self._emit(
            case.case_id,
            PlanCounteredEvent(
                id=caused_event_id(event.id, "plan_countered"),
                source=SOURCE,
                time=event.time,
                subject=str(case.case_id),
                data=PlanCountered(
                    case_id=case.case_id,
                    status=after,
                    plan_id=plan.plan_id,
                    agent_id=data.agent_id,
                    proposed_instalment=preferred,
                    proposed_term_months=data.proposed_term_months,
                    replan_requested=account is not None,
                ),
            ),
        )
        if account is not None:
            self._request_plan(event.id, event.time, case, account, data.agent_id, preferred)
        return None

    def _active_plan(self, case: CaseState, plan_id: uuid.UUID, number: int) -> PlanState | str:
        plan = self.world.plans.get(plan_id)
        if plan is None or plan.case_id != case.case_id:
            return f"plan {plan_id} is not a plan of this case"
        if plan.status is not PlanStatus.ACTIVE:
            return f"plan {plan_id} is {plan.status.value}, not active"
        if plan.scheduled(number) is None:
            return f"plan {plan_id} has no instalment {number} (it has {len(plan.schedule)})"
        if number in plan.paid:
            return f"instalment {number} of plan {plan_id} is already paid"
        return plan

    def _do_payment_received(
        self, incoming: Incoming, event: AgentEvent, case: CaseState, after: CaseStatus
    ) -> str | None:
        data = event.data
        plan = self._active_plan(case, data.plan_id, data.instalment_number)
        if isinstance(plan, str):
            return plan
        if data.amount.currency != plan.currency:
            return f"payment in {data.amount.currency} on a plan in {plan.currency}"
        plan = self._put_plan(
            replace(
                plan,
                paid=plan.paid | {data.instalment_number},
                missed=plan.missed - {data.instalment_number},
                paid_total=plan.paid_total + data.amount.amount,
                updated_at=event.time,
            )
        )
        subject = str(case.case_id)
        self._emit(
            case.case_id,
            InstalmentPaidEvent(
                id=caused_event_id(event.id, "instalment_paid"),
                source=SOURCE,
                time=event.time,
                subject=subject,
                data=InstalmentPaid(
                    case_id=case.case_id,
                    status=after,
                    plan_id=plan.plan_id,
                    instalment_number=data.instalment_number,
                    amount=_money(data.amount.amount, data.amount.currency),
                ),
            ),
        )
        if len(plan.paid) < len(plan.schedule):
            return None
        # Paid in full: the plan is complete and the case resolved (with its follow-up armed).
        plan = self._put_plan(replace(plan, status=PlanStatus.COMPLETED))
        case = self._resolve(case, event.time, Resolution.PLAN_AGREED)
        self._emit(
            case.case_id,
            PlanCompletedEvent(
                id=caused_event_id(event.id, "plan_completed"),
                source=SOURCE,
                time=event.time,
                subject=subject,
                data=PlanCompleted(
                    case_id=case.case_id,
                    status=S.RESOLVED,
                    plan_id=plan.plan_id,
                    total_repaid=_money(plan.paid_total, plan.currency),
                ),
            ),
        )
        self._emit_resolved(event, case, Resolution.PLAN_AGREED, TRACKER_AGENT)
        self.outcome.counts["plans_completed"] += 1
        return None

    def _do_payment_missed(
        self, incoming: Incoming, event: AgentEvent, case: CaseState, after: CaseStatus
    ) -> str | None:
        data = event.data
        number = data.instalment_number
        plan = self._active_plan(case, data.plan_id, number)
        if isinstance(plan, str):
            return plan
        if number in plan.missed:
            return f"instalment {number} of plan {plan.plan_id} is already recorded as missed"
        scheduled = plan.scheduled(number)
        assert scheduled is not None
        plan = self._put_plan(replace(plan, missed=plan.missed | {number}, updated_at=event.time))
        subject = str(case.case_id)
        self._emit(
            case.case_id,
            InstalmentMissedEvent(
                id=caused_event_id(event.id, "instalment_missed"),
                source=SOURCE,
                time=event.time,
                subject=subject,
                data=InstalmentMissed(
                    case_id=case.case_id,
                    status=after,
                    plan_id=plan.plan_id,
                    instalment_number=number,
                    amount_due=_money(scheduled.payment, plan.currency),
                    due_date=data.due_date,
                ),
            ),
        )
        limit = self.config.plan_broken_after_missed
        if len(plan.missed) < limit:
            return None
        # Broken: negotiation reopens, and the planner is asked again with what the bank knows now.
        plan = self._put_plan(replace(plan, status=PlanStatus.BROKEN))
        case = self._set(case.case_id, status=S.NEGOTIATING)
        numbers = ", ".join(str(n) for n in sorted(plan.missed))
        self._emit(
            case.case_id,
            PlanBrokenEvent(
                id=caused_event_id(event.id, "plan_broken"),
                source=SOURCE,
                time=event.time,
                subject=subject,
                data=PlanBroken(
                    case_id=case.case_id,
                    status=S.NEGOTIATING,
                    plan_id=plan.plan_id,
                    missed_instalments=len(plan.missed),
                    reason=f"{len(plan.missed)} instalments missed and unpaid ({numbers}); "
                    f"a plan breaks at {limit} missed",
                ),
            ),
        )
        self.outcome.counts["plans_broken"] += 1
        account = self._account(case)
        if account is not None:
            self._request_plan(event.id, event.time, case, account, "tracker", None)
        return None

    def _do_resolved(self, incoming: Incoming, event: AgentEvent, case: CaseState, after: CaseStatus) -> None:
        data = event.data
        case = self._resolve(case, event.time, data.resolution)
        self._emit_resolved(event, case, data.resolution, data.agent_id)

    def _resolve(self, case: CaseState, at: datetime, resolution: Resolution) -> CaseState:
        self.outcome.timers[(case.case_id, "follow_up")] = at + self.config.follow_up_after
        self.outcome.timers[(case.case_id, "close")] = None
        self.outcome.counts["resolved"] += 1
        return self._set(case.case_id, status=S.RESOLVED, resolved_at=at, resolution=resolution)

    def _emit_resolved(self, event: AgentEvent, case: CaseState, resolution: Resolution, agent_id: str) -> None:
        self._emit(
            case.case_id,
            CaseResolvedEvent(
                id=caused_event_id(event.id, "resolved"),
                source=SOURCE,
                time=event.time,
                subject=str(case.case_id),
                data=CaseResolved(case_id=case.case_id, status=S.RESOLVED, resolution=resolution, agent_id=agent_id),
            ),
        )

    def _do_follow_up_done(self, incoming: Incoming, event: AgentEvent, case: CaseState, after: CaseStatus) -> None:
        data = event.data
        case = self._set(case.case_id, status=after)
        self.outcome.timers[(case.case_id, "follow_up")] = None
        self.outcome.timers[(case.case_id, "close")] = event.time + self.config.close_after
        self._emit(
            case.case_id,
            FollowedUpEvent(
                id=caused_event_id(event.id, "followed_up"),
                source=SOURCE,
                time=event.time,
                subject=str(case.case_id),
                data=FollowedUp(
                    case_id=case.case_id, status=after, satisfaction=data.satisfaction, comment=data.comment
                ),
            ),
        )

    def _do_escalated(self, incoming: Incoming, event: AgentEvent, case: CaseState, after: CaseStatus) -> None:
        data = event.data
        case = self._set(case.case_id, queue=data.to_queue, escalation_level=case.escalation_level + 1)
        self._emit_routed(event, case, data.to_queue, case.escalation_level)

    def _do_reopened(self, incoming: Incoming, event: AgentEvent, case: CaseState, after: CaseStatus) -> None:
        data = event.data
        case = self._set(case.case_id, status=after, resolved_at=None, resolution=None)
        self.outcome.timers[(case.case_id, "follow_up")] = None
        self.outcome.timers[(case.case_id, "close")] = None
        self._emit(
            case.case_id,
            CaseReopenedEvent(
                id=caused_event_id(event.id, "reopened"),
                source=SOURCE,
                time=event.time,
                subject=str(case.case_id),
                data=CaseReopened(case_id=case.case_id, status=after, reason=data.reason, agent_id=data.agent_id),
            ),
        )

    # ---- plans ----

    def _put_plan(self, plan: PlanState) -> PlanState:
        self.world.plans[plan.plan_id] = plan
        self.outcome.changed_plans.add(plan.plan_id)
        return plan

    def _account(self, case: CaseState) -> AccountSnapshot | None:
        return self.world.accounts.get(case.customer_ref) if case.customer_ref else None

    def _no_account(self, case: CaseState) -> str:
        if case.customer_ref is None:
            return "the customer is not identified, so the tracker knows no debt to plan for"
        return "no account snapshot for this customer: load the core-banking extract with `parley accounts load`"

    def _request_plan(
        self,
        cause_id: uuid.UUID,
        at: datetime,
        case: CaseState,
        account: AccountSnapshot,
        requested_by: str,
        preferred_instalment: Money | None,
        *,
        hardship_reason: HardshipReason | None = None,
        preferred_kinds: list[PlanKind] | None = None,
    ) -> None:
        request = PlanRequested(
            request_id=caused_event_id(cause_id, "plan_request"),
            case_id=case.case_id,
            customer_ref=case.customer_ref,
            requested_by=requested_by,
            jurisdiction=case.jurisdiction or self.config.jurisdiction,
            debt=account.debt,
            income=account.income,
            preferred_instalment=preferred_instalment,
            hardship_reason=hardship_reason,
            preferred_kinds=preferred_kinds or [],
            as_of=at.date(),
        )
        self._emit(
            case.case_id,
            PlanRequestedEvent(
                id=caused_event_id(cause_id, "plan_requested"),
                source=SOURCE,
                time=at,
                subject=str(case.case_id),
                data=request,
            ),
            topic="plan_requested",
        )
        self.outcome.counts["plans_requested"] += 1


# ---------------------------------------------------------------------------------------------
# Agent event types
# ---------------------------------------------------------------------------------------------

AGENT_PREFIX = "com.parley.agent."


def agent_action_name(event_type: str) -> str:
    """``com.parley.agent.contacted.v1`` -> ``contacted``."""
    return event_type.removeprefix(AGENT_PREFIX).rsplit(".", 1)[0]


def _agent_models() -> dict[str, type[ReceivedCloudEvent[Any]]]:
    models: dict[str, type[ReceivedCloudEvent[Any]]] = {}
    for value in vars(agent).values():
        if (
            isinstance(value, type)
            and issubclass(value, ReceivedCloudEvent)
            and "[" not in value.__name__
            and isinstance(value.model_fields.get("type") and value.model_fields["type"].default, str)
        ):
            models[value.model_fields["type"].default] = value
    return models


AGENT_EVENT_MODELS = _agent_models()
"""Every agent action the tracker understands, by CloudEvents type."""
assert {agent_action_name(t) for t in AGENT_EVENT_MODELS} <= {a.value for a in Action}, "an agent action lacks a rule"


def peek_type(value: bytes) -> str | None:
    """The CloudEvents ``type`` of a record, or None when it has none."""
    try:
        body = json.loads(value)
    except ValueError:
        return None
    kind = body.get("type") if isinstance(body, dict) else None
    return kind if isinstance(kind, str) else None
