"""The tracker through the real broker and database, as a worker process.

Routing, agent desktops and the planner are played by the test: it publishes case.routed, agent.actions and
plan.proposed events directly, and reads case.tracking, plan.requested and the tables.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from aiokafka import AIOKafkaProducer

from schemas import topics
from schemas.plans import PlanRequestedEvent
from services.tracker.logic import case_id_for
from tests.integration.conftest import Pipeline, read_topic, wait_for_rows
from tests.unit.test_tracker_support import account, action, proposal, proposed, routed

pytestmark = pytest.mark.integration

PARLEY = [sys.executable, "-m", "services.cli"]


def short(event_type: str) -> str:
    return event_type.removeprefix("com.parley.").removesuffix(".v1")


async def send_routed(producer: AIOKafkaProducer, pipeline: Pipeline, incoming: Any) -> None:
    data = incoming.event.data
    topic = pipeline.topic(topics.ROUTED_PREFIX + data.queue.value)
    await producer.send_and_wait(topic, incoming.value, key=str(data.case_id).encode())


async def send_action(producer: AIOKafkaProducer, pipeline: Pipeline, incoming: Any) -> None:
    key = str(incoming.event.data.case_id).encode()
    await producer.send_and_wait(pipeline.topic(topics.AGENT_ACTIONS), incoming.value, key=key)


async def tracking_by_case(pipeline: Pipeline, at_least: int) -> dict[str, list[str]]:
    records = await read_topic(pipeline.bootstrap_servers, pipeline.topic(topics.CASE_TRACKING), at_least=at_least)
    by_case: dict[str, list[str]] = defaultdict(list)
    for record in records:
        event = json.loads(record.value)
        assert record.key == event["subject"].encode(), "case events are keyed by case id"
        by_case[event["subject"]].append(short(event["type"]))
    return by_case


async def wait_for_event(db: asyncpg.Connection, case_id: uuid.UUID, event_type: str, count: int = 1) -> int:
    query = f"SELECT count(*) FROM case_events WHERE case_id = '{case_id}' AND event_type = '{event_type}'"
    return await wait_for_rows(db, query, count)


async def parley(*arguments: str, database_url: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PARLEY_") and k != "DATABASE_URL"}
    return await asyncio.to_thread(
        subprocess.run,
        [*PARLEY, *arguments],
        env={**env, "DATABASE_URL": database_url},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


async def test_merges_splits_parking_and_a_refused_action_never_stop_the_tracker(
    pipeline: Pipeline, producer: AIOKafkaProducer, db: asyncpg.Connection
) -> None:
    pipeline.start("tracker")
    now = datetime.now(UTC)
    first, second, third = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    case_a, case_b, case_c = case_id_for(first), case_id_for(second), case_id_for(third)

    await send_routed(producer, pipeline, routed(first, category="loan_approval", queue="loans", at=now))
    assert await wait_for_rows(db, "SELECT count(*) FROM cases", 1) == 1
    await send_routed(
        producer,
        pipeline,
        routed(second, kind="merged", case_id=case_a, queue="loans", at=now, match_basis="customer_token"),
    )
    await wait_for_event(db, case_a, "com.parley.tracking.merged.v1")  # topics are not ordered with each other
    # Impossible: nothing was offered, the case is only routed. Refused with an event; the next action still applies.
    await send_action(producer, pipeline, action("customer_accepted", case_a, now, plan_id=uuid.uuid4()))
    await send_action(
        producer, pipeline, action("contacted", case_a, now + timedelta(minutes=5), contact_channel="phone")
    )
    await wait_for_event(db, case_a, "com.parley.tracking.first_contact.v1")
    # The agent undoes the merge; routing sends the feedback to a case of its own.
    await send_routed(
        producer,
        pipeline,
        routed(second, kind="split", case_id=case_b, queue="loans", at=now, split_from_case_id=case_a, split_by="E7"),
    )
    # An action that overtakes its case: parked, then applied when the case opens.
    await send_action(
        producer, pipeline, action("contacted", case_c, now + timedelta(minutes=1), contact_channel="sms")
    )
    assert await wait_for_rows(db, "SELECT count(*) FROM tracker.parked", 1) == 1
    await send_routed(producer, pipeline, routed(third, category="service_quality", queue="cards_payments", at=now))

    assert await wait_for_rows(db, "SELECT count(*) FROM cases WHERE status = 'contacted'", 2) == 2
    statuses = {row["case_id"]: row["status"] for row in await db.fetch("SELECT case_id, status FROM cases")}
    assert statuses == {case_a: "contacted", case_b: "routed", case_c: "contacted"}
    counts = {row["case_id"]: row["feedback_count"] for row in await db.fetch("SELECT * FROM cases")}
    assert counts == {case_a: 1, case_b: 1, case_c: 1}
    assert await db.fetchval("SELECT count(*) FROM tracker.parked") == 0

    by_case = await tracking_by_case(pipeline, at_least=14)
    assert by_case[str(case_a)] == [
        "tracking.opened",
        "tracking.triaged",
        "tracking.routed",
        "tracking.merged",
        "tracking.transition_rejected",
        "tracking.first_contact",
        "tracking.split",
    ]
    assert by_case[str(case_b)] == ["tracking.opened", "tracking.triaged", "tracking.routed"]
    assert by_case[str(case_c)] == ["tracking.opened", "tracking.triaged", "tracking.routed", "tracking.first_contact"]
    rejected = json.loads(
        await db.fetchval(
            "SELECT payload FROM case_events WHERE event_type = 'com.parley.tracking.transition_rejected.v1'"
        )
    )
    assert rejected["data"]["rejected_type"] == "com.parley.agent.customer_accepted.v1"
    assert "while the case is routed" in rejected["data"]["reason"]

    dead = await read_topic(
        pipeline.bootstrap_servers, pipeline.topic(topics.dead_letter_topic("tracker")), at_least=0, settle_seconds=1
    )
    assert dead == [], "a well-formed but impossible action is refused, never dead-lettered"
    assert pipeline.processes["tracker"].poll() is None


async def test_the_audit_chain_verifies_and_a_tampered_row_is_named(
    pipeline: Pipeline, producer: AIOKafkaProducer, db: asyncpg.Connection, database_url: str
) -> None:
    pipeline.start("tracker")
    now = datetime.now(UTC)
    feedback = uuid.uuid4()
    case_id = case_id_for(feedback)
    await send_routed(producer, pipeline, routed(feedback, category="general_inquiry", queue="ai_assistant", at=now))
    await send_action(
        producer, pipeline, action("contacted", case_id, now + timedelta(minutes=1), contact_channel="app_message")
    )
    await send_action(
        producer, pipeline, action("resolved", case_id, now + timedelta(minutes=2), resolution="explained")
    )
    await wait_for_event(db, case_id, "com.parley.tracking.resolved.v1")

    intact = await parley("audit", "verify", str(case_id), database_url=database_url)
    assert intact.returncode == 0, intact.stdout + intact.stderr
    assert f"case {case_id}: chain intact, 8 rows" in intact.stdout
    shown = await parley("case", str(case_id), database_url=database_url)
    assert shown.returncode == 0, shown.stderr
    assert f"Case {case_id}: resolved" in shown.stdout
    assert "audit trail: 8 rows, chain intact" in shown.stdout
    for step in ("tracking.opened", "tracking.first_contact", "tracking.resolved", "agent.contacted"):
        assert step in shown.stdout
    assert "follow_up" in shown.stdout, "the follow-up timer is shown"

    # A superuser switches the append-only trigger off and edits the resolution of one row.
    row_id, seq = await db.fetchrow(
        "SELECT id, seq FROM case_events WHERE case_id = $1 AND event_type = 'com.parley.tracking.resolved.v1'",
        case_id,
    )
    await db.execute("ALTER TABLE case_events DISABLE TRIGGER case_events_no_change")
    try:
        await db.execute(
            """UPDATE case_events SET payload = jsonb_set(payload, '{data,resolution}', '"refunded"') WHERE id = $1""",
            row_id,
        )
    finally:
        await db.execute("ALTER TABLE case_events ENABLE TRIGGER case_events_no_change")

    broken = await parley("audit", "verify", str(case_id), database_url=database_url)
    assert broken.returncode == 1
    assert (
        f"case {case_id}: chain BROKEN at row id {row_id} (seq {seq}, com.parley.tracking.resolved.v1, event "
        in broken.stdout
    )
    assert "content does not match its hash (the row was changed)" in broken.stdout
    every = await parley("audit", "verify", "--all", database_url=database_url)
    assert every.returncode == 1
    assert "1 cases checked: 0 intact, 1 broken" in every.stdout
    unknown = await parley("audit", "verify", str(uuid.uuid4()), database_url=database_url)
    assert unknown.returncode == 2
    assert "no case" in unknown.stderr


async def test_a_plan_from_offer_to_completion_and_another_broken_after_missed_instalments(
    pipeline: Pipeline,
    producer: AIOKafkaProducer,
    db: asyncpg.Connection,
    database_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PARLEY_TRACKER_FOLLOW_UP_AFTER_SECONDS", "2")
    monkeypatch.setenv("PARLEY_TRACKER_PLAN_BROKEN_AFTER_MISSED", "2")
    monkeypatch.setenv("PARLEY_TRACKER_TIMER_POLL_SECONDS", "0.5")
    pipeline.start("tracker")

    # The core-banking extract: a bad file is refused whole; the good one loads.
    bad = tmp_path / "bad.jsonl"
    bad.write_text(account("C-PLAN-1").model_dump_json() + "\n" + '{"customer_ref": "C-PLAN-2"}\n', encoding="utf-8")
    refused = await parley("accounts", "load", str(bad), database_url=database_url)
    assert refused.returncode == 1
    assert "line 2: as_of: Field required; debt: Field required" in refused.stderr
    assert "nothing loaded" in refused.stderr
    good = tmp_path / "accounts.jsonl"
    good.write_text("\n".join(account(ref).model_dump_json() for ref in ("C-PLAN-1", "C-PLAN-2")) + "\n")
    loaded = await parley("accounts", "load", str(good), database_url=database_url)
    assert loaded.returncode == 0, loaded.stderr
    assert "2 account snapshots read, 2 loaded" in loaded.stdout

    now = datetime.now(UTC) - timedelta(minutes=10)
    paying, breaking = uuid.uuid4(), uuid.uuid4()
    case_1, case_2 = case_id_for(paying), case_id_for(breaking)
    await send_routed(producer, pipeline, routed(paying, customer_ref="C-PLAN-1", at=now))
    await send_routed(producer, pipeline, routed(breaking, customer_ref="C-PLAN-2", at=now))

    requests = await read_topic(pipeline.bootstrap_servers, pipeline.topic(topics.PLAN_REQUESTED), at_least=2)
    asked = {r.key: PlanRequestedEvent.model_validate_json(r.value) for r in requests}
    assert set(asked) == {str(case_1).encode(), str(case_2).encode()}
    assert asked[str(case_1).encode()].data.debt == account("C-PLAN-1").debt

    plans = {}
    for case_id in (case_1, case_2):
        request = asked[str(case_id).encode()]
        plan = proposal(uuid.uuid4(), instalments=3, amount="1496.12")
        plans[case_id] = plan.plan_id
        planned = proposed(case_id, request.data.request_id, [plan], now + timedelta(minutes=1))
        await producer.send_and_wait(pipeline.topic(topics.PLAN_PROPOSED), planned.value, key=str(case_id).encode())
        await wait_for_event(db, case_id, "com.parley.tracking.plan_proposed.v1")  # the agent offers what it sees
        steps = [
            action("contacted", case_id, now + timedelta(minutes=2), contact_channel="phone"),
            action("plan_offered", case_id, now + timedelta(minutes=3), plan_id=plan.plan_id),
            action("customer_accepted", case_id, now + timedelta(minutes=4), plan_id=plan.plan_id),
        ]
        for step in steps:
            await send_action(producer, pipeline, step)

    paid_at = datetime.now(UTC)
    for number in (1, 2, 3):
        await send_action(
            producer,
            pipeline,
            action(
                "payment_received",
                case_1,
                paid_at - timedelta(seconds=3 - number),
                agent_id="collections",
                plan_id=plans[case_1],
                instalment_number=number,
                amount={"amount": "1496.12", "currency": "CNY"},
            ),
        )
    for number in (1, 2):
        await send_action(
            producer,
            pipeline,
            action(
                "payment_missed",
                case_2,
                now + timedelta(minutes=10 + number),
                agent_id="collections",
                plan_id=plans[case_2],
                instalment_number=number,
                due_date=f"2026-12-1{number}",
            ),
        )

    # Paid in full: completed and resolved; the follow-up request comes the configured 2 s after resolution.
    assert await wait_for_event(db, case_1, "com.parley.tracking.follow_up_requested.v1") == 1
    resolved_time, requested_time = await db.fetchrow(
        """SELECT (SELECT occurred_at FROM case_events
                   WHERE case_id = $1 AND event_type = 'com.parley.tracking.resolved.v1'),
                  (SELECT occurred_at FROM case_events
                   WHERE case_id = $1 AND event_type = 'com.parley.tracking.follow_up_requested.v1')""",
        case_1,
    )
    assert requested_time - resolved_time == timedelta(seconds=2)
    await send_action(producer, pipeline, action("follow_up_done", case_1, datetime.now(UTC), satisfaction=5))
    assert await wait_for_event(db, case_1, "com.parley.tracking.followed_up.v1") == 1
    assert await wait_for_event(db, case_2, "com.parley.tracking.plan_broken.v1") == 1

    statuses = {row["case_id"]: row["status"] for row in await db.fetch("SELECT case_id, status FROM cases")}
    assert statuses == {case_1: "followed_up", case_2: "negotiating"}
    plan_rows = {row["plan_id"]: row for row in await db.fetch("SELECT * FROM tracker.plans")}
    assert plan_rows[plans[case_1]]["status"] == "completed"
    assert plan_rows[plans[case_1]]["paid"] == [1, 2, 3]
    assert str(plan_rows[plans[case_1]]["paid_total"]) == "4488.36"
    assert plan_rows[plans[case_2]]["status"] == "broken"
    assert plan_rows[plans[case_2]]["missed"] == [1, 2]

    by_case = await tracking_by_case(pipeline, at_least=26)
    common = [
        "tracking.opened",
        "tracking.triaged",
        "tracking.routed",
        "tracking.plan_proposed",
        "tracking.first_contact",
        "tracking.plan_offered",
        "tracking.plan_accepted",
        "tracking.plan_active",
    ]
    assert by_case[str(case_1)] == [
        *common,
        "tracking.instalment_paid",
        "tracking.instalment_paid",
        "tracking.instalment_paid",
        "tracking.plan_completed",
        "tracking.resolved",
        "tracking.follow_up_requested",
        "tracking.followed_up",
    ]
    assert by_case[str(case_2)] == [
        *common,
        "tracking.instalment_missed",
        "tracking.instalment_missed",
        "tracking.plan_broken",
    ]
    # Broken: negotiation starts again with a new request to the planner.
    requests = await read_topic(pipeline.bootstrap_servers, pipeline.topic(topics.PLAN_REQUESTED), at_least=3)
    assert sorted(r.key for r in requests) == sorted([str(case_1).encode(), str(case_2).encode(), str(case_2).encode()])
    for case_id in (case_1, case_2):
        verified = await parley("audit", "verify", str(case_id), database_url=database_url)
        assert verified.returncode == 0, verified.stdout
