"""Pure routing: (triaged feedback or agent action, what routing knows, rules, now) -> deliveries and alerts.

Routing owns case identity. For each triaged feedback it decides whether the feedback opens a case or
joins an open one (the customer's newest open case about the same problem, or, for anyone, the case
an explicit reference names: the quoted case id, the same regulator referral, the same social post);
identifiers that conflict never merge. It then places the case in a queue by the rules (first
matching filter, its first target; a full queue sends low-priority simple inquiries to the AI lane),
escalates to the next target when nobody accepts in time, and brings the PR desk in when a social post
spreads. Every decision carries its reasons.

Nothing here does I/O or reads the clock: the caller loads a ``RoutingState`` (the cases, keys, posts
and backlog the batch touches), calls these functions in order, and persists ``state.changes``.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum

from schemas.agent import CaseAccepted, MergeUndone, Reopened, Resolved
from schemas.channels import Channel, RegulatorDetails, SocialDetails
from schemas.feedback import Language
from schemas.reputation import ViralityComponents, ViralPost, ViralPostEvent
from schemas.routing import CaseLink, CaseRouted, CaseRoutedEvent, RoutingReason
from schemas.sla import Severity
from schemas.triage import CaseTriaged, SentimentLabel
from schemas.values import Category, Flag, Priority, Queue
from services.routing.rules import PUBLIC_OPINION_FILTER_NAME, CaseView, Filter, Match, RoutingRules
from services.routing.virality import (
    Observation,
    RateAverage,
    Reach,
    Virality,
    baseline_rate,
    first_average,
    reposts_per_hour,
    score,
)

SOURCE = "/parley/routing"
# Case ids derive from the feedback that opened the case (the tracker used the same namespace before
# routing owned identity, so ids stay stable); event ids derive from their cause, so a replay repeats them.
CASE_ID_NAMESPACE = uuid.UUID("0d6f1e53-8a47-4c1b-b0f2-3e9c2a7d5f10")
ROUTED_ID_NAMESPACE = uuid.UUID("3b9e6d42-7c1a-4f85-a0d3-5e2b8c4f1a97")
ALERT_ID_NAMESPACE = uuid.UUID("c4a71f08-2e5d-4b93-8f6a-1d0e9b3c7a52")
REASON_LIMIT = 500
PRIORITY_RANK = {Priority.P1: 1, Priority.P2: 2, Priority.P3: 3, Priority.P4: 4}


_VERSION_5_CLEAR = ~((0xF000 << 64) | (0xC000 << 48))
_VERSION_5_SET = (0x5000 << 64) | (0x8000 << 48)  # version 5, RFC 4122 variant


def _uuid5(namespace: bytes, name: str) -> uuid.UUID:
    """``uuid.uuid5`` (the same ids), with the namespace's bytes given and the version bits set in one step."""
    digest = hashlib.sha1(namespace + name.encode(), usedforsecurity=False).digest()
    return uuid.UUID(int=(int.from_bytes(digest[:16]) & _VERSION_5_CLEAR) | _VERSION_5_SET)


_CASE_ID_NAMESPACE = CASE_ID_NAMESPACE.bytes
_ROUTED_ID_NAMESPACE = ROUTED_ID_NAMESPACE.bytes


def case_id_for(feedback_id: uuid.UUID) -> uuid.UUID:
    """The id of the case a feedback opens (also the id it gets when an agent splits it off a case)."""
    return _uuid5(_CASE_ID_NAMESPACE, str(feedback_id))


def more_urgent(priority: Priority, other: Priority | None) -> Priority:
    if other is None:
        return priority
    return priority if PRIORITY_RANK[priority] <= PRIORITY_RANK[other] else other


def received_at_of(data: CaseTriaged) -> datetime:
    """When the feedback arrived (the case's clocks start there); events from before triage carried
    it, the triage time stands in (triage runs moments after arrival)."""
    return data.received_at or data.triaged_at


def post_key(details: SocialDetails) -> str:
    return f"post:{details.platform.value}:{details.post_id}"


def regulator_key(details: RegulatorDetails) -> str:
    return f"regulator:{details.regulator.value}:{details.source_reference}"


_VIEWS: dict[tuple[object, ...], CaseView] = {}
_VIEWS_LIMIT = 20_000


def _view(
    category: Category,
    channel: Channel,
    priority: Priority,
    sentiment: SentimentLabel,
    language: Language,
    flags: Iterable[Flag],
    human_required: bool,
) -> CaseView:
    """The rules' view of these facts; one shared (frozen) object per distinct facts."""
    flag_set = frozenset(flags)
    key = (category, channel, priority, sentiment, language, flag_set, human_required)
    view = _VIEWS.get(key)
    if view is None:
        if len(_VIEWS) >= _VIEWS_LIMIT:
            _VIEWS.clear()
        view = _VIEWS[key] = CaseView(
            category=category,
            channel=channel,
            priority=priority,
            sentiment=sentiment,
            language=language,
            flags=flag_set,
            human_required=human_required,
        )
    return view


def view_of(data: CaseTriaged) -> CaseView:
    return _view(
        data.category, data.channel, data.priority, data.sentiment.label, data.language, data.flags, data.human_required
    )


def _duration(seconds: int) -> str:
    if seconds % 86400 == 0:
        return f"{seconds // 86400}d"
    if seconds % 3600 == 0:
        return f"{seconds // 3600}h"
    if seconds % 60 == 0:
        return f"{seconds // 60}m"
    return f"{seconds}s"


_REASONS: dict[tuple[str, str], RoutingReason] = {}
_REASONS_LIMIT = 10_000


def _reason(kind: str, detail: str) -> RoutingReason:
    """A reason; one shared (frozen) object per text, as most texts repeat from case to case."""
    reason = _REASONS.get((kind, detail))
    if reason is None:
        text = detail if len(detail) <= REASON_LIMIT else detail[: REASON_LIMIT - 1] + "…"
        reason = RoutingReason.model_validate({"kind": kind, "detail": text})
        if len(_REASONS) >= _REASONS_LIMIT:
            _REASONS.clear()
        _REASONS[kind, detail] = reason
    return reason


_NEW_CASE = CaseLink(kind="new_case")
_ESCALATED = CaseLink(kind="escalated")


# ---- what routing knows ----


class Lane(StrEnum):
    PRIMARY = "primary"
    PUBLIC_OPINION = "public_opinion"


@dataclass
class Assignment:
    """Where a case waits (or waited) for an agent, in one lane."""

    lane: Lane
    queue: Queue
    filter_name: str
    target_index: int
    timeout_seconds: int
    escalation_level: int
    overflow: bool
    priority: Priority
    feedback_id: uuid.UUID
    """The feedback whose text travels with an escalation (the case's latest)."""
    routed_at: datetime
    due_at: datetime | None
    """When it escalates if still not accepted; None: accepted, closed, or no target left."""
    waiting: bool = True
    """Counted in the queue's backlog: routed there and not accepted (nor resolved) yet."""
    accepted_at: datetime | None = None
    accepted_by: str | None = None


@dataclass
class CaseState:
    case_id: uuid.UUID
    customer_ref: str | None
    is_open: bool
    problem_group: str
    categories: set[Category]
    flags: set[Flag]
    priority: Priority
    human_required: bool
    regulator_refs: set[str]
    opened_at: datetime
    updated_at: datetime
    opening_feedback_id: uuid.UUID
    assignments: dict[Lane, Assignment] = field(default_factory=dict)
    split_from: uuid.UUID | None = None


@dataclass
class FeedbackRecord:
    """A feedback routing placed on a case, kept for escalations and splits (text masked)."""

    feedback_id: uuid.UUID
    case_id: uuid.UUID
    triaged: CaseTriaged
    received_at: datetime
    source: bytes | None = field(default=None, compare=False, repr=False)
    """The case.triaged event (JSON) ``triaged`` is the data of, when the caller has it: stored as it came."""


@dataclass
class PostState:
    post_key: str
    account_key: str
    last: Observation
    posted_at: datetime
    observations: int
    score: float
    alert_level: int
    """0 none; 1 warning alert raised; 2 critical alert raised."""


@dataclass
class Changes:
    """What the store must write after a batch (everything else it loaded is unchanged)."""

    cases: set[uuid.UUID] = field(default_factory=set)
    new_keys: set[str] = field(default_factory=set)
    moved_keys: set[str] = field(default_factory=set)
    feedback: set[uuid.UUID] = field(default_factory=set)
    assignments: set[tuple[uuid.UUID, Lane]] = field(default_factory=set)
    posts: set[str] = field(default_factory=set)
    averages: set[str] = field(default_factory=set)
    waiting: Counter[Queue] = field(default_factory=Counter)
    routed: Counter[Queue] = field(default_factory=Counter)
    accepted: Counter[Queue] = field(default_factory=Counter)
    overflowed: Counter[Queue] = field(default_factory=Counter)
    """Cases each queue sent to the AI lane because it was full (counted on the full queue)."""
    escalated: Counter[Queue] = field(default_factory=Counter)


@dataclass
class RoutingState:
    """The part of routing's tables a batch touches, loaded by the store; updated in place by this module."""

    cases: dict[uuid.UUID, CaseState] = field(default_factory=dict)
    open_cases_by_customer: dict[str, list[uuid.UUID]] = field(default_factory=dict)
    """Every open case of each customer in the batch (the store loads them all)."""
    keys: dict[str, tuple[uuid.UUID, uuid.UUID]] = field(default_factory=dict)
    """Explicit references (a social post, a regulator referral) -> (case id, feedback that brought it)."""
    feedback: dict[uuid.UUID, FeedbackRecord] = field(default_factory=dict)
    """Feedback whose triage a decision needs (a split, an escalation), with the case it is on."""
    placed: set[uuid.UUID] = field(default_factory=set)
    """Feedback already on a case (a second triage of one changes nothing)."""
    posts: dict[str, PostState] = field(default_factory=dict)
    averages: dict[str, RateAverage] = field(default_factory=dict)
    backlog: Counter[Queue] = field(default_factory=Counter)
    changes: Changes = field(default_factory=Changes)

    def customer_cases(self, customer_ref: str) -> list[uuid.UUID]:
        return self.open_cases_by_customer.setdefault(customer_ref, [])

    def touch(self, case: CaseState) -> None:
        self.cases[case.case_id] = case
        self.changes.cases.add(case.case_id)

    def assign(self, case: CaseState, assignment: Assignment) -> None:
        """Put the case in a queue (replacing the lane's earlier assignment, which leaves its backlog)."""
        earlier = case.assignments.get(assignment.lane)
        if earlier is not None and earlier.waiting:
            self._leave(earlier.queue)
        case.assignments[assignment.lane] = assignment
        self.backlog[assignment.queue] += 1
        self.changes.waiting[assignment.queue] += 1
        self.changes.routed[assignment.queue] += 1
        self.changes.assignments.add((case.case_id, assignment.lane))
        self.touch(case)

    def stop_waiting(self, case: CaseState, assignment: Assignment) -> None:
        if assignment.waiting:
            assignment.waiting = False
            self._leave(assignment.queue)
        assignment.due_at = None
        self.changes.assignments.add((case.case_id, assignment.lane))

    def _leave(self, queue: Queue) -> None:
        self.backlog[queue] -= 1
        self.changes.waiting[queue] -= 1

    def add_key(self, key: str, case_id: uuid.UUID, feedback_id: uuid.UUID) -> None:
        known = self.keys.get(key)
        if known is not None and known[0] == case_id:
            return
        self.keys[key] = (case_id, feedback_id)
        (self.changes.moved_keys if known is not None else self.changes.new_keys).add(key)


# ---- what comes out ----


@dataclass(frozen=True)
class Delivery:
    """A case.routed event for one queue (text still masked: the caller reveals the queue's visible kinds)."""

    queue: Queue
    event: CaseRoutedEvent


@dataclass(frozen=True)
class Alert:
    event: ViralPostEvent


Output = Delivery | Alert


@dataclass(frozen=True)
class Placement:
    filter: Filter
    target_index: int
    queue: Queue
    priority: Priority
    timeout_seconds: int
    overflow: bool
    reasons: tuple[RoutingReason, ...]


def needs_person(view: CaseView) -> bool:
    return view.human_required or view.priority is Priority.P1


@dataclass(frozen=True)
class _Choice:
    """What a placement takes from the case's facts and the rules alone (the backlog decides the rest)."""

    filter: Filter
    target_index: int
    priority: Priority
    reasons: tuple[RoutingReason, ...]
    stays: bool
    """Never overflows: a P1 or human-required case (at the target's priority)."""
    may_overflow: bool
    """The overflow rule allows this case (at the target's priority) into the AI lane."""


class _Memo:
    """Answers of pure functions of one rules object (a batch asks the same questions again and again)."""

    LIMIT = 20_000  # distinct case facts remembered per rules object; then it starts afresh

    def __init__(self, rules: RoutingRules) -> None:
        self.rules = rules  # held, so the id this is filed under stays this object's
        self.choices: dict[tuple[CaseView, bool], _Choice] = {}
        self.groups: dict[Category, str] = {}
        self.overflow_allows = rules.overflow.allow.describe()


_MEMOS: dict[int, _Memo] = {}


def _memo(rules: RoutingRules) -> _Memo:
    memo = _MEMOS.get(id(rules))
    if memo is None or memo.rules is not rules:
        if len(_MEMOS) >= 8:  # tests build many rules objects; a worker has one
            _MEMOS.clear()
        memo = _MEMOS[id(rules)] = _Memo(rules)
    return memo


def problem_group(rules: RoutingRules, category: Category) -> str:
    groups = _memo(rules).groups
    group = groups.get(category)
    if group is None:
        group = groups[category] = rules.problem_group(category)
    return group


def _choose(view: CaseView, rules: RoutingRules, avoid_ai: bool) -> _Choice:
    """The first matching filter's first target (one a person works, when the case needs one)."""
    reasons: list[RoutingReason] = []
    chosen = next((rule for rule in rules.filters if rule.match.holds(view)), None)
    if chosen is not None:
        reasons.append(_reason("filter", f"filter {chosen.name!r} matched ({chosen.match.describe()})"))
    else:
        chosen = rules.default_filter.as_filter()
        reasons.append(_reason("default", "no filter matched: the default filter"))
    lane = rules.overflow.lane
    person = avoid_ai or needs_person(view)
    index = 0
    while person and index < len(chosen.targets) and chosen.targets[index].queue == lane:
        reasons.append(_reason("target", f"skipped target {index} ({lane.value}): this case needs a person"))
        index += 1
    if index == len(chosen.targets):
        chosen, index = rules.default_filter.as_filter(), 0
        reasons.append(_reason("default", "no target of the filter is worked by people: the default filter"))
    target = chosen.targets[index]
    priority = more_urgent(view.priority, target.priority)
    following = (
        f", then {chosen.targets[index + 1].queue.value}" if index + 1 < len(chosen.targets) else ", the last target"
    )
    reasons.append(
        _reason(
            "target",
            f"target {index} of {len(chosen.targets)}: {target.queue.value}, {priority.value}, "
            f"accept within {_duration(target.timeout)}{following}",
        )
    )
    as_priority = view.model_copy(update={"priority": priority})
    stays = needs_person(as_priority)
    return _Choice(chosen, index, priority, tuple(reasons), stays, rules.overflow.allow.holds(as_priority))


def place(
    view: CaseView, rules: RoutingRules, backlog: Counter[Queue], *, allow_overflow: bool = True, avoid_ai: bool = False
) -> Placement:
    """The first matching filter's first target (one a person works, when the case needs one), overflow applied."""
    memo = _memo(rules)
    choices = memo.choices
    key = (view, avoid_ai)
    choice = choices.get(key)
    if choice is None:
        if len(choices) >= _Memo.LIMIT:
            choices.clear()
        choice = choices[key] = _choose(view, rules, avoid_ai)
    chosen, index, priority = choice.filter, choice.target_index, choice.priority
    target = chosen.targets[index]
    lane = rules.overflow.lane
    queue, timeout, overflow = target.queue, target.timeout, False
    limit = rules.queues[queue].backlog_limit
    if not (allow_overflow and queue != lane and backlog[queue] >= limit):
        return Placement(chosen, index, queue, priority, timeout, overflow, choice.reasons)
    reasons = list(choice.reasons)
    full = f"{queue.value} holds {backlog[queue]} unaccepted cases (limit {limit})"
    if choice.stays:
        reasons.append(_reason("overflow", f"{full}, but a P1 or human-required case never overflows: it stays"))
    elif choice.may_overflow:
        queue, timeout, overflow = lane, rules.overflow.timeout, True
        reasons.append(
            _reason(
                "overflow",
                f"{full}: this {priority.value} {view.category.value} may overflow "
                f"({memo.overflow_allows}), so the AI lane {lane.value} takes it; back to "
                f"{target.queue.value} if not accepted within {_duration(timeout)}",
            )
        )
    else:
        reasons.append(_reason("overflow", f"{full}, but overflow allows only {memo.overflow_allows}"))
    return Placement(chosen, index, queue, priority, timeout, overflow, tuple(reasons))


def _place_and_assign(
    case: CaseState, placement: Placement, feedback_id: uuid.UUID, state: RoutingState, now: datetime
) -> Assignment:
    assignment = _assignment(placement, Lane.PRIMARY, feedback_id, 0, now)
    state.assign(case, assignment)
    if placement.overflow:
        state.changes.overflowed[placement.filter.targets[placement.target_index].queue] += 1
    return assignment


def _assignment(placement: Placement, lane: Lane, feedback_id: uuid.UUID, level: int, now: datetime) -> Assignment:
    return Assignment(
        lane=lane,
        queue=placement.queue,
        filter_name=placement.filter.name,
        target_index=placement.target_index,
        timeout_seconds=placement.timeout_seconds,
        escalation_level=level,
        overflow=placement.overflow,
        priority=placement.priority,
        feedback_id=feedback_id,
        routed_at=now,
        due_at=now + timedelta(seconds=placement.timeout_seconds),
    )


def _routed(
    event_id: uuid.UUID,
    case: CaseState,
    assignment: Assignment,
    data: CaseTriaged,
    received_at: datetime,
    link: CaseLink,
    reasons: list[RoutingReason],
    virality: float | None,
    rules: RoutingRules,
    now: datetime,
) -> Delivery:
    event = CaseRoutedEvent(
        id=event_id,
        source=SOURCE,
        time=now,
        subject=str(case.case_id),
        data=CaseRouted(
            case_id=case.case_id,
            feedback_id=data.feedback_id,
            queue=assignment.queue,
            priority=more_urgent(case.priority, assignment.priority),
            target_index=assignment.target_index,
            accept_within_seconds=assignment.timeout_seconds,
            escalation_level=assignment.escalation_level,
            overflow=assignment.overflow,
            reasons=reasons,
            customer_ref=data.customer_ref,
            channel=data.channel,
            language=data.language,
            category=data.category,
            flags=list(data.flags),
            sentiment=data.sentiment.label,
            virality_score=virality,
            text=data.text,
            visible_pii=sorted(rules.queues[assignment.queue].visible_pii),
            details=data.details,
            routed_at=now,
            link=link,
            received_at=received_at,
            priority_score=data.priority_score,
            lane=assignment.lane.value,
        ),
    )
    return Delivery(assignment.queue, event)


def routed_event_id(feedback_id: uuid.UUID, lane: Lane, suffix: str = "") -> uuid.UUID:
    return _uuid5(_ROUTED_ID_NAMESPACE, f"{feedback_id}:{lane.value}{suffix}")


# ---- case identity ----


@dataclass(frozen=True)
class Identity:
    case: CaseState | None
    """The open case the feedback joins; None: it opens a case of its own."""
    kind: str
    """new_case, merged or post_update."""
    basis: str | None
    reasons: tuple[str, ...]


def _conflict(data: CaseTriaged, case: CaseState) -> str | None:
    """Why the feedback cannot be the same problem as the case, whatever else matches."""
    if data.customer_ref and case.customer_ref and data.customer_ref != case.customer_ref:
        return "it belongs to another customer"
    if data.case_id is not None and data.case_id != case.case_id:
        return f"the feedback names another case ({data.case_id})"
    if (
        isinstance(data.details, RegulatorDetails)
        and case.regulator_refs
        and regulator_key(data.details) not in case.regulator_refs
    ):
        return "it is about another regulator referral"
    return None


def identify(data: CaseTriaged, state: RoutingState, rules: RoutingRules) -> Identity:
    """Which open case this feedback is about, if any, and why (or why not)."""
    notes: list[str] = []
    if data.case_id is not None:
        named = state.cases.get(data.case_id)
        if named is None:
            return Identity(
                None, "new_case", None, (f"names case {data.case_id}, unknown to routing: a case of its own",)
            )
        conflict = _conflict(data, named)
        if conflict:
            return Identity(None, "new_case", None, (f"names case {named.case_id} but {conflict}: not merged",))
        if not named.is_open:
            return Identity(
                None, "new_case", None, (f"names case {named.case_id}, which is resolved: a case of its own",)
            )
        return Identity(named, "merged", "explicit_reference", (f"names case {named.case_id}: merged into it",))
    explicit: list[tuple[str, str, str]] = []
    if isinstance(data.details, SocialDetails):
        explicit.append((post_key(data.details), "post_update", "the same social post"))
    if isinstance(data.details, RegulatorDetails):
        explicit.append((regulator_key(data.details), "merged", "the same regulator referral"))
    for key, kind, what in explicit:
        known = state.keys.get(key)
        if known is None:
            continue
        case = state.cases.get(known[0])
        if case is None:
            continue
        conflict = _conflict(data, case)
        if conflict:
            notes.append(f"{what} is on case {case.case_id} but {conflict}: not merged")
            return Identity(None, "new_case", None, tuple(notes))
        if case.is_open:
            return Identity(case, kind, "explicit_reference", (*notes, f"{what}: case {case.case_id}"))
        notes.append(f"{what} was on case {case.case_id}, now resolved")
    if data.customer_ref is None:
        notes.append("anonymous, with no reference to an open case: a case of its own")
        return Identity(None, "new_case", None, tuple(notes))
    group = problem_group(rules, data.category)
    candidates = [state.cases[case_id] for case_id in state.customer_cases(data.customer_ref)]
    candidates = [case for case in candidates if case.is_open]
    candidates.sort(key=lambda case: (case.updated_at, str(case.case_id)), reverse=True)
    same_problem = [case for case in candidates if case.problem_group == group]
    for case in same_problem:
        conflict = _conflict(data, case)
        if conflict is None:
            return Identity(
                case,
                "merged",
                "customer_token",
                (*notes, f"same customer, same problem (group {group}): their newest open case {case.case_id}"),
            )
        notes.append(f"the customer's case {case.case_id} is about the same problem but {conflict}: not merged")
    if candidates and not same_problem:
        notes.append(f"the customer has {len(candidates)} open case(s), none about this problem (group {group})")
    notes.append("a case of its own" if candidates else "no open case of this customer: a case of its own")
    return Identity(None, "new_case", None, tuple(notes))


def _new_facts(data: CaseTriaged, case: CaseState) -> list[str]:
    facts = []
    new_flags = sorted(flag.value for flag in set(data.flags) - case.flags)
    if new_flags:
        facts.append(f"new flags {', '.join(new_flags)}")
    if data.category not in case.categories:
        facts.append(f"new category {data.category.value}")
    if PRIORITY_RANK[data.priority] < PRIORITY_RANK[case.priority]:
        facts.append(f"more urgent ({data.priority.value} over {case.priority.value})")
    if isinstance(data.details, RegulatorDetails) and regulator_key(data.details) not in case.regulator_refs:
        facts.append("a regulator referral")
    return facts


def _absorb(case: CaseState, data: CaseTriaged, received_at: datetime) -> None:
    case.categories.add(data.category)
    case.flags.update(data.flags)
    case.priority = more_urgent(case.priority, data.priority)
    case.human_required = case.human_required or data.human_required
    if isinstance(data.details, RegulatorDetails):
        case.regulator_refs.add(regulator_key(data.details))
    case.updated_at = max(case.updated_at, received_at)
    if case.customer_ref is None and data.customer_ref is not None:
        case.customer_ref = data.customer_ref  # an anonymous case, now identified by an explicit reference


def _case_view(case: CaseState, data: CaseTriaged) -> CaseView:
    return _view(
        data.category, data.channel, case.priority, data.sentiment.label, data.language, case.flags, case.human_required
    )


def _open_case(
    case_id: uuid.UUID, data: CaseTriaged, received_at: datetime, rules: RoutingRules, state: RoutingState
) -> CaseState:
    case = CaseState(
        case_id=case_id,
        customer_ref=data.customer_ref,
        is_open=True,
        problem_group=problem_group(rules, data.category),
        categories={data.category},
        flags=set(data.flags),
        priority=data.priority,
        human_required=data.human_required,
        regulator_refs={regulator_key(data.details)} if isinstance(data.details, RegulatorDetails) else set(),
        opened_at=received_at,
        updated_at=received_at,
        opening_feedback_id=data.feedback_id,
    )
    state.touch(case)
    if case.customer_ref is not None:
        state.customer_cases(case.customer_ref).append(case_id)
    return case


def _record_feedback(state: RoutingState, case: CaseState, data: CaseTriaged, received_at: datetime) -> None:
    state.feedback[data.feedback_id] = FeedbackRecord(data.feedback_id, case.case_id, data, received_at)
    state.placed.add(data.feedback_id)
    state.changes.feedback.add(data.feedback_id)
    if isinstance(data.details, SocialDetails):
        state.add_key(post_key(data.details), case.case_id, data.feedback_id)
    if isinstance(data.details, RegulatorDetails):
        state.add_key(regulator_key(data.details), case.case_id, data.feedback_id)


# ---- a triaged feedback ----


def on_triaged(data: CaseTriaged, state: RoutingState, rules: RoutingRules, now: datetime) -> list[Output]:
    """Open or join a case, place it, and bring in the PR desk when a social post spreads."""
    if data.feedback_id in state.placed or data.feedback_id in state.feedback:
        return []  # already routed (a second triage of the same feedback)
    received_at = received_at_of(data)
    identity = identify(data, state, rules)
    virality = _virality(data, state, rules, received_at) if isinstance(data.details, SocialDetails) else None
    outputs: list[Output] = []
    if identity.case is None:
        case_id = case_id_for(data.feedback_id)
        if case_id in state.cases:
            return []
        case = _open_case(case_id, data, received_at, rules, state)
        placement = place(view_of(data), rules, state.backlog)
        primary = _place_and_assign(case, placement, data.feedback_id, state, now)
        _record_feedback(state, case, data, received_at)
        link = _NEW_CASE
        reasons = [_reason("merge", note) for note in identity.reasons] + list(placement.reasons)
    else:
        case = identity.case
        facts = _new_facts(data, case)
        anonymous = case.customer_ref is None
        _absorb(case, data, received_at)
        if anonymous and case.customer_ref is not None:
            state.customer_cases(case.customer_ref).append(case.case_id)
        state.touch(case)
        _record_feedback(state, case, data, received_at)
        kind = "post_update" if identity.kind == "post_update" else "merged"
        link = CaseLink.model_validate({"kind": kind, "match_basis": identity.basis, "new_facts": bool(facts)})
        reasons = [_reason("merge", note) for note in identity.reasons]
        reasons.append(_reason("merge", f"new facts: {'; '.join(facts)}" if facts else "no new facts: a repeat"))
        primary = _primary_after_merge(case, data, rules, state, now, reasons)
    if virality is not None:
        reasons.append(_reason("public_opinion", virality.describe()))
    outputs.append(
        _routed(
            routed_event_id(data.feedback_id, Lane.PRIMARY),
            case,
            primary,
            data,
            received_at,
            link,
            reasons,
            virality.score if virality else None,
            rules,
            now,
        )
    )
    if virality is not None:
        outputs += _public_opinion(case, data, received_at, virality, link, rules, state, now)
    return outputs


def _primary_after_merge(
    case: CaseState,
    data: CaseTriaged,
    rules: RoutingRules,
    state: RoutingState,
    now: datetime,
    reasons: list[RoutingReason],
) -> Assignment:
    """The case's queue, unless the merged feedback means the AI lane may no longer hold it."""
    if Lane.PRIMARY not in case.assignments:  # a case that never had a queue (rules changed under it): place it
        placement = place(_case_view(case, data), rules, state.backlog)
        reasons.extend(placement.reasons)
        return _place_and_assign(case, placement, data.feedback_id, state, now)
    primary = case.assignments[Lane.PRIMARY]
    primary.feedback_id = data.feedback_id
    state.changes.assignments.add((case.case_id, Lane.PRIMARY))
    view = _case_view(case, data)
    if primary.queue == rules.overflow.lane and primary.waiting:
        condition = rules.overflow.allow if primary.overflow else _filter_match(rules, primary.filter_name)
        if needs_person(view) or (condition is not None and not condition.holds(view)):
            placement = place(view, rules, state.backlog, allow_overflow=False, avoid_ai=True)
            moved = _assignment(placement, Lane.PRIMARY, data.feedback_id, primary.escalation_level, now)
            state.assign(case, moved)
            reasons.append(_reason("merge", "the merged feedback means the AI lane may no longer hold the case"))
            reasons.extend(placement.reasons)
            return moved
    target = f"target {primary.target_index}" + (", overflow" if primary.overflow else "")
    reasons.append(_reason("target", f"delivered to the case's queue {primary.queue.value} ({target})"))
    return primary


def _filter_match(rules: RoutingRules, name: str) -> Match | None:
    found = rules.filter_named(name)
    return None if found is None else found.match


def _virality(data: CaseTriaged, state: RoutingState, rules: RoutingRules, received_at: datetime) -> Virality:
    """Score the post's figures against its previous observation and the usual rate, and remember both."""
    details = data.details
    assert isinstance(details, SocialDetails)
    settings = rules.public_opinion
    key = post_key(details)
    account_key = f"account:{details.platform.value}:{details.author_handle}"
    topic_key = f"topic:{data.category.value}"
    figures = details.reach
    current = Observation(Reach(figures.followers, figures.reposts, figures.comments, figures.likes), received_at)
    earlier = state.posts.get(key)
    rate = reposts_per_hour(
        current, earlier.last if earlier else None, details.posted_at, settings.baseline.min_elapsed_minutes
    )
    baseline = baseline_rate(state.averages.get(account_key), state.averages.get(topic_key), settings.baseline)
    result = score(current.reach, rate, baseline, data.sentiment.label, frozenset(data.flags), settings.weights)
    if earlier is None:
        state.posts[key] = PostState(key, account_key, current, details.posted_at, 1, result.score, 0)
    else:
        newer = current.observed_at >= earlier.last.observed_at
        earlier.last = current if newer else earlier.last
        earlier.observations += 1
        earlier.score = result.score if newer else earlier.score
    state.changes.posts.add(key)
    for scope in (account_key, topic_key):
        average = state.averages.get(scope)
        state.averages[scope] = (
            first_average(rate) if average is None else average.updated(rate, settings.baseline.smoothing)
        )
        state.changes.averages.add(scope)
    return result


def _public_opinion(
    case: CaseState,
    data: CaseTriaged,
    received_at: datetime,
    virality: Virality,
    link: CaseLink,
    rules: RoutingRules,
    state: RoutingState,
    now: datetime,
) -> list[Output]:
    settings = rules.public_opinion
    details = data.details
    assert isinstance(details, SocialDetails)
    outputs: list[Output] = []
    existing = case.assignments.get(Lane.PUBLIC_OPINION)
    primary = case.assignments[Lane.PRIMARY]
    if virality.score < settings.threshold:
        if existing is not None:  # the PR desk has the case: it sees every update of the post
            reasons = [_reason("public_opinion", f"{virality.describe()}; below {settings.threshold:g} now")]
            outputs.append(
                _routed(
                    routed_event_id(data.feedback_id, Lane.PUBLIC_OPINION),
                    case,
                    existing,
                    data,
                    received_at,
                    link,
                    reasons,
                    virality.score,
                    rules,
                    now,
                )
            )
        return outputs
    target = settings.targets[0]
    reasons = [
        _reason("public_opinion", f"{virality.describe()}: at or over the threshold {settings.threshold:g}"),
    ]
    if primary.queue == target.queue:
        reasons.append(_reason("public_opinion", f"the case is already in {target.queue.value}"))
    elif existing is None:
        placement = Placement(
            filter=rules.filter_named(PUBLIC_OPINION_FILTER_NAME) or rules.default_filter.as_filter(),
            target_index=0,
            queue=target.queue,
            priority=more_urgent(case.priority, target.priority),
            timeout_seconds=target.timeout,
            overflow=False,
            reasons=(),
        )
        existing = _assignment(placement, Lane.PUBLIC_OPINION, data.feedback_id, 0, now)
        state.assign(case, existing)
        reasons.append(
            _reason(
                "public_opinion",
                f"{target.queue.value} takes the case as well, accept within {_duration(target.timeout)}",
            )
        )
    else:
        existing.feedback_id = data.feedback_id
        state.changes.assignments.add((case.case_id, Lane.PUBLIC_OPINION))
    if existing is not None:
        outputs.append(
            _routed(
                routed_event_id(data.feedback_id, Lane.PUBLIC_OPINION),
                case,
                existing,
                data,
                received_at,
                link,
                reasons,
                virality.score,
                rules,
                now,
            )
        )
    post = state.posts[post_key(details)]
    level = 2 if virality.score >= settings.critical_threshold else 1
    if level > post.alert_level:
        post.alert_level = level
        outputs.append(_alert(case, data, received_at, virality, level, existing or primary, rules, now))
    return outputs


def _alert(
    case: CaseState,
    data: CaseTriaged,
    received_at: datetime,
    virality: Virality,
    level: int,
    assignment: Assignment,
    rules: RoutingRules,
    now: datetime,
) -> Alert:
    details = data.details
    assert isinstance(details, SocialDetails)
    settings = rules.public_opinion
    threshold = settings.critical_threshold if level == 2 else settings.threshold
    event = ViralPostEvent(
        id=uuid.uuid5(ALERT_ID_NAMESPACE, f"{case.case_id}:{post_key(details)}:{level}"),
        source=SOURCE,
        time=received_at,
        subject=str(case.case_id),
        data=ViralPost(
            case_id=case.case_id,
            feedback_id=data.feedback_id,
            platform=details.platform,
            post_id=details.post_id,
            url=details.url,
            virality_score=virality.score,
            threshold=threshold,
            severity=Severity.CRITICAL if level == 2 else Severity.WARNING,
            components=ViralityComponents(
                reach=virality.reach_points,
                velocity=virality.velocity_points,
                sentiment=virality.sentiment_points,
                threats=virality.threat_points,
            ),
            reach=details.reach,
            reposts_per_hour=virality.reposts_per_hour,
            baseline_reposts_per_hour=virality.baseline_reposts_per_hour,
            baseline=virality.baseline_source,
            sentiment=data.sentiment.label,
            flags=list(data.flags),
            priority=more_urgent(case.priority, assignment.priority),
            queue=assignment.queue,
            observed_at=received_at,
        ),
    )
    del now  # the alert's time is when the figures were read, so a replay repeats it
    return Alert(event)


# ---- escalation ----


def on_timeout(
    case: CaseState, lane: Lane, feedback: FeedbackRecord, rules: RoutingRules, state: RoutingState, now: datetime
) -> list[Output]:
    """Nobody accepted the case in time: the next target of its filter takes it (escalated)."""
    current = case.assignments.get(lane)
    if current is None or not current.waiting or current.due_at is None or current.due_at > now:
        return []
    rule = rules.filter_named(current.filter_name)
    if rule is None:  # the rules changed and the filter is gone: leave the case where it is
        current.due_at = None
        state.changes.assignments.add((case.case_id, lane))
        return []
    view = _case_view(case, feedback.triaged)
    if current.overflow:
        index = current.target_index  # the AI lane did not take it: back to the queue it overflowed from
        why = f"the AI lane {current.queue.value} did not accept within {_duration(current.timeout_seconds)}"
    else:
        index = current.target_index + 1
        why = f"not accepted in {current.queue.value} within {_duration(current.timeout_seconds)}"
        while index < len(rule.targets) and needs_person(view) and rule.targets[index].queue == rules.overflow.lane:
            index += 1
    if index >= len(rule.targets):
        current.due_at = None  # the last target: it stays (the SLA engine watches it from here)
        state.changes.assignments.add((case.case_id, lane))
        return []
    target = rule.targets[index]
    state.changes.escalated[current.queue] += 1
    level = current.escalation_level + 1
    moved = Assignment(
        lane=lane,
        queue=target.queue,
        filter_name=rule.name,
        target_index=index,
        timeout_seconds=target.timeout,
        escalation_level=level,
        overflow=False,
        priority=more_urgent(current.priority, target.priority),
        feedback_id=current.feedback_id,
        routed_at=now,
        due_at=now + timedelta(seconds=target.timeout),
    )
    state.assign(case, moved)
    following = f", then {rule.targets[index + 1].queue.value}" if index + 1 < len(rule.targets) else ""
    reasons = [
        _reason(
            "escalation",
            f"{why} (routed {current.routed_at.isoformat()}): target {index} of {len(rule.targets)} of "
            f"filter {rule.name!r}, {target.queue.value}, accept within {_duration(target.timeout)}{following}",
        )
    ]
    event_id = uuid.uuid5(ROUTED_ID_NAMESPACE, f"{case.case_id}:{lane.value}:escalated:{level}")
    delivery = _routed(
        event_id,
        case,
        moved,
        feedback.triaged,
        feedback.received_at,
        _ESCALATED,
        reasons,
        None,
        rules,
        now,
    )
    return [delivery]


# ---- agent actions ----


def on_accepted(action: CaseAccepted, at: datetime, case: CaseState, state: RoutingState) -> None:
    """An agent took the case: it leaves the backlog and stops escalating (in the agent's queue, or every lane)."""
    lanes = [a for a in case.assignments.values() if a.queue == action.queue] if action.queue else []
    if not lanes:
        lanes = [a for a in case.assignments.values() if a.waiting] if action.queue is None else []
    if not lanes and Lane.PRIMARY in case.assignments:
        lanes = [case.assignments[Lane.PRIMARY]]  # accepted from another queue (passed on by hand): the case's own
    for assignment in lanes:
        if assignment.waiting:
            state.changes.accepted[assignment.queue] += 1
        state.stop_waiting(case, assignment)
        if assignment.accepted_at is None:
            assignment.accepted_at = at
            assignment.accepted_by = action.agent_id


def on_resolved(action: Resolved, case: CaseState, state: RoutingState) -> None:
    """A resolved case is no longer open for merging, and no longer waits in any queue."""
    del action
    case.is_open = False
    for assignment in case.assignments.values():
        state.stop_waiting(case, assignment)
    state.touch(case)


def on_reopened(action: Reopened, case: CaseState, state: RoutingState) -> None:
    del action
    if not case.is_open:
        case.is_open = True
        state.touch(case)
        if case.customer_ref is not None and case.case_id not in state.customer_cases(case.customer_ref):
            state.customer_cases(case.customer_ref).append(case.case_id)


@dataclass(frozen=True)
class SplitRefused:
    why: str


def on_merge_undone(
    action: MergeUndone, at: datetime, case: CaseState, state: RoutingState, rules: RoutingRules, now: datetime
) -> list[Output] | SplitRefused:
    """An agent undid a wrong merge: the feedback leaves the case and opens a case of its own, routed afresh."""
    record = state.feedback.get(action.feedback_id)
    if record is None or record.case_id != case.case_id:
        return SplitRefused(f"feedback {action.feedback_id} is not on case {case.case_id}")
    if action.feedback_id == case.opening_feedback_id:
        return SplitRefused("the feedback opened the case: there is no merge to undo")
    new_id = case_id_for(action.feedback_id)
    if new_id in state.cases:
        return SplitRefused(f"already split off as case {new_id}")
    data = record.triaged
    split = _open_case(new_id, data, record.received_at, rules, state)
    split.split_from = case.case_id
    split.updated_at = max(record.received_at, at)
    record.case_id = new_id
    state.changes.feedback.add(action.feedback_id)
    for key, (owner, feedback_id) in list(state.keys.items()):
        if owner == case.case_id and feedback_id == action.feedback_id:
            state.add_key(key, new_id, feedback_id)
            case.regulator_refs.discard(key)
    state.touch(case)
    placement = place(view_of(data), rules, state.backlog)
    _place_and_assign(split, placement, data.feedback_id, state, now)
    reasons = [_reason("merge", f"agent {action.agent_id} undid the merge into case {case.case_id}")]
    reasons += placement.reasons
    link = CaseLink(kind="split", split_from_case_id=case.case_id, split_by=action.agent_id)
    event_id = routed_event_id(action.feedback_id, Lane.PRIMARY, f":split:{case.case_id}")
    return [
        _routed(
            event_id,
            split,
            split.assignments[Lane.PRIMARY],
            data,
            record.received_at,
            link,
            reasons,
            None,
            rules,
            now,
        )
    ]


# ---- masked views ----

PLACEHOLDER = re.compile(r"\[([A-Z_]+)#([0-9a-f]{16})\]")


def visible_tokens(event: CaseRoutedEvent) -> list[str]:
    """Tokens in the text and details whose kind the queue may see (the only ones to reveal)."""
    kinds = {kind.value.upper() for kind in event.data.visible_pii}
    if not kinds:
        return []
    found = {
        token
        for text in (event.data.text, event.data.details.model_dump_json())
        for kind, token in PLACEHOLDER.findall(text)
        if kind in kinds
    }
    return sorted(found)


def unmask(event: CaseRoutedEvent, values: dict[str, str]) -> CaseRoutedEvent:
    """The event with the revealed values in place of their placeholders; every other kind stays masked."""
    kinds = {kind.value.upper() for kind in event.data.visible_pii}

    def put_back(match: re.Match[str]) -> str:
        kind, token = match.group(1), match.group(2)
        return values.get(token, match.group(0)) if kind in kinds else match.group(0)

    def walk(value: object) -> object:
        if isinstance(value, str):
            return PLACEHOLDER.sub(put_back, value)
        if isinstance(value, list):
            return [walk(item) for item in value]
        if isinstance(value, dict):
            return {key: walk(item) for key, item in value.items()}
        return value

    data = event.data
    details = type(data.details).model_validate(walk(data.details.model_dump(mode="json")))
    return event.model_copy(update={"data": data.model_copy(update={"text": walk(data.text), "details": details})})
