"""Routing decisions: case identity (merge, conflicts, splits), placement, overflow, escalation, public opinion."""

from __future__ import annotations

import uuid
from collections import Counter
from datetime import timedelta
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.agent import CaseAccepted, MergeUndone, Reopened, Resolved
from schemas.channels import Channel
from schemas.feedback import Language
from schemas.routing import CaseRoutedEvent, RoutingReason
from schemas.sla import Severity
from schemas.triage import CaseTriaged, SentimentLabel
from schemas.values import Category, Flag, Priority, Queue
from services.routing import logic
from services.routing.logic import Alert, Delivery, Lane, Output, RoutingState
from services.routing.rules import CaseView, RoutingRules, load_rules, parse_rules
from tests.unit.test_routing_samples import T0, app, feedback_id, regulator, social, triaged

RULES = load_rules(Path("deploy/config/routing.yaml"))


def route(data: CaseTriaged, state: RoutingState, rules: RoutingRules = RULES, at_minutes: float = 0) -> list[Output]:
    return logic.on_triaged(data, state, rules, T0 + timedelta(minutes=at_minutes))


def deliveries(outputs: list[Output]) -> list[CaseRoutedEvent]:
    return [output.event for output in outputs if isinstance(output, Delivery)]


def only(outputs: list[Output]) -> CaseRoutedEvent:
    (event,) = deliveries(outputs)
    return event


def reasons(event: CaseRoutedEvent) -> str:
    return " | ".join(f"{r.kind}: {r.detail}" for r in event.data.reasons)


# ---- case identity ----


def test_new_feedback_opens_a_case_with_a_stable_id_and_reasons() -> None:
    state = RoutingState()
    event = only(route(triaged("h1"), state))
    assert event.data.case_id == logic.case_id_for(feedback_id("h1"))
    assert event.data.case_id == uuid.uuid5(uuid.UUID("0d6f1e53-8a47-4c1b-b0f2-3e9c2a7d5f10"), str(feedback_id("h1")))
    assert event.data.link.kind == "new_case"
    assert event.data.queue is Queue.REPAYMENT_HARDSHIP
    assert event.data.target_index == 0
    assert event.data.accept_within_seconds == 2 * 3600
    assert event.data.received_at == T0
    assert event.subject == str(event.data.case_id)
    assert {r.kind for r in event.data.reasons} >= {"merge", "filter", "target"}
    assert "repayment-hardship" in reasons(event)
    assert state.backlog[Queue.REPAYMENT_HARDSHIP] == 1


def test_hotline_call_and_social_post_of_one_customer_about_one_loan_are_one_case() -> None:
    state = RoutingState()
    first = only(route(triaged("hotline"), state))
    post = triaged("post", details=social("P-1"), category=Category.LOAN_APPROVAL, at=T0 + timedelta(hours=5))
    outputs = route(post, state, at_minutes=300)
    second = deliveries(outputs)[0]
    assert second.data.case_id == first.data.case_id
    assert second.data.link.kind == "merged"
    assert second.data.link.match_basis == "customer_token"
    assert second.data.link.new_facts is True  # a new category, from another channel
    assert second.data.queue is Queue.REPAYMENT_HARDSHIP, "delivered to the queue the case is in"
    assert second.data.virality_score is not None
    assert state.backlog[Queue.REPAYMENT_HARDSHIP] == 1, "one case waits, not two"
    assert "same customer, same problem" in reasons(second)


def test_a_repeat_of_an_open_complaint_merges_without_new_facts() -> None:
    state = RoutingState()
    route(triaged("a"), state)
    again = only(route(triaged("b", details=app()), state))
    assert again.data.link.kind == "merged"
    assert again.data.link.new_facts is False
    assert "no new facts" in reasons(again)


def test_new_facts_are_flagged_and_named() -> None:
    state = RoutingState()
    route(triaged("a"), state)
    worse = only(route(triaged("b", flags=(Flag.LEGAL_THREAT,), priority=Priority.P2), state))
    assert worse.data.link.new_facts is True
    assert "new flags legal_threat" in reasons(worse)
    assert "more urgent (P2 over P3)" in reasons(worse)
    assert worse.data.priority is Priority.P2


def test_same_customer_other_problem_opens_another_case() -> None:
    state = RoutingState()
    loan = only(route(triaged("loan"), state))
    wealth = only(route(triaged("wealth", category=Category.WEALTH_PRODUCT), state))
    assert wealth.data.case_id != loan.data.case_id
    assert wealth.data.link.kind == "new_case"
    assert "none about this problem" in reasons(wealth)


def test_the_newest_open_case_of_the_problem_wins() -> None:
    state = RoutingState()
    older = only(route(triaged("older"), state))
    newer = only(route(triaged("newer", case_id=None, at=T0 + timedelta(hours=1), customer="C100"), state))
    assert newer.data.case_id == older.data.case_id  # same problem merges: only one case
    other = only(route(triaged("other", customer="C200", at=T0 + timedelta(hours=2)), state))
    assert other.data.case_id != older.data.case_id


def test_anonymous_posts_merge_only_on_explicit_references() -> None:
    state = RoutingState()
    first = only(route(triaged("anon-1", customer=None, details=social("P-1")), state))
    second = only(route(triaged("anon-2", customer=None, details=social("P-2")), state))
    assert first.data.case_id != second.data.case_id
    assert "anonymous" in reasons(second)
    update = only(
        route(triaged("anon-1b", customer=None, details=social("P-1", reposts=6), at=T0 + timedelta(minutes=30)), state)
    )
    assert update.data.case_id == first.data.case_id
    assert update.data.link.kind == "post_update"
    assert update.data.link.match_basis == "explicit_reference"
    quoting = only(route(triaged("anon-3", customer=None, details=app(), case_id=second.data.case_id), state))
    assert quoting.data.case_id == second.data.case_id
    assert quoting.data.link.match_basis == "explicit_reference"


def test_an_anonymous_case_quoted_by_a_customer_learns_the_customer() -> None:
    state = RoutingState()
    anonymous = only(route(triaged("anon", customer=None, details=social("P-9")), state))
    quoted = only(route(triaged("named", customer="C555", case_id=anonymous.data.case_id), state))
    assert quoted.data.case_id == anonymous.data.case_id
    later = only(route(triaged("later", customer="C555", details=app()), state))
    assert later.data.case_id == anonymous.data.case_id
    assert later.data.link.match_basis == "customer_token"


def test_conflicting_identifiers_never_merge() -> None:
    state = RoutingState()
    mine = only(route(triaged("mine", customer="C100"), state))
    # Another customer quotes my case id: not merged.
    theirs = only(route(triaged("theirs", customer="C999", case_id=mine.data.case_id), state))
    assert theirs.data.case_id != mine.data.case_id
    assert theirs.data.link.kind == "new_case"
    assert "another customer" in reasons(theirs)
    # The same customer, a second regulator referral about the same problem: another complaint.
    referral = only(route(triaged("r1", details=regulator("12378-A")), state))
    assert referral.data.case_id == mine.data.case_id
    other_referral = only(route(triaged("r2", details=regulator("12378-B")), state))
    assert other_referral.data.case_id != mine.data.case_id
    assert "another regulator referral" in reasons(other_referral)
    # A repeat of the first referral joins it.
    repeat = only(route(triaged("r1-again", details=regulator("12378-A")), state))
    assert repeat.data.case_id == mine.data.case_id


def test_a_post_of_another_customer_never_merges_into_the_posts_case() -> None:
    state = RoutingState()
    first = only(route(triaged("p1", customer="C1", details=social("P-7")), state))
    other = only(route(triaged("p2", customer="C2", details=social("P-7", reposts=9)), state))
    assert other.data.case_id != first.data.case_id
    assert "another customer" in reasons(other)


def test_a_resolved_case_takes_no_merge_until_reopened() -> None:
    state = RoutingState()
    case_id = only(route(triaged("a"), state)).data.case_id
    case = state.cases[case_id]
    logic.on_resolved(Resolved(case_id=case_id, agent_id="agent-1", resolution="explained"), case, state)
    assert state.backlog[Queue.REPAYMENT_HARDSHIP] == 0
    after = only(route(triaged("b"), state))
    assert after.data.case_id != case_id
    logic.on_resolved(
        Resolved(case_id=after.data.case_id, agent_id="a", resolution="explained"),
        state.cases[after.data.case_id],
        state,
    )
    logic.on_reopened(Reopened(case_id=case_id, agent_id="agent-1", reason="customer called back"), case, state)
    again = only(route(triaged("c", at=T0 + timedelta(hours=1)), state))
    assert again.data.case_id == case_id


def test_a_case_named_after_it_is_resolved_opens_a_new_case() -> None:
    state = RoutingState()
    case_id = only(route(triaged("a"), state)).data.case_id
    logic.on_resolved(Resolved(case_id=case_id, agent_id="x", resolution="explained"), state.cases[case_id], state)
    named = only(route(triaged("b", case_id=case_id), state))
    assert named.data.case_id != case_id
    assert "resolved" in reasons(named)


def test_a_second_triage_of_the_same_feedback_routes_nothing() -> None:
    state = RoutingState()
    route(triaged("a"), state)
    assert route(triaged("a"), state) == []


def test_same_inputs_same_ids() -> None:
    def run() -> list[uuid.UUID]:
        state = RoutingState()
        outputs = route(triaged("a"), state) + route(triaged("b", details=social("P-1")), state)
        return [output.event.id for output in outputs]

    assert run() == run()


# ---- splits ----


def test_an_agents_split_undoes_a_merge() -> None:
    state = RoutingState()
    case_id = only(route(triaged("a"), state)).data.case_id
    merged = only(route(triaged("b", details=regulator("12378-X")), state))
    assert merged.data.case_id == case_id
    action = MergeUndone(case_id=case_id, agent_id="agent-7", feedback_id=feedback_id("b"), reason="another loan")
    result = logic.on_merge_undone(action, T0, state.cases[case_id], state, RULES, T0 + timedelta(minutes=5))
    assert isinstance(result, list)
    split = only(result)
    assert split.data.case_id == logic.case_id_for(feedback_id("b"))
    assert split.data.link.kind == "split"
    assert split.data.link.split_from_case_id == case_id
    assert split.data.link.split_by == "agent-7"
    assert split.data.queue is Queue.SENIOR_COMPLAINTS  # a regulator referral, routed afresh
    assert state.feedback[feedback_id("b")].case_id == split.data.case_id
    # The referral's reference moved with it: a repeat of that referral joins the split case.
    repeat = only(route(triaged("b-again", details=regulator("12378-X")), state))
    assert repeat.data.case_id == split.data.case_id
    # Undoing it twice, or splitting the feedback that opened a case, changes nothing.
    again = logic.on_merge_undone(action, T0, state.cases[case_id], state, RULES, T0)
    assert isinstance(again, logic.SplitRefused)
    opener = MergeUndone(case_id=case_id, agent_id="agent-7", feedback_id=feedback_id("a"), reason="wrong")
    assert isinstance(logic.on_merge_undone(opener, T0, state.cases[case_id], state, RULES, T0), logic.SplitRefused)


# ---- placement and overflow ----


@pytest.mark.parametrize(
    ("category", "flags", "channel_details", "queue"),
    [
        (Category.FRAUD_SECURITY, (Flag.LIVE_FRAUD,), None, Queue.FRAUD),
        (Category.REPAYMENT_HARDSHIP, (Flag.SELF_HARM,), None, Queue.REPAYMENT_HARDSHIP),
        (Category.WEALTH_PRODUCT, (), regulator("12378-1"), Queue.SENIOR_COMPLAINTS),
        (Category.WEALTH_PRODUCT, (Flag.LEGAL_THREAT,), None, Queue.SENIOR_COMPLAINTS),
        (Category.WEALTH_PRODUCT, (), None, Queue.WEALTH_PRODUCTS),
        (Category.PRIVACY_DATA, (), None, Queue.PRIVACY),
        (Category.COLLECTION_CONDUCT, (), None, Queue.COLLECTIONS_CONDUCT),
        (Category.LOAN_APPROVAL, (), None, Queue.LOANS),
        (Category.CARD_PAYMENT_ACCOUNT, (), None, Queue.CARDS_PAYMENTS),
        (Category.SERVICE_QUALITY, (), None, Queue.CARDS_PAYMENTS),  # negative: the default filter
    ],
)
def test_default_queues(category: Category, flags: tuple[Flag, ...], channel_details: object, queue: Queue) -> None:
    data = triaged("x", category=category, flags=flags, details=channel_details)  # type: ignore[arg-type]
    assert only(route(data, RoutingState())).data.queue is queue


def test_a_simple_inquiry_goes_to_the_ai_assistant_first() -> None:
    data = triaged("q", category=Category.GENERAL_INQUIRY, priority=Priority.P4, sentiment=SentimentLabel.NEUTRAL)
    event = only(route(data, RoutingState()))
    assert event.data.queue is Queue.AI_ASSISTANT
    assert event.data.overflow is False
    assert "simple-inquiry" in reasons(event)


def test_p1_and_human_required_skip_an_ai_target() -> None:
    text = Path("deploy/config/routing.yaml").read_text(encoding="utf-8")
    ai_first = text.replace(
        "match: {category: [general_inquiry, service_quality], priority: [P3, P4], no_flags: true, "
        "sentiment: [neutral, positive]}",
        "match: {category: general_inquiry}",
    )
    assert ai_first != text
    rules = parse_rules(ai_first)
    view = logic.view_of(triaged("q", category=Category.GENERAL_INQUIRY, priority=Priority.P4))
    assert logic.place(view, rules, RoutingState().backlog).queue is Queue.AI_ASSISTANT
    urgent = logic.place(view.model_copy(update={"priority": Priority.P1}), rules, RoutingState().backlog)
    person = logic.place(view.model_copy(update={"human_required": True}), rules, RoutingState().backlog)
    for placement in (urgent, person):
        assert placement.queue is Queue.CARDS_PAYMENTS
        assert placement.target_index == 1
        assert any("needs a person" in r.detail for r in placement.reasons)


def test_a_full_queue_overflows_low_priority_simple_inquiries_to_the_ai_lane() -> None:
    state = RoutingState()
    state.backlog[Queue.CARDS_PAYMENTS] = 400
    simple = only(route(triaged("s", category=Category.CARD_PAYMENT_ACCOUNT, priority=Priority.P4), state))
    assert simple.data.queue is Queue.AI_ASSISTANT
    assert simple.data.overflow is True
    assert simple.data.accept_within_seconds == 600
    assert "cards_payments holds 400 unaccepted cases (limit 400)" in reasons(simple)
    assert state.changes.overflowed == {Queue.CARDS_PAYMENTS: 1}, "counted on the queue that was full"
    assert state.backlog[Queue.CARDS_PAYMENTS] == 400


@pytest.mark.parametrize(
    ("priority", "flags", "human", "why"),
    [
        (Priority.P1, (), False, "never overflows"),
        (Priority.P4, (), True, "never overflows"),
        (Priority.P2, (), False, "overflow allows only"),
        (Priority.P4, (Flag.VULNERABLE,), False, "overflow allows only"),
    ],
)
def test_p1_human_required_and_not_simple_cases_never_overflow(
    priority: Priority, flags: tuple[Flag, ...], human: bool, why: str
) -> None:
    state = RoutingState()
    state.backlog[Queue.CARDS_PAYMENTS] = 1000
    data = triaged("s", category=Category.CARD_PAYMENT_ACCOUNT, priority=priority, flags=flags, human_required=human)
    event = only(route(data, state))
    assert event.data.queue is Queue.CARDS_PAYMENTS
    assert event.data.overflow is False
    assert why in reasons(event)
    assert state.backlog[Queue.CARDS_PAYMENTS] == 1001


def test_a_merge_that_needs_a_person_takes_the_case_out_of_the_ai_lane() -> None:
    state = RoutingState()
    state.backlog[Queue.CARDS_PAYMENTS] = 400
    simple = only(route(triaged("s", category=Category.CARD_PAYMENT_ACCOUNT, priority=Priority.P4), state))
    assert simple.data.queue is Queue.AI_ASSISTANT
    danger = triaged(
        "d", category=Category.CARD_PAYMENT_ACCOUNT, priority=Priority.P1, flags=(Flag.SELF_HARM,), human_required=True
    )
    moved = only(route(danger, state))
    assert moved.data.case_id == simple.data.case_id
    assert moved.data.queue is Queue.REPAYMENT_HARDSHIP  # the self-harm filter, its first target
    assert moved.data.priority is Priority.P1
    assert state.backlog[Queue.AI_ASSISTANT] == 0
    assert "may no longer hold the case" in reasons(moved)


# ---- escalation and acceptance ----


def test_an_unaccepted_case_escalates_to_the_next_target_then_stays_at_the_last() -> None:
    state = RoutingState()
    event = only(route(triaged("a"), state))
    case = state.cases[event.data.case_id]
    record = state.feedback[feedback_id("a")]
    assert logic.on_timeout(case, Lane.PRIMARY, record, RULES, state, T0 + timedelta(hours=1)) == []
    first = only(logic.on_timeout(case, Lane.PRIMARY, record, RULES, state, T0 + timedelta(hours=2)))
    assert first.data.link.kind == "escalated"
    assert first.data.queue is Queue.LOANS
    assert first.data.escalation_level == 1
    assert first.data.target_index == 1
    assert "not accepted in repayment_hardship within 2h" in reasons(first)
    assert state.backlog[Queue.REPAYMENT_HARDSHIP] == 0
    assert state.backlog[Queue.LOANS] == 1
    assert state.changes.escalated[Queue.REPAYMENT_HARDSHIP] == 1
    second = only(logic.on_timeout(case, Lane.PRIMARY, record, RULES, state, T0 + timedelta(hours=4)))
    assert second.data.queue is Queue.SENIOR_COMPLAINTS
    assert second.data.escalation_level == 2
    assert logic.on_timeout(case, Lane.PRIMARY, record, RULES, state, T0 + timedelta(days=2)) == []
    assert case.assignments[Lane.PRIMARY].due_at is None
    assert state.backlog[Queue.SENIOR_COMPLAINTS] == 1
    assert first.id != second.id
    assert first.id == uuid.uuid5(logic.ROUTED_ID_NAMESPACE, f"{case.case_id}:primary:escalated:1")


def test_an_accepted_case_leaves_the_backlog_and_never_escalates() -> None:
    state = RoutingState()
    event = only(route(triaged("a"), state))
    case = state.cases[event.data.case_id]
    logic.on_accepted(
        CaseAccepted(case_id=case.case_id, agent_id="agent-3", queue=Queue.REPAYMENT_HARDSHIP), T0, case, state
    )
    assert state.backlog[Queue.REPAYMENT_HARDSHIP] == 0
    assert state.changes.accepted[Queue.REPAYMENT_HARDSHIP] == 1
    assert case.assignments[Lane.PRIMARY].accepted_by == "agent-3"
    record = state.feedback[feedback_id("a")]
    assert logic.on_timeout(case, Lane.PRIMARY, record, RULES, state, T0 + timedelta(days=3)) == []
    logic.on_accepted(CaseAccepted(case_id=case.case_id, agent_id="agent-3"), T0, case, state)
    assert state.changes.accepted[Queue.REPAYMENT_HARDSHIP] == 1, "accepting twice counts once"


def test_an_overflowed_case_the_ai_lane_does_not_take_goes_back_to_its_queue() -> None:
    state = RoutingState()
    state.backlog[Queue.CARDS_PAYMENTS] = 400
    event = only(route(triaged("s", category=Category.CARD_PAYMENT_ACCOUNT, priority=Priority.P4), state))
    case = state.cases[event.data.case_id]
    back = only(
        logic.on_timeout(case, Lane.PRIMARY, state.feedback[feedback_id("s")], RULES, state, T0 + timedelta(minutes=10))
    )
    assert back.data.queue is Queue.CARDS_PAYMENTS
    assert back.data.overflow is False
    assert back.data.target_index == 0
    assert "AI lane ai_assistant did not accept within 10m" in reasons(back)


# ---- public opinion ----


def test_a_viral_post_reaches_the_pr_queue_as_well_and_raises_one_alert_per_level() -> None:
    state = RoutingState()
    quiet = social("P-V", followers=2000, reposts=10, comments=4, likes=30, posted_at=T0 - timedelta(hours=2))
    first = route(triaged("v1", customer=None, details=quiet), state)
    assert [type(o) for o in first] == [Delivery], "a quiet post: its own queue only"
    loud = social("P-V", followers=2000, reposts=4000, comments=900, likes=8000, posted_at=T0 - timedelta(hours=2))
    outputs = route(triaged("v2", customer=None, details=loud, at=T0 + timedelta(hours=1)), state)
    routed = deliveries(outputs)
    assert [event.data.lane for event in routed] == ["primary", "public_opinion"]
    assert all(event.data.link.kind == "post_update" for event in routed)
    pr = routed[1]
    assert pr.data.queue is Queue.PUBLIC_OPINION
    assert pr.data.priority is Priority.P2
    assert pr.data.virality_score is not None
    assert pr.data.virality_score >= RULES.public_opinion.critical_threshold
    assert "at or over the threshold" in reasons(pr)
    (alert,) = [o.event for o in outputs if isinstance(o, Alert)]
    assert alert.data.severity is Severity.CRITICAL
    assert alert.data.case_id == pr.data.case_id
    assert alert.data.reposts_per_hour == pytest.approx(3990.0)
    assert state.backlog[Queue.PUBLIC_OPINION] == 1
    # A further update: the PR desk hears of it, no new alert, no second PR assignment.
    louder = social("P-V", followers=2000, reposts=9000, comments=900, likes=9000, posted_at=T0 - timedelta(hours=2))
    more = route(triaged("v3", customer=None, details=louder, at=T0 + timedelta(hours=2)), state)
    assert [type(o) for o in more] == [Delivery, Delivery]
    assert state.backlog[Queue.PUBLIC_OPINION] == 1


def test_a_post_passing_only_the_warning_threshold_raises_a_warning() -> None:
    state = RoutingState()
    post = social("P-W", followers=60000, reposts=100, comments=50, likes=300, posted_at=T0 - timedelta(hours=3))
    outputs = route(triaged("w", customer=None, details=post), state)
    (alert,) = [o.event for o in outputs if isinstance(o, Alert)]
    assert alert.data.severity is Severity.WARNING
    assert alert.data.threshold == RULES.public_opinion.threshold
    assert RULES.public_opinion.threshold <= alert.data.virality_score < RULES.public_opinion.critical_threshold


def test_the_pr_copy_escalates_on_its_own_lane() -> None:
    state = RoutingState()
    post = social("P-E", followers=500000, reposts=20000, comments=900, likes=9000)
    outputs = route(triaged("e", customer=None, details=post), state)
    case_id = deliveries(outputs)[0].data.case_id
    case = state.cases[case_id]
    record = state.feedback[feedback_id("e")]
    up = only(logic.on_timeout(case, Lane.PUBLIC_OPINION, record, RULES, state, T0 + timedelta(minutes=30)))
    assert up.data.lane == "public_opinion"
    assert up.data.queue is Queue.SENIOR_COMPLAINTS
    logic.on_accepted(CaseAccepted(case_id=case_id, agent_id="pr-1", queue=Queue.SENIOR_COMPLAINTS), T0, case, state)
    assert case.assignments[Lane.PUBLIC_OPINION].waiting is False
    assert case.assignments[Lane.PRIMARY].waiting is True


# ---- remembered answers are the answers ----


@given(name=st.text(max_size=80))
def test_ids_are_the_standard_uuid5_of_their_cause(name: str) -> None:
    assert logic._uuid5(logic.CASE_ID_NAMESPACE.bytes, name) == uuid.uuid5(logic.CASE_ID_NAMESPACE, name)
    assert logic._uuid5(logic.ROUTED_ID_NAMESPACE.bytes, name) == uuid.uuid5(logic.ROUTED_ID_NAMESPACE, name)
    feedback = uuid.uuid5(uuid.NAMESPACE_URL, name)
    assert logic.case_id_for(feedback) == uuid.uuid5(logic.CASE_ID_NAMESPACE, str(feedback))
    assert logic.routed_event_id(feedback, Lane.PUBLIC_OPINION, ":x") == uuid.uuid5(
        logic.ROUTED_ID_NAMESPACE, f"{feedback}:public_opinion:x"
    )


def reference_place(
    view: CaseView, rules: RoutingRules, backlog: Counter[Queue], *, allow_overflow: bool, avoid_ai: bool
) -> logic.Placement:
    """``place`` as it was before its answers were remembered (computed afresh on every call)."""
    reasons: list[RoutingReason] = []
    chosen = next((rule for rule in rules.filters if rule.match.holds(view)), None)
    if chosen is not None:
        reasons.append(logic._reason("filter", f"filter {chosen.name!r} matched ({chosen.match.describe()})"))
    else:
        chosen = rules.default_filter.as_filter()
        reasons.append(logic._reason("default", "no filter matched: the default filter"))
    lane = rules.overflow.lane
    person = avoid_ai or logic.needs_person(view)
    index = 0
    while person and index < len(chosen.targets) and chosen.targets[index].queue == lane:
        reasons.append(logic._reason("target", f"skipped target {index} ({lane.value}): this case needs a person"))
        index += 1
    if index == len(chosen.targets):
        chosen, index = rules.default_filter.as_filter(), 0
        reasons.append(logic._reason("default", "no target of the filter is worked by people: the default filter"))
    target = chosen.targets[index]
    priority = logic.more_urgent(view.priority, target.priority)
    following = (
        f", then {chosen.targets[index + 1].queue.value}" if index + 1 < len(chosen.targets) else ", the last target"
    )
    reasons.append(
        logic._reason(
            "target",
            f"target {index} of {len(chosen.targets)}: {target.queue.value}, {priority.value}, "
            f"accept within {logic._duration(target.timeout)}{following}",
        )
    )
    queue, timeout, overflow = target.queue, target.timeout, False
    limit = rules.queues[queue].backlog_limit
    if allow_overflow and queue != lane and backlog[queue] >= limit:
        as_priority = view.model_copy(update={"priority": priority})
        full = f"{queue.value} holds {backlog[queue]} unaccepted cases (limit {limit})"
        if logic.needs_person(as_priority):
            reasons.append(
                logic._reason("overflow", f"{full}, but a P1 or human-required case never overflows: it stays")
            )
        elif rules.overflow.allow.holds(as_priority):
            queue, timeout, overflow = lane, rules.overflow.timeout, True
            reasons.append(
                logic._reason(
                    "overflow",
                    f"{full}: this {priority.value} {view.category.value} may overflow "
                    f"({rules.overflow.allow.describe()}), so the AI lane {lane.value} takes it; back to "
                    f"{target.queue.value} if not accepted within {logic._duration(timeout)}",
                )
            )
        else:
            reasons.append(
                logic._reason("overflow", f"{full}, but overflow allows only {rules.overflow.allow.describe()}")
            )
    return logic.Placement(chosen, index, queue, priority, timeout, overflow, tuple(reasons))


@settings(max_examples=300, deadline=None)
@given(
    category=st.sampled_from(Category),
    channel=st.sampled_from(Channel),
    priority=st.sampled_from(Priority),
    sentiment=st.sampled_from(SentimentLabel),
    language=st.sampled_from(Language),
    flags=st.frozensets(st.sampled_from(Flag), max_size=3),
    human_required=st.booleans(),
    full=st.booleans(),
    allow_overflow=st.booleans(),
    avoid_ai=st.booleans(),
)
def test_a_remembered_placement_is_the_placement(
    category: Category,
    channel: Channel,
    priority: Priority,
    sentiment: SentimentLabel,
    language: Language,
    flags: frozenset[Flag],
    human_required: bool,
    full: bool,
    allow_overflow: bool,
    avoid_ai: bool,
) -> None:
    view = logic._view(category, channel, priority, sentiment, language, flags, human_required)
    assert view == CaseView(
        category=category,
        channel=channel,
        priority=priority,
        sentiment=sentiment,
        language=language,
        flags=flags,
        human_required=human_required,
    )
    backlog: Counter[Queue] = Counter({queue: RULES.queues[queue].backlog_limit if full else 0 for queue in Queue})
    expected = reference_place(view, RULES, backlog, allow_overflow=allow_overflow, avoid_ai=avoid_ai)
    for _ in range(2):  # computed, then remembered
        assert logic.place(view, RULES, backlog, allow_overflow=allow_overflow, avoid_ai=avoid_ai) == expected
