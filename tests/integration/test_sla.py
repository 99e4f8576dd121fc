"""The SLA engine through the real broker and database: cases run to a warning, a breach and an
escalation; two SLA workers at once fire each alert once; Alertmanager gets what on-call needs; the
same events replayed give the same alerts (ids and dedup keys).

case.tracking events are published directly, as the tracker would, with event times set so that the
deadlines of a test policy (one minute) fall a few seconds after the workers are ready.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import sys
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from aiohttp import web
from aiokafka import AIOKafkaProducer

from schemas import topics
from schemas.agent import (
    ClockExtended,
    ClockExtendedEvent,
    ClockPaused,
    ClockPausedEvent,
    ClockResumed,
    ClockResumedEvent,
    ExtensionTarget,
    ExtensionUnit,
)
from schemas.channels import Channel
from schemas.envelope import CloudEvent
from schemas.tracking import (
    CaseMerged,
    CaseMergedEvent,
    CaseOpened,
    CaseOpenedEvent,
    CaseResolved,
    CaseResolvedEvent,
    CaseRoutedStep,
    CaseRoutedStepEvent,
    CaseTriagedStep,
    CaseTriagedStepEvent,
    FirstContact,
    FirstContactEvent,
    PlanAccepted,
    PlanAcceptedEvent,
)
from schemas.values import CaseStatus, Category, ClockName, ContactChannel, Jurisdiction, Priority, Queue, Resolution
from services.runtime.db import database_named
from services.runtime.kafka import ensure_topics
from tests.integration.conftest import Pipeline, read_topic

pytestmark = pytest.mark.integration

POLICIES = """
calendars:
  always: {time_zone: UTC, holidays: every-day, working_hours: ["00:00-24:00"]}
policies:
  - id: it-fast
    version: 1
    effective_from: 2020-01-01T00:00:00Z
    selector: {jurisdictions: [CN]}
    clocks:
      - name: first_contact
        calendar: always
        target: {amount: 1, unit: minutes}
        starts_on: [tracking.opened]
        stops_on: [tracking.first_contact]
        warnings: [{percent: 80}]
        escalations: [{level: 1, after: 2s, to: duty_manager, recipients: [oncall-rota]}]
"""
BREACHING_CASES = 10
TRACKER = "/parley/tracker"


def _event_id(case_id: uuid.UUID, step: str) -> uuid.UUID:
    return uuid.uuid5(case_id, step)


def case_events(case_id: uuid.UUID, opened_at: datetime, contact_after: timedelta | None) -> list[CloudEvent[Any]]:
    events: list[CloudEvent[Any]] = [
        CaseOpenedEvent(
            id=_event_id(case_id, "opened"),
            source=TRACKER,
            time=opened_at,
            subject=str(case_id),
            data=CaseOpened(
                case_id=case_id,
                status=CaseStatus.OPENED,
                channel=Channel.APP,
                feedback_id=_event_id(case_id, "feedback"),
                opened_at=opened_at,
                jurisdiction=Jurisdiction.CN,
            ),
        ),
        CaseTriagedStepEvent(
            id=_event_id(case_id, "triaged"),
            source=TRACKER,
            time=opened_at + timedelta(milliseconds=200),
            subject=str(case_id),
            data=CaseTriagedStep(
                case_id=case_id, status=CaseStatus.TRIAGED, category=Category.LOAN_APPROVAL, priority=Priority.P2
            ),
        ),
    ]
    if contact_after is not None:
        events.append(
            FirstContactEvent(
                id=_event_id(case_id, "first_contact"),
                source=TRACKER,
                time=opened_at + contact_after,
                subject=str(case_id),
                data=FirstContact(
                    case_id=case_id,
                    status=CaseStatus.CONTACTED,
                    agent_id="E20731",
                    contact_channel=ContactChannel.PHONE,
                    seconds_since_opened=int(contact_after.total_seconds()),
                ),
            )
        )
    return events


async def publish(producer: AIOKafkaProducer, pipeline: Pipeline, events: list[CloudEvent[Any]]) -> None:
    for event in events:
        await producer.send_and_wait(
            pipeline.topic(topics.CASE_TRACKING), event.to_json_bytes(), key=str(event.subject).encode()
        )


async def wait_until_ready(pipeline: Pipeline, names: list[str], timeout_seconds: float = 90.0) -> None:
    deadline = time.monotonic() + timeout_seconds
    while time.monotonic() < deadline:
        if all("worker ready" in pipeline.log_text(name) for name in names):
            await asyncio.sleep(3.0)  # the group join settles
            return
        for name in names:
            assert pipeline.processes[name].poll() is None, pipeline.log_text(name)[-3000:]
        await asyncio.sleep(0.3)
    raise AssertionError("SLA workers not ready: " + " | ".join(pipeline.log_text(n)[-2000:] for n in names))


class Alertmanager:
    """A stand-in Alertmanager: records what is posted to /api/v2/alerts."""

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        self.url = ""
        self._runner: web.AppRunner | None = None
        self._arrived = asyncio.Event()

    async def wait_for(self, count: int, timeout_seconds: float) -> None:
        """Until ``count`` alerts arrived, or the time is up."""
        deadline = time.monotonic() + timeout_seconds
        while len(self.received) < count and time.monotonic() < deadline:
            self._arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._arrived.wait(), deadline - time.monotonic())

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/api/v2/alerts", self._post)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}"

    async def _post(self, request: web.Request) -> web.Response:
        self.received.extend(await request.json())
        self._arrived.set()
        return web.json_response({})

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


@pytest.fixture
async def alertmanager() -> AsyncIterator[Alertmanager]:
    server = Alertmanager()
    await server.start()
    yield server
    await server.stop()


def _alerts(records: list[Any]) -> list[dict[str, Any]]:
    return [json.loads(record.value) for record in records]


def _suffix(alert: dict[str, Any]) -> str:
    return str(alert["data"]["dedup_key"]).split("/", 3)[3]


async def test_cases_run_to_warning_breach_and_escalation_once_each_with_two_workers_and_replay_alike(
    pipeline: Pipeline,
    producer: AIOKafkaProducer,
    db: asyncpg.Connection,
    database_server_url: str,
    alertmanager: Alertmanager,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    policies = tmp_path / "sla-policies.yaml"
    policies.write_text(POLICIES, encoding="utf-8")
    monkeypatch.setenv("PARLEY_SLA_POLICIES_PATH", str(policies))
    monkeypatch.setenv("PARLEY_SLA_ALERTMANAGER_URL", alertmanager.url)
    monkeypatch.setenv("PARLEY_SLA_POLL_BATCH", "2")  # small batches: both pollers take due clocks at once
    pipeline.start("sla", "sla-1")
    pipeline.start("sla", "sla-2")
    await wait_until_ready(pipeline, ["sla-1", "sla-2"])

    # Opened 42 s ago on a one-minute clock: warning (80 %) in 6 s, breach in 18 s, escalation in 20 s.
    opened_at = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=42)
    breaching = [uuid.uuid4() for _ in range(BREACHING_CASES)]
    contacted = uuid.uuid4()  # reached in 10 s: its clock is met, nothing else
    published: list[CloudEvent[Any]] = []
    for case_id in breaching:
        published += case_events(case_id, opened_at, None)
    published += case_events(contacted, opened_at, timedelta(seconds=10))
    await publish(producer, pipeline, published)

    expected = BREACHING_CASES * 4 + 2
    records = await read_topic(
        pipeline.bootstrap_servers, pipeline.topic(topics.SLA_ALERTS), at_least=expected, timeout_seconds=90
    )
    received_at = time.time()
    alerts = _alerts(records)

    # Exactly once each, although two workers consumed and polled at the same time.
    assert len(alerts) == expected, Counter(a["type"] for a in alerts)
    assert len({a["id"] for a in alerts}) == expected
    assert len({a["data"]["dedup_key"] for a in alerts}) == expected
    by_case: dict[str, list[dict[str, Any]]] = defaultdict(list)
    in_log_order = sorted(zip(records, alerts, strict=True), key=lambda pair: (pair[0].partition, pair[0].offset))
    for _record, alert in in_log_order:
        by_case[alert["data"]["case_id"]].append(alert)
    deadline = opened_at + timedelta(minutes=1)
    for case_id in breaching:
        sequence = by_case[str(case_id)]
        # In order on the case's partition: started, warning, breached, escalated.
        assert [_suffix(a) for a in sequence] == ["started", "warning/1/x0", "breached", "escalated/1"]
        _started, warning, breached, escalated = sequence
        assert datetime.fromisoformat(warning["time"]) == opened_at + timedelta(seconds=48)
        assert warning["data"]["elapsed_fraction"] == pytest.approx(0.8)
        assert warning["data"]["remaining_seconds"] == 12
        assert datetime.fromisoformat(breached["time"]) == deadline
        assert breached["data"]["severity"] == "critical"
        assert breached["data"]["policy_id"] == "it-fast"
        assert breached["data"]["policy_version"] == 1
        assert escalated["data"]["overdue_seconds"] == 2
        assert escalated["data"]["recipients"] == ["oncall-rota"]
        assert all(datetime.fromisoformat(a["data"]["deadline"]) == deadline for a in sequence)
    assert [_suffix(a) for a in by_case[str(contacted)]] == ["started", "met"]
    assert by_case[str(contacted)][1]["data"]["seconds_to_spare"] == 50
    # The breach reached the topic within seconds of the deadline (the embedded broker's fetch wait included).
    assert received_at - deadline.timestamp() < 30

    # Both pollers fired alerts: they shared the due clocks, and none fired one twice.
    assert all("SLA alerts fired" in pipeline.log_text(name) for name in ("sla-1", "sla-2"))
    # The database agrees with the topic.
    fired = await db.fetchval("SELECT count(*) FROM sla.clocks WHERE 'breached' = ANY(fired)")
    assert fired == BREACHING_CASES
    assert await db.fetchval("SELECT count(*) FROM sla.clocks WHERE status = 'met'") == 1
    journal = await db.fetchval("SELECT count(*) FROM sla.clock_journal WHERE action = 'started'")
    assert journal == BREACHING_CASES + 1

    # Alertmanager got a warning, a breach and an escalation per breaching case, and a resolution for the met one.
    await alertmanager.wait_for(BREACHING_CASES * 3 + 3, timeout_seconds=30)
    names = Counter(a["labels"]["alertname"] for a in alertmanager.received if a["startsAt"] != a["endsAt"])
    assert names == {"SlaWarning": BREACHING_CASES, "SlaBreached": BREACHING_CASES, "SlaEscalated": BREACHING_CASES}
    resolved = [a for a in alertmanager.received if a["startsAt"] == a["endsAt"]]
    assert {a["labels"]["case_id"] for a in resolved} == {str(contacted)}

    # On-call's view: `parley alerts` prints one line per alert.
    follow = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "services.cli", "alerts", "--from-beginning", "--max", str(expected), "--timeout", "60"],
        env=pipeline.env(),
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert follow.returncode == 0, follow.stderr
    lines = follow.stdout.splitlines()
    assert len(lines) == expected + 1  # a header, then the alerts
    assert sum("BREACHED" in line for line in lines) == BREACHING_CASES
    assert sum("ESCALATED" in line and "-> duty_manager (level 1)" in line for line in lines) == BREACHING_CASES
    assert "\033[" not in follow.stdout  # not a terminal: no colour codes

    # The same events again (a tracker's retry): nothing new.
    await publish(producer, pipeline, published)
    again = await read_topic(
        pipeline.bootstrap_servers,
        pipeline.topic(topics.SLA_ALERTS),
        at_least=expected + 1,
        timeout_seconds=8,
    )
    assert len(again) == expected

    # Replayed into a fresh engine (its own database and topics): the same alerts, the same ids and keys.
    pipeline.stop_all()
    replay_db = f"parley_test_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(database_server_url)
    await admin.execute(f'CREATE DATABASE "{replay_db}"')
    replay = Pipeline(
        pipeline.bootstrap_servers,
        database_named(database_server_url, replay_db),
        f"replay-{uuid.uuid4().hex[:6]}.",
        tmp_path / "replay",
    )
    replay.work_dir.mkdir()
    monkeypatch.delenv("PARLEY_SLA_ALERTMANAGER_URL")
    try:
        await ensure_topics(replay.settings, replay.bootstrap_servers, topics.ALL_TOPICS)
        replay.start("sla", "sla-replay")
        await wait_until_ready(replay, ["sla-replay"])
        await publish(producer, replay, published)
        replayed = _alerts(
            await read_topic(
                replay.bootstrap_servers, replay.topic(topics.SLA_ALERTS), at_least=expected, timeout_seconds=60
            )
        )
    finally:
        await asyncio.to_thread(replay.stop_all)
        await admin.execute(f'DROP DATABASE IF EXISTS "{replay_db}" WITH (FORCE)')
        await admin.close()
    assert sorted((a["id"], a["data"]["dedup_key"], a["time"]) for a in replayed) == sorted(
        (a["id"], a["data"]["dedup_key"], a["time"]) for a in alerts
    )


PAUSABLE = """
calendars:
  always: {time_zone: UTC, holidays: every-day, working_hours: ["00:00-24:00"]}
pause_conditions:
  waiting_on_customer: [customer]
policies:
  - id: it-pausable
    version: 1
    effective_from: 2020-01-01T00:00:00Z
    clocks:
      - name: resolution
        calendar: always
        target: {amount: 10, unit: minutes}
        starts_on: [tracking.opened]
        stops_on: [tracking.resolved]
        pause_conditions: [waiting_on_customer]
"""


def agent_action(kind: str, case_id: uuid.UUID, at: datetime, reason: str) -> bytes:
    model = ClockPausedEvent if kind == "clock_paused" else ClockResumedEvent
    data = (ClockPaused if kind == "clock_paused" else ClockResumed)(
        case_id=case_id, agent_id="E20731", clock=ClockName.RESOLUTION, reason=reason
    )
    event = model(id=uuid.uuid4(), source="/agent-desktop/test", time=at, subject=str(case_id), data=data)
    return event.to_json_bytes()


async def test_an_agent_pauses_and_resumes_a_clock_and_a_pause_without_an_allowed_reason_is_refused(
    pipeline: Pipeline,
    producer: AIOKafkaProducer,
    db: asyncpg.Connection,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    policies = tmp_path / "sla-policies.yaml"
    policies.write_text(PAUSABLE, encoding="utf-8")
    monkeypatch.setenv("PARLEY_SLA_POLICIES_PATH", str(policies))
    pipeline.start("sla")
    await wait_until_ready(pipeline, ["sla"])
    case_id = uuid.uuid4()
    opened_at = datetime.now(UTC).replace(microsecond=0)
    await publish(producer, pipeline, case_events(case_id, opened_at, None))
    actions = pipeline.topic(topics.AGENT_ACTIONS)
    key = str(case_id).encode()
    paused_at = opened_at + timedelta(minutes=2)
    for kind, at, reason in (
        ("clock_paused", paused_at, "agent at lunch"),
        ("clock_paused", paused_at, "waiting for the customer's bank statements"),
        ("clock_resumed", paused_at + timedelta(minutes=3), "statements received"),
    ):
        # Another topic: these may reach the engine before the tracker's steps; they wait for the clock then.
        await producer.send_and_wait(actions, agent_action(kind, case_id, at, reason), key=key)
    alerts = _alerts(
        await read_topic(pipeline.bootstrap_servers, pipeline.topic(topics.SLA_ALERTS), at_least=4, timeout_seconds=60)
    )
    assert [_suffix(a) for a in alerts][:1] == ["started"]
    kinds = [a["type"].removeprefix("com.parley.sla.").removesuffix(".v1") for a in alerts]
    assert kinds == ["clock_started", "clock_pause_refused", "clock_paused", "clock_resumed"]
    refused, paused, resumed = alerts[1:]
    assert "allowed pause conditions (waiting_on_customer)" in refused["data"]["refusal"]
    assert paused["data"]["remaining_seconds"] == 8 * 60
    assert resumed["data"]["paused_seconds"] == 3 * 60
    assert datetime.fromisoformat(resumed["data"]["deadline"]) == opened_at + timedelta(minutes=13)
    journal = await db.fetch("SELECT action, reason FROM sla.clock_journal WHERE case_id = $1 ORDER BY id", case_id)
    changes = [row for row in journal if row["action"] != "parked"]
    assert [row["action"] for row in changes] == ["started", "pause_refused", "paused", "resumed"]
    assert changes[2]["reason"] == "waiting_on_customer: waiting for the customer's bank statements"
    clock = await db.fetchrow("SELECT status, deadline, pauses FROM sla.clocks WHERE case_id = $1", case_id)
    assert clock["status"] == "running"
    assert clock["deadline"] == opened_at + timedelta(minutes=13)


async def test_a_changed_policy_version_or_a_broken_file_stops_the_worker_with_the_reason(
    pipeline: Pipeline, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    policies = tmp_path / "sla-policies.yaml"
    policies.write_text(PAUSABLE, encoding="utf-8")
    monkeypatch.setenv("PARLEY_SLA_POLICIES_PATH", str(policies))
    pipeline.start("sla", "first")
    await wait_until_ready(pipeline, ["first"])
    pipeline.stop("first")
    # The same version, another target: the clocks started under version 1 would change meaning.
    policies.write_text(PAUSABLE.replace("amount: 10", "amount: 20"), encoding="utf-8")
    changed = pipeline.start("sla", "changed")
    assert await asyncio.to_thread(changed.wait, 90) != 0
    assert "it-pausable version 1 differs from the version first loaded" in pipeline.log_text("changed")
    policies.write_text(PAUSABLE.replace("unit: minutes", "unit: fortnights"), encoding="utf-8")
    broken = pipeline.start("sla", "broken")
    assert await asyncio.to_thread(broken.wait, 60) != 0
    log = pipeline.log_text("broken")
    assert "is not a valid SLA policies file" in log
    assert "policies[0] (it-pausable).clocks[0].target.unit" in log


EXTENDING = """
calendars:
  always: {time_zone: UTC, holidays: every-day, working_hours: ["00:00-24:00"]}
policies:
  - id: it-complaint
    version: 1
    effective_from: 2020-01-01T00:00:00Z
    selector: {channels: [app]}
    clocks:
      - name: resolution
        calendar: always
        target: {amount: 10, unit: minutes}
        starts_on: [tracking.opened]
        stops_on: [tracking.resolved, tracking.plan_accepted]
        extensions:
          - to: {amount: 20, unit: minutes}
          - to: {amount: 30, unit: minutes}
            approval_required: true
  - id: it-referral
    version: 1
    effective_from: 2020-01-01T00:00:00Z
    selector: {channels: [regulator]}
    clocks:
      - name: regulator_response
        calendar: always
        target: {amount: 10, unit: minutes}
        starts_on: [tracking.opened]
        stops_on: [tracking.resolved, tracking.plan_accepted]
        restart_on_new_facts: true
"""


def _step(event_class: Any, case_id: uuid.UUID, name: str, at: datetime, data: Any) -> CloudEvent[Any]:
    event: CloudEvent[Any] = event_class(
        id=_event_id(case_id, name), source=TRACKER, time=at, subject=str(case_id), data=data
    )
    return event


def opened_and_triaged(case_id: uuid.UUID, channel: Channel, at: datetime) -> list[CloudEvent[Any]]:
    return [
        _step(
            CaseOpenedEvent,
            case_id,
            "opened",
            at,
            CaseOpened(
                case_id=case_id,
                status=CaseStatus.OPENED,
                channel=channel,
                feedback_id=_event_id(case_id, "feedback"),
                opened_at=at,
                jurisdiction=Jurisdiction.CN,
            ),
        ),
        _step(
            CaseTriagedStepEvent,
            case_id,
            "triaged",
            at + timedelta(seconds=1),
            CaseTriagedStep(
                case_id=case_id, status=CaseStatus.TRIAGED, category=Category.LOAN_APPROVAL, priority=Priority.P2
            ),
        ),
    ]


def extension(case_id: uuid.UUID, at: datetime, approved_by: str | None, target: int | None = None) -> bytes:
    data = ClockExtended(
        case_id=case_id,
        agent_id="E20731",
        clock=ClockName.RESOLUTION,
        reason="情况复杂，需调取交易流水",
        approved_by=approved_by,
        new_target=ExtensionTarget(amount=target, unit=ExtensionUnit.MINUTES) if target else None,
    )
    event = ClockExtendedEvent(
        id=uuid.uuid5(case_id, f"extend:{at.isoformat()}"),
        source="/agent-desktop/test",
        time=at,
        subject=str(case_id),
        data=data,
    )
    return event.to_json_bytes()


def _kinds(alerts: list[dict[str, Any]], case_id: uuid.UUID) -> list[str]:
    return [
        a["type"].removeprefix("com.parley.sla.").removesuffix(".v1") + f"/{a['data']['cycle']}"
        for a in alerts
        if a["data"]["case_id"] == str(case_id)
    ]


async def test_agents_extend_a_clock_a_plan_decides_it_new_facts_restart_one_and_a_pr_copy_keeps_the_queue(
    pipeline: Pipeline,
    producer: AIOKafkaProducer,
    db: asyncpg.Connection,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    policies = tmp_path / "sla-policies.yaml"
    policies.write_text(EXTENDING, encoding="utf-8")
    monkeypatch.setenv("PARLEY_SLA_POLICIES_PATH", str(policies))
    pipeline.start("sla")
    await wait_until_ready(pipeline, ["sla"])
    alerts_topic = pipeline.topic(topics.SLA_ALERTS)
    base = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=1)
    complaint, referral = uuid.uuid4(), uuid.uuid4()

    routed = [
        _step(
            CaseRoutedStepEvent,
            complaint,
            f"routed:{lane}",
            base + timedelta(seconds=2 + number),
            CaseRoutedStep(case_id=complaint, status=CaseStatus.ROUTED, queue=queue, priority=Priority.P2, lane=lane),
        )
        for number, (queue, lane) in enumerate([(Queue.LOANS, "primary"), (Queue.PUBLIC_OPINION, "public_opinion")])
    ]
    await publish(
        producer,
        pipeline,
        [
            *opened_and_triaged(complaint, Channel.APP, base),
            *routed,
            *opened_and_triaged(referral, Channel.REGULATOR, base),
        ],
    )
    await read_topic(pipeline.bootstrap_servers, alerts_topic, at_least=2, timeout_seconds=60)

    # The agent extends to 20 minutes, asks for the approved step without an approver, then with one.
    actions = pipeline.topic(topics.AGENT_ACTIONS)
    key = str(complaint).encode()
    for seconds, approver, target in ((10, None, None), (11, None, 30), (12, "E10422", 30)):
        await producer.send_and_wait(
            actions, extension(complaint, base + timedelta(seconds=seconds), approver, target), key=key
        )
    await read_topic(pipeline.bootstrap_servers, alerts_topic, at_least=5, timeout_seconds=60)

    # The customer agrees a plan; the referral gets new facts, then is resolved.
    new_facts = _step(
        CaseMergedEvent,
        referral,
        "merged",
        base + timedelta(seconds=15),
        CaseMerged(
            case_id=referral,
            status=CaseStatus.TRIAGED,
            feedback_id=_event_id(referral, "second-feedback"),
            channel=Channel.REGULATOR,
            match_basis="explicit_reference",
            new_facts=True,
        ),
    )
    later = [
        _step(
            PlanAcceptedEvent,
            complaint,
            "plan_accepted",
            base + timedelta(seconds=20),
            PlanAccepted(case_id=complaint, status=CaseStatus.PLAN_ACTIVE, plan_id=uuid.uuid4(), agent_id="E20731"),
        ),
        new_facts,
        _step(
            CaseResolvedEvent,
            referral,
            "resolved",
            base + timedelta(seconds=30),
            CaseResolved(
                case_id=referral, status=CaseStatus.RESOLVED, resolution=Resolution.EXPLAINED, agent_id="E20731"
            ),
        ),
    ]
    await publish(producer, pipeline, later)
    alerts = _alerts(await read_topic(pipeline.bootstrap_servers, alerts_topic, at_least=9, timeout_seconds=60))

    assert _kinds(alerts, complaint) == [
        "clock_started/0",
        "clock_extended/0",
        "clock_extension_refused/0",
        "clock_extended/0",
        "clock_met/0",
    ]
    mine = [a["data"] for a in alerts if a["data"]["case_id"] == str(complaint)]
    assert datetime.fromisoformat(mine[1]["deadline"]) == base + timedelta(minutes=20)
    assert mine[2]["refusal"] == "this extension needs an approver (approved_by)"
    assert (mine[3]["extension"], mine[3]["approved_by"]) == (2, "E10422")
    assert datetime.fromisoformat(mine[3]["deadline"]) == base + timedelta(minutes=30)
    assert mine[4]["seconds_to_spare"] == 30 * 60 - 20

    assert _kinds(alerts, referral) == ["clock_started/0", "clock_cancelled/0", "clock_started/1", "clock_met/1"]
    theirs = [a["data"] for a in alerts if a["data"]["case_id"] == str(referral)]
    assert theirs[2]["dedup_key"] == f"{referral}/regulator_response/1/started"
    assert datetime.fromisoformat(theirs[2]["deadline"]) == base + timedelta(seconds=15, minutes=10)
    assert len({a["id"] for a in alerts}) == len(alerts) == 9

    # The PR desk's copy did not take the case out of its queue; the journal has the requests and the restart.
    assert await db.fetchval("SELECT queue FROM sla.cases WHERE case_id = $1", complaint) == "loans"
    journal = await db.fetch(
        "SELECT action FROM sla.clock_journal WHERE case_id = $1 AND action <> 'parked' ORDER BY id", complaint
    )
    assert [row["action"] for row in journal] == ["started", "extended", "extension_refused", "extended", "met"]
    clocks = await db.fetch("SELECT cycle, status FROM sla.clocks WHERE case_id = $1 ORDER BY cycle", referral)
    assert [(row["cycle"], row["status"]) for row in clocks] == [(0, "cancelled"), (1, "met")]
