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
from services.sla.calendar import Unit
from services.sla.logic import CaseFacts, ClockState, ClockStatus, SlaEvent
from services.sla.policies import PolicyBook, PolicyError, book_from_file, load_policy_book, parse_policy_document

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


# ---- agent.clock_extended: granted, refused with a reason, a chosen step ----


def extend(at: datetime, clock: ClockName = ClockName.RESOLUTION, **fields: Any) -> SlaEvent:
    defaults: dict[str, Any] = {"clock": clock, "reason": "情况复杂，需调取交易流水", "agent_id": "E20731"}
    return event(logic.EXTEND, at, **{**defaults, **fields})


def test_an_extension_is_refused_on_sla_alerts_with_why(book: PolicyBook) -> None:
    case = Case(book)
    case.feed(opened(sh(2026, 10, 12, 10)), triaged(sh(2026, 10, 12, 10)))
    assert case.clock(ClockName.RESOLUTION).deadline == sh(2026, 10, 28)  # 15 days from 13 October, to 24:00
    granted = case.feed(extend(sh(2026, 10, 14, 11, 20)))
    assert kinds(granted, ClockName.RESOLUTION) == ["clock_extended:resolution"]
    assert (granted[-1].data.deadline, granted[-1].data.agent_id) == (sh(2026, 11, 12), "E20731")  # 30 days
    assert case.journal[-1].reason == "to 30 days: 情况复杂，需调取交易流水"

    request = extend(sh(2026, 10, 30, 9), reason="特别复杂，需总行审批")
    refused = case.feed(request)
    assert kinds(refused, ClockName.RESOLUTION) == ["clock_extension_refused:resolution"]
    alert = refused[-1]
    assert alert.data.refusal == "this extension needs an approver (approved_by)"
    assert (alert.data.reason, alert.data.agent_id, alert.data.severity.value) == (
        "特别复杂，需总行审批",
        "E20731",
        "warning",
    )
    assert alert.data.deadline == sh(2026, 11, 12)  # the deadline stands
    assert alert.data.remaining_seconds == int((sh(2026, 11, 12) - sh(2026, 10, 30, 9)).total_seconds())
    assert alert.data.dedup_key == f"{CASE}/resolution/0/extension_refused/{request.event_id}"
    assert alert.id == uuid.uuid5(logic.ALERT_ID_NAMESPACE, alert.data.dedup_key)
    assert case.journal[-1].action == "extension_refused"

    own = case.feed(extend(sh(2026, 10, 30, 9, 5), approved_by="E20731"))
    assert own[-1].data.refusal == "the agent who asks for an extension cannot also approve it"
    approved = case.feed(extend(sh(2026, 10, 30, 9, 10), approved_by="E10422"))
    assert kinds(approved, ClockName.RESOLUTION) == ["clock_extended:resolution"]
    # 60 days from 13 October: Friday 11 December, to 24:00.
    assert (approved[-1].data.deadline, approved[-1].data.extension) == (sh(2026, 12, 12), 2)
    assert approved[-1].data.approved_by == "E10422"
    last = case.feed(extend(sh(2026, 11, 2, 9), approved_by="E10422"))
    assert "allows 2 extension(s) (30 days, 60 days with approval), all used" in last[-1].data.refusal


def test_an_extension_past_the_calendar_data_is_refused_not_dead_lettered(book: PolicyBook) -> None:
    case = Case(book)
    case.feed(opened(sh(2026, 12, 1, 10)), triaged(sh(2026, 12, 1, 10)))
    case.feed(extend(sh(2026, 12, 3, 9)))  # 30 days: 31 December, still in 2026
    refused = case.feed(extend(sh(2026, 12, 10, 9), approved_by="E10422"))  # 60 days reach into 2027
    assert kinds(refused, ClockName.RESOLUTION) == ["clock_extension_refused:resolution"]
    assert "no holiday data for 2027" in refused[-1].data.refusal
    assert case.clock(ClockName.RESOLUTION).extensions == 1


def test_a_clock_without_extensions_or_on_the_regulators_deadline_refuses_them(book: PolicyBook) -> None:
    case = Case(book)
    case.feed(opened(sh(2026, 12, 1, 10)), triaged(sh(2026, 12, 1, 10)))
    refused = case.feed(extend(sh(2026, 12, 1, 11), clock=ClockName.FIRST_CONTACT))
    assert kinds(refused) == ["clock_extension_refused:first_contact"]
    assert refused[0].data.refusal == "the first_contact clock of policy cn-operations cannot be extended"

    referral = Case(book)
    referral.feed(
        opened(sh(2026, 12, 1, 10), channel="regulator", regulator_deadline=sh(2026, 12, 9, 17)),
        triaged(sh(2026, 12, 1, 10)),
    )
    refused = referral.feed(extend(sh(2026, 12, 1, 11), clock=ClockName.REGULATOR_RESPONSE, approved_by="E10422"))
    assert kinds(refused, ClockName.REGULATOR_RESPONSE) == ["clock_extension_refused:regulator_response"]
    assert "regulator's own deadline" in refused[-1].data.refusal
    assert referral.clock(ClockName.REGULATOR_RESPONSE).deadline == sh(2026, 12, 9, 17)


def test_a_new_target_names_the_next_step_unless_the_policy_lets_the_agent_choose(book: PolicyBook) -> None:
    case = Case(book)
    case.feed(opened(sh(2026, 10, 12, 10)), triaged(sh(2026, 10, 12, 10)))
    case.feed(event("tracking.first_contact", sh(2026, 10, 12, 11)))
    skipping = case.feed(extend(sh(2026, 10, 14, 9), new_target=logic.Target(60, Unit.DAYS), approved_by="E10422"))
    assert "one at a time: the next is to 30 days" in skipping[-1].data.refusal
    unknown = case.feed(extend(sh(2026, 10, 14, 9, 1), new_target=logic.Target(45, Unit.DAYS)))
    assert unknown[-1].data.refusal == "no extension step of the policy allows 45 days (30 days, 60 days with approval)"
    assert case.clock(ClockName.RESOLUTION).extensions == 0
    nxt = case.feed(extend(sh(2026, 10, 14, 9, 2), new_target=logic.Target(30, Unit.DAYS)))
    assert kinds(nxt) == ["clock_extended:resolution"]
    again = case.feed(extend(sh(2026, 10, 14, 9, 3), new_target=logic.Target(30, Unit.DAYS)))
    assert again[-1].data.refusal == "the clock already has 30 days or more"


CHOOSING = """
calendars:
  desk: {time_zone: Asia/Shanghai, holidays: every-day, working_hours: ["00:00-24:00"]}
policies:
  - id: choosing
    version: 1
    effective_from: 2026-01-01T00:00:00+08:00
    clocks:
      - name: resolution
        calendar: desk
        target: {amount: 15, unit: days}
        starts_on: [tracking.opened]
        stops_on: [tracking.resolved]
        extension_choice: true
        extensions:
          - to: {amount: 20, unit: days}
          - to: {amount: 30, unit: days}
          - to: {amount: 60, unit: days}
            approval_required: true
"""


def test_where_the_policy_lets_the_agent_choose_a_later_step_needs_the_approvals_it_skips() -> None:
    book = book_from_file(parse_policy_document(yaml.safe_load(CHOOSING), "test"))
    case = Case(book)
    case.feed(opened(sh(2026, 12, 1, 10)), triaged(sh(2026, 12, 1, 10)))
    chosen = case.feed(extend(sh(2026, 12, 2, 10), new_target=logic.Target(30, Unit.DAYS)))
    assert kinds(chosen) == ["clock_extended:resolution"]
    assert (chosen[0].data.extension, chosen[0].data.deadline) == (2, sh(2026, 12, 31, 10))  # step 2: 30 days
    to_sixty = case.feed(extend(sh(2026, 12, 3, 10), new_target=logic.Target(60, Unit.DAYS)))
    assert to_sixty[0].data.refusal == "this extension needs an approver (approved_by)"
    with_approval = case.feed(
        extend(sh(2026, 12, 3, 10, 1), new_target=logic.Target(60, Unit.DAYS), approved_by="E10422")
    )
    assert with_approval[0].data.deadline == sh(2027, 1, 30, 10)  # every day counts: no holiday data needed


def test_extension_choice_needs_extensions() -> None:
    without_steps = CHOOSING.split("        extensions:")[0]
    with pytest.raises(PolicyError, match="extension_choice needs extensions to choose from"):
        parse_policy_document(yaml.safe_load(without_steps), "test")


def test_an_extension_that_overtakes_its_clock_waits_and_applies_at_its_own_time(book: PolicyBook) -> None:
    case = Case(book)
    early = case.feed(extend(sh(2026, 10, 14, 9), new_target=logic.Target(30, Unit.DAYS)))
    assert early == []
    assert case.journal[-1].action == "parked"
    started = case.feed(opened(sh(2026, 10, 12, 10)), triaged(sh(2026, 10, 12, 10)))
    assert kinds(started, ClockName.RESOLUTION) == ["clock_started:resolution", "clock_extended:resolution"]
    assert case.clock(ClockName.RESOLUTION).deadline == sh(2026, 11, 12)
    assert started[-1].time == sh(2026, 10, 14, 9)


# ---- an agreed plan decides a complaint (policy version 2) ----


def test_an_agreed_plan_meets_the_chinese_complaint_clock_from_version_2(book: PolicyBook) -> None:
    case = Case(book)
    case.feed(opened(sh(2026, 12, 1, 10)), triaged(sh(2026, 12, 1, 10, 0, 1), category="repayment_hardship"))
    resolution = case.clock(ClockName.RESOLUTION)
    assert (resolution.policy_id, resolution.policy_version) == ("cn-nfra-complaint", 2)
    case.feed(event("tracking.first_contact", sh(2026, 12, 1, 11)), event("tracking.plan_proposed", sh(2026, 12, 2, 9)))
    agreed = case.feed(event("tracking.plan_accepted", sh(2026, 12, 4, 15)))
    assert sorted(kinds(agreed)) == ["clock_met:plan_decision", "clock_met:resolution"]
    met = next(a for a in agreed if a.data.clock is ClockName.RESOLUTION)
    assert met.data.seconds_to_spare == int((sh(2026, 12, 17) - sh(2026, 12, 4, 15)).total_seconds())
    assert kinds(case.poll(sh(2026, 12, 31)), ClockName.RESOLUTION) == []  # the plan runs on: no breach
    assert case.clock(ClockName.NEXT_RESPONSE, 1).status is ClockStatus.RUNNING  # updates go on while it runs


def test_a_clock_started_under_version_1_keeps_running_past_an_agreed_plan(book: PolicyBook) -> None:
    case = Case(book)
    case.feed(opened(sh(2026, 11, 20, 10)), triaged(sh(2026, 11, 20, 10), category="repayment_hardship"))
    assert case.clock(ClockName.RESOLUTION).policy_version == 1
    assert kinds(case.feed(event("tracking.plan_accepted", sh(2026, 11, 26, 15))), ClockName.RESOLUTION) == []
    assert case.clock(ClockName.RESOLUTION).status is ClockStatus.RUNNING


@pytest.mark.parametrize(
    ("jurisdiction", "channel", "at", "stopped"),
    [
        ("CN", "regulator", sh(2026, 12, 1, 10), {ClockName.REGULATOR_RESPONSE}),
        (
            "UK",
            "app",
            datetime(2026, 12, 1, 10, tzinfo=LONDON),
            {ClockName.SUMMARY_RESOLUTION, ClockName.FINAL_RESPONSE},
        ),
        ("US", "app", datetime(2026, 12, 1, 10, tzinfo=NEW_YORK), {ClockName.FINAL_RESPONSE}),
    ],
)
def test_an_agreed_plan_meets_the_decision_clocks_of_every_jurisdiction(
    book: PolicyBook, jurisdiction: str, channel: str, at: datetime, stopped: set[ClockName]
) -> None:
    case = Case(book)
    case.feed(opened(at, jurisdiction=jurisdiction, channel=channel), triaged(at))
    case.feed(event("tracking.first_contact", at + timedelta(hours=1)))
    agreed = case.feed(event("tracking.plan_accepted", at + timedelta(days=1)))
    met = {a.data.clock for a in agreed if a.type.endswith("clock_met.v1")}
    assert met == stopped
    assert all(a.data.policy_version == 2 for a in agreed)


# ---- a PR-desk copy does not move the case's queue ----


def test_only_primary_routing_gives_the_case_its_queue(book: PolicyBook) -> None:
    case = Case(book)
    case.feed(opened(sh(2026, 11, 28, 10)), triaged(sh(2026, 11, 28, 10)))  # a Saturday: the desk is closed
    case.feed(event("tracking.routed", sh(2026, 11, 28, 10, 0, 1), queue="loans", priority="P2"))  # lane missing
    assert case.facts is not None
    assert case.facts.queue == "loans"
    copy = case.feed(
        event("tracking.routed", sh(2026, 11, 28, 11), queue="public_opinion", priority="P2", lane="public_opinion")
    )
    assert copy == []
    assert case.facts.queue == "loans"
    first_contact = case.clock(ClockName.FIRST_CONTACT)
    # The PR desk works every day (cn-hotline), but the case is worked in loans: the desk calendar stands.
    assert (first_contact.queue, first_contact.calendar, first_contact.deadline) == (
        "loans",
        "cn-complaints-desk",
        sh(2026, 11, 30, 18),
    )
    case.feed(event("tracking.routed", sh(2026, 11, 28, 12), queue="fraud", priority="P2", lane="primary"))
    moved = case.clock(ClockName.FIRST_CONTACT)
    assert (case.facts.queue, moved.queue, moved.calendar) == ("fraud", "fraud", "cn-hotline")


# ---- new facts restart a regulatory clock where the policy says so ----


def merged(at: datetime, new_facts: bool) -> SlaEvent:
    return event("tracking.merged", at, new_facts=new_facts)


def test_new_facts_restart_the_referral_clock_with_a_new_run_and_its_own_dedup_keys(book: PolicyBook) -> None:
    case = Case(book)
    case.feed(opened(sh(2026, 11, 24, 10), channel="regulator"), triaged(sh(2026, 11, 24, 10)))
    first = case.clock(ClockName.REGULATOR_RESPONSE)
    assert (first.policy_version, first.deadline) == (2, sh(2026, 12, 10))  # 15 days from 25 November
    case.poll(sh(2026, 12, 2, 12))  # the 50 % warning of the first run fires
    warnings = [
        a for a in case.alerts if a.type.endswith("warning.v1") and a.data.clock is ClockName.REGULATOR_RESPONSE
    ]
    assert [a.data.dedup_key for a in warnings] == [f"{CASE}/regulator_response/0/warning/1/x0"]
    assert case.feed(merged(sh(2026, 12, 3, 15), new_facts=False)) == []  # a repeat with nothing new
    restarted = case.feed(merged(sh(2026, 12, 4, 15), new_facts=True))
    assert kinds(restarted, ClockName.REGULATOR_RESPONSE) == [
        "clock_cancelled:regulator_response",
        "clock_started:regulator_response",
    ]
    cancelled, started = restarted
    assert cancelled.data.reason == "new facts merged into the case: restarted"
    assert (cancelled.data.cycle, started.data.cycle) == (0, 1)
    assert started.data.dedup_key == f"{CASE}/regulator_response/1/started"
    run = case.clock(ClockName.REGULATOR_RESPONSE, 1)
    # 15 days from 5 December end on Saturday 19: rolled to Monday 21, to 24:00.
    assert (run.started_at, run.deadline) == (sh(2026, 12, 4, 15), sh(2026, 12, 22))
    assert case.clock(ClockName.REGULATOR_RESPONSE).status is ClockStatus.CANCELLED
    later = [a for a in case.poll(sh(2026, 12, 23)) if a.data.clock is ClockName.REGULATOR_RESPONSE]
    assert {a.data.cycle for a in later} == {1}  # the first run fires nothing more
    assert [a.data.dedup_key.split("/", 3)[3] for a in later][:2] == ["warning/1/x0", "warning/2/x0"]
    assert any(a.type.endswith("breached.v1") and a.time == sh(2026, 12, 22) for a in later)
    # The first-contact clock does not restart (the policy does not say so), nor does a complaint clock.
    assert (CASE, ClockName.FIRST_CONTACT, 1) not in case.clocks


def test_new_facts_leave_a_clock_alone_without_the_setting_or_on_a_regulators_own_deadline(book: PolicyBook) -> None:
    complaint = Case(book)
    complaint.feed(opened(sh(2026, 11, 24, 10)), triaged(sh(2026, 11, 24, 10)))
    assert kinds(complaint.feed(merged(sh(2026, 11, 26, 10), new_facts=True)), ClockName.RESOLUTION) == []
    assert (CASE, ClockName.RESOLUTION, 1) not in complaint.clocks

    referral = Case(book)
    referral.feed(
        opened(sh(2026, 11, 24, 10), channel="regulator", regulator_deadline=sh(2026, 12, 9, 17)),
        triaged(sh(2026, 11, 24, 10)),
    )
    assert kinds(referral.feed(merged(sh(2026, 11, 26, 10), new_facts=True)), ClockName.REGULATOR_RESPONSE) == []
    assert referral.journal[-1].action == "restart_skipped"
    assert referral.clock(ClockName.REGULATOR_RESPONSE).deadline == sh(2026, 12, 9, 17)


def test_a_replay_of_a_restarted_clock_gives_the_same_alerts(book: PolicyBook) -> None:
    events = [
        opened(sh(2026, 11, 24, 10), channel="regulator"),
        triaged(sh(2026, 11, 24, 10)),
        merged(sh(2026, 12, 4, 15), new_facts=True),
        event("tracking.resolved", sh(2026, 12, 22, 10)),
    ]
    live = Case(book)
    for item, poll_at in zip(events, [None, sh(2026, 12, 3), None, None], strict=True):
        live.feed(item)
        if poll_at is not None:
            live.poll(poll_at)
    replay = Case(book)
    replay.feed(*events)
    assert sorted(a.model_dump_json() for a in replay.alerts) == sorted(a.model_dump_json() for a in live.alerts)
