"""The SLA rules on the shipped presets: which clocks a case runs, their deadlines to the minute, and
which alerts fall due when; pauses, extensions, a regulator's own deadline, versions and replays."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import yaml

from schemas.values import ClockName
from services.sla import logic
from services.sla.logic import CaseFacts, ClockState, ClockStatus, SlaEvent
from services.sla.policies import PolicyBook, book_from_file, load_policy_book, parse_policy_document

SHANGHAI = ZoneInfo("Asia/Shanghai")
LONDON = ZoneInfo("Europe/London")
NEW_YORK = ZoneInfo("America/New_York")
PRESETS = Path(__file__).resolve().parents[2] / "deploy" / "config" / "sla-policies.yaml"
CASE = uuid.UUID("3f2c1a9e-8b7d-4e6f-9a1b-2c3d4e5f6a7b")


@pytest.fixture(scope="module")
def book() -> PolicyBook:
    return load_policy_book(PRESETS)


def sh(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=SHANGHAI)  # type: ignore[misc]


def event(trigger: str, at: datetime, **fields: Any) -> SlaEvent:
    return SlaEvent(uuid.uuid5(CASE, f"{trigger}:{at.isoformat()}"), trigger, CASE, at, **fields)


class Case:
    """Feeds events to the pure logic as the store would: facts and clocks carried from one event to the next."""

    def __init__(self, book: PolicyBook) -> None:
        self.book = book
        self.facts: CaseFacts | None = None
        self.clocks: dict[tuple[uuid.UUID, ClockName, int], ClockState] = {}
        self.alerts: list[Any] = []
        self.journal: list[logic.JournalEntry] = []

    def feed(self, *events: SlaEvent) -> list[Any]:
        new: list[Any] = []
        for item in events:
            outcome = logic.on_event(self.facts, list(self.clocks.values()), item, self.book)
            self.facts = outcome.facts
            self.clocks.update(outcome.clocks)
            new.extend(outcome.alerts)
            self.journal.extend(outcome.journal)
        self.alerts.extend(new)
        return new

    def poll(self, now: datetime) -> list[Any]:
        new: list[Any] = []
        for key, clock in sorted(self.clocks.items(), key=lambda item: str(item[0])):
            if clock.next_due_at is not None and clock.next_due_at <= now:
                updated, alerts = logic.fire_due(self.book, clock, now)
                self.clocks[key] = updated
                new.extend(alerts)
        self.alerts.extend(new)
        return new

    def clock(self, name: ClockName, cycle: int = 0) -> ClockState:
        return self.clocks[(CASE, name, cycle)]


def opened(at: datetime, **fields: Any) -> SlaEvent:
    defaults: dict[str, Any] = {"opened_at": at, "channel": "hotline", "jurisdiction": "CN"}
    return event("tracking.opened", at, **{**defaults, **fields})


def triaged(at: datetime, priority: str = "P2", category: str = "wealth_product") -> SlaEvent:
    return event("tracking.triaged", at, priority=priority, category=category)


def kinds(alerts: Sequence[Any], clock: ClockName | None = None) -> list[str]:
    """'kind:clock' of each alert, optionally of one clock only."""
    return [
        f"{a.type.removeprefix('com.parley.sla.').removesuffix('.v1')}:{a.data.clock.value}"
        for a in alerts
        if clock is None or a.data.clock is clock
    ]


# ---- which clocks a case runs ----


def test_a_chinese_complaint_runs_the_nfra_resolution_clock_and_first_contact(book: PolicyBook) -> None:
    case = Case(book)
    assert case.feed(opened(sh(2026, 9, 28, 10))) == []  # no priority yet: no policy can select the case
    started = case.feed(triaged(sh(2026, 9, 28, 10, 0, 5)))
    assert sorted(kinds(started)) == ["clock_started:first_contact", "clock_started:resolution"]
    resolution = case.clock(ClockName.RESOLUTION)
    assert (resolution.policy_id, resolution.policy_version) == ("cn-nfra-complaint", 1)
    assert resolution.started_at == sh(2026, 9, 28, 10)  # from the case's opening, not from triage
    assert resolution.deadline == sh(2026, 10, 14)  # 15 calendar days from 29 September, to 24:00
    first_contact = case.clock(ClockName.FIRST_CONTACT)
    assert first_contact.policy_id == "cn-operations"
    # 8 working hours on the complaints desk: 28 Sept 10:00-12:00, 13:00-18:00 (7 h), 29 Sept 09:00-10:00.
    assert first_contact.deadline == sh(2026, 9, 29, 10)
    for alert in started:
        assert alert.data.policy_version == 1
        assert alert.data.dedup_key == f"{CASE}/{alert.data.clock.value}/0/started"
        assert alert.id == uuid.uuid5(logic.ALERT_ID_NAMESPACE, alert.data.dedup_key)


def test_a_p1_case_gets_first_contact_within_two_working_hours_of_the_hotline_day(book: PolicyBook) -> None:
    case = Case(book)
    case.feed(opened(sh(2026, 9, 30, 21, 30)), triaged(sh(2026, 9, 30, 21, 30), priority="P1"))
    first_contact = case.clock(ClockName.FIRST_CONTACT)
    assert first_contact.policy_id == "cn-operations-p1"
    # Hotline hours 08:00-22:00 every day, National Day included: 30 min tonight, 1 h 30 tomorrow.
    assert first_contact.deadline == sh(2026, 10, 1, 9, 30)
    marks = logic.marks(book, first_contact)
    assert [(m.key, m.at) for m in marks] == [
        ("warning/1/x0", sh(2026, 10, 1, 8, 30)),
        ("warning/2/x0", sh(2026, 10, 1, 9, 15)),
        ("breached", sh(2026, 10, 1, 9, 30)),
        ("escalated/1", sh(2026, 10, 1, 9, 30)),
        ("escalated/2", sh(2026, 10, 1, 10, 30)),
    ]


def test_a_general_inquiry_has_no_resolution_clock(book: PolicyBook) -> None:
    case = Case(book)
    case.feed(opened(sh(2026, 11, 23, 10)), triaged(sh(2026, 11, 23, 10), category="general_inquiry"))
    assert {key[1] for key in case.clocks} == {ClockName.FIRST_CONTACT}


def test_uk_presets_summary_resolution_and_final_response(book: PolicyBook) -> None:
    case = Case(book)
    received = datetime(2026, 4, 2, 16, tzinfo=LONDON)
    case.feed(opened(received, jurisdiction="UK", channel="app"), triaged(received))
    assert case.clock(ClockName.SUMMARY_RESOLUTION).deadline == datetime(2026, 4, 9, 17, 30, tzinfo=LONDON)
    assert case.clock(ClockName.FINAL_RESPONSE).deadline == datetime(2026, 5, 29, tzinfo=LONDON)  # 2 Apr + 56
    # 16:00-17:30 on Thursday, then 30 minutes on Tuesday after Easter.
    assert case.clock(ClockName.FIRST_CONTACT).deadline == datetime(2026, 4, 7, 9, 30, tzinfo=LONDON)


def test_us_presets_fifteen_days_then_sixty_from_receipt_once_in_progress(book: PolicyBook) -> None:
    case = Case(book)
    received = datetime(2026, 6, 30, 11, tzinfo=NEW_YORK)
    case.feed(opened(received, jurisdiction="US", channel="app"), triaged(received))
    assert case.clock(ClockName.FIRST_RESPONSE).deadline == datetime(2026, 7, 16, tzinfo=NEW_YORK)
    assert (CASE, ClockName.FINAL_RESPONSE, 0) not in case.clocks
    contacted = datetime(2026, 7, 6, 9, 45, tzinfo=NEW_YORK)
    alerts = case.feed(event("tracking.first_contact", contacted))
    # The operational first-contact clock (2 working hours) had run out on 30 June: its alerts come first.
    assert kinds(alerts) == [
        "warning:first_contact",
        "breached:first_contact",
        "escalated:first_contact",
        "clock_met:first_contact",
        "clock_met:first_response",
        "clock_started:final_response",
    ]
    final = case.clock(ClockName.FINAL_RESPONSE)
    assert final.started_at == received  # marked in progress on 6 July, counted from receipt
    assert final.deadline == datetime(2026, 8, 30, tzinfo=NEW_YORK)  # 30 June + 60 days, to midnight


# ---- warnings, breach, escalation, met ----


def test_warnings_breach_and_escalations_fire_once_each_in_order(book: PolicyBook) -> None:
    case = Case(book)
    case.feed(opened(sh(2026, 9, 28, 10)), triaged(sh(2026, 9, 28, 10)))
    case.feed(event("tracking.first_contact", sh(2026, 9, 28, 11)))  # first contact met; next_response starts
    resolution = case.clock(ClockName.RESOLUTION)
    assert [(m.key, m.at) for m in logic.marks(book, resolution)] == [
        ("warning/1/x0", sh(2026, 10, 7, 18, 24)),  # 60 % of 15 d 14 h
        ("warning/2/x0", sh(2026, 10, 10, 21, 12)),  # 80 %
        ("escalated/1", sh(2026, 10, 12, 10, 36)),  # 90 %: team lead
        ("warning/3/x0", sh(2026, 10, 13)),  # a day before
        ("breached", sh(2026, 10, 14)),
        ("escalated/2", sh(2026, 10, 14)),
        ("escalated/3", sh(2026, 10, 15)),
    ]
    assert case.poll(sh(2026, 10, 7, 18, 23)) == []
    first = case.poll(sh(2026, 10, 7, 18, 24))
    assert kinds(first) == ["warning:resolution"]
    assert first[0].data.elapsed_fraction == pytest.approx(0.6)
    assert first[0].data.remaining_seconds == int(timedelta(days=6, hours=5, minutes=36).total_seconds())
    assert case.poll(sh(2026, 10, 7, 18, 30)) == []  # nothing fires twice
    rest = [a for a in case.poll(sh(2026, 10, 20)) if a.data.clock is ClockName.RESOLUTION]
    assert [a.data.dedup_key.rsplit("/0/", 1)[1] for a in rest] == [
        "warning/2/x0",
        "escalated/1",
        "warning/3/x0",
        "breached",
        "escalated/2",
        "escalated/3",
    ]
    breach = rest[3]
    assert breach.type == "com.parley.sla.breached.v1"
    assert breach.time == sh(2026, 10, 14)
    assert (breach.data.priority.value, breach.data.severity.value) == ("P2", "critical")
    escalation = rest[5]
    assert escalation.data.level == 3
    assert escalation.data.escalated_to == "consumer_protection_officer"
    assert escalation.data.recipients == ["cpo-office"]
    assert escalation.data.overdue_seconds == 86400
    assert case.clock(ClockName.RESOLUTION).next_due_at is None


def test_a_case_resolved_late_shows_its_breach_before_it_is_met_even_without_the_poller(book: PolicyBook) -> None:
    case = Case(book)
    case.feed(opened(sh(2026, 11, 23, 9)), triaged(sh(2026, 11, 23, 9)))
    alerts = case.feed(event("tracking.first_contact", sh(2026, 11, 24, 15)))
    first_contact = [a for a in alerts if a.data.clock is ClockName.FIRST_CONTACT]
    assert kinds(first_contact) == [
        "warning:first_contact",
        "breached:first_contact",
        "escalated:first_contact",
        "clock_met:first_contact",
    ]
    met = first_contact[-1]
    assert met.data.seconds_to_spare == 0
    assert met.data.overdue_seconds == int(timedelta(hours=21).total_seconds())  # due Mon 18:00, met Tue 15:00


def test_a_met_clock_stops_and_says_how_much_time_was_left(book: PolicyBook) -> None:
    case = Case(book)
    case.feed(opened(sh(2026, 11, 23, 9)), triaged(sh(2026, 11, 23, 9)))
    met = case.feed(event("tracking.first_contact", sh(2026, 11, 23, 11)))
    assert kinds(met, ClockName.FIRST_CONTACT) == ["clock_met:first_contact"]
    assert met[0].data.seconds_to_spare == int(timedelta(hours=7).total_seconds())  # due 18:00
    assert case.clock(ClockName.FIRST_CONTACT).status is ClockStatus.MET
    assert kinds(case.poll(sh(2026, 11, 30)), ClockName.FIRST_CONTACT) == []


def test_replaying_the_same_events_gives_the_same_alerts(book: PolicyBook) -> None:
    events = [
        opened(sh(2026, 9, 20, 10)),
        triaged(sh(2026, 9, 20, 10)),
        event("tracking.first_contact", sh(2026, 9, 21, 9)),
        event("agent.contacted", sh(2026, 9, 30, 9)),
        event("tracking.resolved", sh(2026, 10, 10, 12)),
    ]
    live = Case(book)
    for item, poll_at in zip(events, [None, sh(2026, 9, 20, 16), sh(2026, 9, 25), sh(2026, 10, 8), None], strict=True):
        live.feed(item)
        if poll_at is not None:
            live.poll(poll_at)
    replay = Case(book)
    replay.feed(*events)
    # Same alerts, byte for byte, whether the poller fired them in between or the events did.
    assert sorted(a.model_dump_json() for a in replay.alerts) == sorted(a.model_dump_json() for a in live.alerts)
    assert len({a.id for a in replay.alerts}) == len(replay.alerts) > 10
    assert any(a.type.endswith("breached.v1") for a in replay.alerts)


# ---- pauses ----


def test_a_pause_needs_an_allowed_reason_and_moves_the_deadline(book: PolicyBook) -> None:
    case = Case(book)
    case.feed(opened(sh(2026, 11, 2, 10)), triaged(sh(2026, 11, 2, 10)))
    assert case.clock(ClockName.RESOLUTION).deadline == sh(2026, 11, 18)
    refused = case.feed(
        event(
            "agent.clock_paused",
            sh(2026, 11, 5, 10),
            clock=ClockName.RESOLUTION,
            reason="客户说下周再谈",
            agent_id="E1",
        )
    )
    refused = [a for a in refused if a.data.clock is ClockName.RESOLUTION]
    assert kinds(refused) == ["clock_pause_refused:resolution"]
    assert "waiting_on_third_party" in refused[0].data.refusal
    assert case.clock(ClockName.RESOLUTION).status is ClockStatus.RUNNING
    paused = case.feed(
        event("agent.clock_paused", sh(2026, 11, 5, 10), clock=ClockName.RESOLUTION, reason="等待司法鉴定结论")
    )
    assert kinds(paused) == ["clock_paused:resolution"]
    assert paused[0].data.remaining_seconds == int((sh(2026, 11, 18) - sh(2026, 11, 5, 10)).total_seconds())
    clock = case.clock(ClockName.RESOLUTION)
    assert (clock.status, clock.next_due_at, clock.pauses[0].condition) == (
        ClockStatus.PAUSED,
        None,
        "waiting_on_third_party",
    )
    assert kinds(case.poll(sh(2026, 11, 20)), ClockName.RESOLUTION) == []  # paused: nothing falls due
    resumed = case.feed(
        event("agent.clock_resumed", sh(2026, 11, 9, 10), clock=ClockName.RESOLUTION, reason="鉴定结论已出")
    )
    resolution_alerts = [a for a in resumed if a.data.clock is ClockName.RESOLUTION]
    assert kinds(resolution_alerts) == ["clock_resumed:resolution"]
    assert resolution_alerts[0].data.paused_seconds == 4 * 86400
    # Four days later, ending on Saturday 21 November: rolled to Monday 23, to 24:00.
    assert resolution_alerts[0].data.deadline == sh(2026, 11, 24)
    assert case.clock(ClockName.RESOLUTION).deadline == sh(2026, 11, 24)


def test_a_clock_without_pause_conditions_cannot_be_paused(book: PolicyBook) -> None:
    case = Case(book)
    case.feed(opened(sh(2026, 11, 23, 9)), triaged(sh(2026, 11, 23, 9)))
    alerts = case.feed(
        event("agent.clock_paused", sh(2026, 11, 23, 10), clock=ClockName.FIRST_CONTACT, reason="waiting_on_customer")
    )
    assert kinds(alerts) == ["clock_pause_refused:first_contact"]
    assert "cannot be paused" in alerts[0].data.refusal


def test_a_pause_for_a_clock_that_is_not_running_is_journaled_only(book: PolicyBook) -> None:
    case = Case(book)
    case.feed(opened(sh(2026, 11, 23, 9)), triaged(sh(2026, 11, 23, 9)))
    resumed = case.feed(event("agent.clock_resumed", sh(2026, 11, 23, 10), clock=ClockName.RESOLUTION, reason="go"))
    assert resumed == []
    assert case.journal[-1].action == "resume_ignored"


# ---- extensions and the regulator's deadline ----


def test_extensions_to_30_then_60_days_the_second_with_approval(book: PolicyBook) -> None:
    case = Case(book)
    case.feed(opened(sh(2026, 9, 1, 10)), triaged(sh(2026, 9, 1, 10)))
    assert case.clock(ClockName.RESOLUTION).deadline == sh(2026, 9, 17)
    first = case.feed(event(logic.EXTEND, sh(2026, 9, 10, 9), clock=ClockName.RESOLUTION, reason="情况复杂，需核实"))
    first = [a for a in first if a.data.clock is ClockName.RESOLUTION]
    assert kinds(first) == ["clock_extended:resolution"]  # before the first warning (60 %: 10 Sept 18:24)
    assert (first[0].data.previous_deadline, first[0].data.deadline) == (sh(2026, 9, 17), sh(2026, 10, 9))
    unapproved = case.feed(event(logic.EXTEND, sh(2026, 9, 30, 9), clock=ClockName.RESOLUTION, reason="仍需时间"))
    assert "clock_extended:resolution" not in kinds(unapproved)
    assert case.journal[-1].action == "extension_refused"
    second = case.feed(
        event(logic.EXTEND, sh(2026, 9, 30, 9, 5), clock=ClockName.RESOLUTION, reason="特别复杂", approved_by="E9")
    )
    assert second[0].data.deadline == sh(2026, 11, 3)  # 60 days: Sat 31 October rolls to Monday
    assert second[0].data.extension == 2
    case.feed(event(logic.EXTEND, sh(2026, 10, 2, 9), clock=ClockName.RESOLUTION, reason="再延", approved_by="E9"))
    assert case.journal[-1].action == "extension_refused"  # at most 60 days


def test_warnings_rearm_after_an_extension_but_a_breached_clock_is_not_extended(book: PolicyBook) -> None:
    case = Case(book)
    case.feed(opened(sh(2026, 9, 1, 10)), triaged(sh(2026, 9, 1, 10)))
    case.poll(sh(2026, 9, 14))
    fired_before = {a.data.dedup_key for a in case.alerts if a.type.endswith("warning.v1")}
    assert any(key.endswith("warning/1/x0") for key in fired_before)
    case.feed(event(logic.EXTEND, sh(2026, 9, 14, 1), clock=ClockName.RESOLUTION, reason="complex case"))
    case.poll(sh(2026, 10, 1))
    assert any(a.data.dedup_key.endswith("warning/1/x1") for a in case.alerts)
    case.poll(sh(2026, 12, 1))
    case.feed(event(logic.EXTEND, sh(2026, 12, 1, 1), clock=ClockName.RESOLUTION, reason="late", approved_by="E9"))
    assert case.journal[-1].action == "extension_refused"
    assert "breached" in (case.journal[-1].reason or "")


def test_a_regulator_referral_runs_on_the_regulators_own_deadline(book: PolicyBook) -> None:
    case = Case(book)
    own_deadline = sh(2026, 12, 9, 17)
    case.feed(
        opened(sh(2026, 11, 24, 9, 30), channel="regulator", regulator_deadline=own_deadline),
        triaged(sh(2026, 11, 24, 9, 30), priority="P1", category="card_payment_account"),
    )
    regulator = case.clock(ClockName.REGULATOR_RESPONSE)
    assert (regulator.policy_id, regulator.deadline) == ("cn-regulator-referral", own_deadline)
    assert (CASE, ClockName.RESOLUTION, 0) not in case.clocks  # the referral's own clock replaces it
    refused = case.feed(
        event("agent.clock_paused", sh(2026, 11, 25, 9), clock=ClockName.REGULATOR_RESPONSE, reason="等待客户补充")
    )
    assert kinds(refused, ClockName.REGULATOR_RESPONSE) == ["clock_pause_refused:regulator_response"]
    assert "regulator's own deadline" in refused[-1].data.refusal
    case.feed(event(logic.EXTEND, sh(2026, 11, 25, 9), clock=ClockName.REGULATOR_RESPONSE, reason="complex"))
    assert case.journal[-1].action == "extension_refused"
    breach = [a for a in case.poll(sh(2026, 12, 10)) if a.type.endswith("breached.v1")]
    assert [b.data.clock for b in breach] == [ClockName.REGULATOR_RESPONSE]
    assert breach[0].time == own_deadline


def test_a_referral_without_its_own_deadline_gets_fifteen_days(book: PolicyBook) -> None:
    case = Case(book)
    case.feed(opened(sh(2026, 9, 20, 10), channel="regulator"), triaged(sh(2026, 9, 20, 10)))
    assert case.clock(ClockName.REGULATOR_RESPONSE).deadline == sh(2026, 10, 9)  # rolled off National Day


# ---- periodic, reopened, cancelled, team calendars ----


def test_next_response_restarts_on_each_contact_and_stops_at_resolution(book: PolicyBook) -> None:
    case = Case(book)
    case.feed(opened(sh(2026, 11, 23, 9)), triaged(sh(2026, 11, 23, 9)))
    case.feed(event("tracking.first_contact", sh(2026, 11, 23, 10)))
    assert case.clock(ClockName.NEXT_RESPONSE).deadline == sh(2026, 11, 30, 18)  # 5 working days, close of business
    alerts = case.feed(event("agent.contacted", sh(2026, 11, 26, 15)))
    assert kinds(alerts) == ["clock_met:next_response", "clock_started:next_response"]
    assert case.clock(ClockName.NEXT_RESPONSE, 1).deadline == sh(2026, 12, 3, 18)
    assert alerts[1].data.dedup_key == f"{CASE}/next_response/1/started"
    done = case.feed(event("tracking.resolved", sh(2026, 11, 27, 10)))
    assert "clock_met:next_response" in kinds(done)


def test_closing_cancels_and_reopening_starts_a_new_run(book: PolicyBook) -> None:
    case = Case(book)
    case.feed(opened(sh(2026, 11, 2, 10)), triaged(sh(2026, 11, 2, 10)))
    case.feed(event("tracking.first_contact", sh(2026, 11, 2, 11)))
    closed = case.feed(event("tracking.closed", sh(2026, 11, 3, 10)))
    assert sorted(kinds(closed)) == ["clock_cancelled:next_response", "clock_cancelled:resolution"]
    reopened = case.feed(event("tracking.reopened", sh(2026, 11, 10, 10)))
    assert kinds(reopened) == ["clock_started:resolution"]
    again = case.clock(ClockName.RESOLUTION, 1)
    assert (again.cycle, again.started_at, again.deadline) == (1, sh(2026, 11, 10, 10), sh(2026, 11, 26))


def test_a_team_calendar_applies_once_the_case_reaches_the_team(book: PolicyBook) -> None:
    case = Case(book)
    case.feed(opened(sh(2026, 11, 28, 10)), triaged(sh(2026, 11, 28, 10)))  # a Saturday
    assert case.clock(ClockName.FIRST_CONTACT).deadline == sh(2026, 11, 30, 18)  # desk: Monday 09-12, 13-18
    case.feed(event("tracking.routed", sh(2026, 11, 28, 10, 0, 1), queue="fraud", priority="P2"))
    moved = case.clock(ClockName.FIRST_CONTACT)
    assert (moved.calendar, moved.deadline, moved.queue) == ("cn-hotline", sh(2026, 11, 28, 18), "fraud")
    assert case.journal[-1].action == "calendar_changed"


# ---- versions ----


VERSIONED = """
calendars:
  desk: {time_zone: Asia/Shanghai, holidays: every-day, working_hours: ["00:00-24:00"]}
policies:
  - id: ops
    version: 1
    effective_from: 2026-01-01T00:00:00+08:00
    clocks:
      - {name: first_contact, calendar: desk, target: {amount: 4, unit: hours},
         starts_on: [tracking.opened], stops_on: [tracking.first_contact]}
  - id: ops
    version: 2
    effective_from: 2026-07-01T00:00:00+08:00
    clocks:
      - {name: first_contact, calendar: desk, target: {amount: 2, unit: hours},
         starts_on: [tracking.opened], stops_on: [tracking.first_contact]}
"""


def test_a_clock_keeps_the_policy_version_in_force_when_it_started() -> None:
    book = book_from_file(parse_policy_document(yaml.safe_load(VERSIONED), "test"))
    before, after = Case(book), Case(book)
    before.feed(opened(sh(2026, 6, 30, 23)), triaged(sh(2026, 7, 1, 1)))
    after.feed(opened(sh(2026, 7, 1, 0, 30)), triaged(sh(2026, 7, 1, 1)))
    assert (before.clock(ClockName.FIRST_CONTACT).policy_version, before.clock(ClockName.FIRST_CONTACT).deadline) == (
        1,
        sh(2026, 7, 1, 3),
    )
    assert (after.clock(ClockName.FIRST_CONTACT).policy_version, after.clock(ClockName.FIRST_CONTACT).deadline) == (
        2,
        sh(2026, 7, 1, 2, 30),
    )


def test_timeline_for_the_cli(book: PolicyBook) -> None:
    line = logic.timeline(
        book,
        "cn-operations",
        ClockName.FIRST_CONTACT,
        sh(2026, 11, 23, 9),
        pauses=[(sh(2026, 11, 23, 10), sh(2026, 11, 23, 14))],
    )
    assert line.deadline == sh(2026, 11, 24, 12)
    with pytest.raises(KeyError, match="has no resolution clock"):
        logic.timeline(book, "uk-operations", ClockName.RESOLUTION, sh(2026, 11, 23, 9))
    with pytest.raises(KeyError, match="no version"):
        logic.timeline(book, "cn-operations", ClockName.FIRST_CONTACT, sh(2025, 11, 23, 9))


def test_a_pause_that_arrives_before_its_clock_is_applied_when_the_clock_starts(book: PolicyBook) -> None:
    case = Case(book)
    # agent.actions and case.tracking are two topics: the agent's pause can overtake the tracker's steps.
    early = case.feed(
        event("agent.clock_paused", sh(2026, 11, 5, 10), clock=ClockName.RESOLUTION, reason="等待司法鉴定结论")
    )
    assert early == []
    assert case.journal[-1].action == "parked"
    assert case.facts is not None
    assert len(case.facts.parked) == 1
    started = case.feed(opened(sh(2026, 11, 2, 10)), triaged(sh(2026, 11, 2, 10)))
    assert kinds(started, ClockName.RESOLUTION) == ["clock_started:resolution", "clock_paused:resolution"]
    assert case.facts.parked == ()
    case.feed(event("agent.clock_resumed", sh(2026, 11, 9, 10), clock=ClockName.RESOLUTION, reason="结论已出"))
    assert case.clock(ClockName.RESOLUTION).deadline == sh(2026, 11, 24)  # the same as paused in order


def test_parked_requests_are_bounded(book: PolicyBook) -> None:
    case = Case(book)
    for minute in range(logic.MAX_PARKED + 3):
        case.feed(event("agent.clock_paused", sh(2026, 11, 5, 10, minute), clock=ClockName.PLAN_DECISION, reason="x"))
    assert case.facts is not None
    assert len(case.facts.parked) == logic.MAX_PARKED
    assert case.facts.parked[0].at == sh(2026, 11, 5, 10, 3)
    assert [e.action for e in case.journal].count("parked_dropped") == 3


def test_a_clock_starts_from_the_opening_once_the_facts_that_select_it_arrive(book: PolicyBook) -> None:
    case = Case(book)
    case.feed(opened(sh(2026, 9, 28, 10)))
    # Routing's step came first with the priority: operational clocks start; the complaint clock needs a category.
    case.feed(event("tracking.routed", sh(2026, 9, 28, 10, 0, 2), queue="loans", priority="P2"))
    assert {key[1] for key in case.clocks} == {ClockName.FIRST_CONTACT}
    started = case.feed(triaged(sh(2026, 9, 28, 10, 0, 3)))
    assert kinds(started) == ["clock_started:resolution"]
    assert case.clock(ClockName.RESOLUTION).started_at == sh(2026, 9, 28, 10)
    # A clock that already ran is not started again by a later change of priority.
    case.feed(event("tracking.first_contact", sh(2026, 9, 28, 11)))
    assert kinds(case.feed(triaged(sh(2026, 9, 28, 12), priority="P1")), ClockName.FIRST_CONTACT) == []
