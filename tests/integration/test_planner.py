"""The planner through the real broker and database: plan.requested in, plan.proposed out, once each."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime
from typing import Any

import asyncpg
import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.structs import ConsumerRecord

from schemas import topics
from schemas.feedback import rejection_header
from schemas.plans import PlanProposedEvent, PlanRequested, PlanRequestedEvent
from services.planner.app import proposed_event_id
from services.planner.cli import read_request
from services.planner.policy import PROJECT_ROOT
from tests.integration.conftest import Pipeline, read_topic, wait_for_rows

pytestmark = pytest.mark.integration

EXAMPLES = PROJECT_ROOT / "services" / "planner" / "examples"
REQUESTED_AT = datetime(2026, 11, 22, 9, 30, tzinfo=UTC)


def _example(name: str, case_id: uuid.UUID) -> dict[str, Any]:
    document = json.loads((EXAMPLES / name).read_text())
    data = read_request(document, name.encode(), today=REQUESTED_AT.date(), source=name).model_dump(mode="json")
    data.update(request_id=str(uuid.uuid4()), case_id=str(case_id), requested_by="tracker")
    return data


def _event(data: dict[str, Any], event_id: uuid.UUID | None = None) -> bytes:
    event = PlanRequestedEvent(
        id=event_id or uuid.uuid4(),
        source="/parley/tracker",
        time=REQUESTED_AT,
        subject=data["case_id"],
        data=PlanRequested.model_validate(data),
    )
    return event.to_json_bytes()


def _header(record: ConsumerRecord[bytes, bytes], name: str) -> str:
    return next(value.decode() for key, value in record.headers if key == name)


async def _send(producer: AIOKafkaProducer, pipeline: Pipeline, case_id: str, value: bytes) -> None:
    await producer.send_and_wait(pipeline.topic(topics.PLAN_REQUESTED), value, key=case_id.encode())


async def test_a_request_becomes_ranked_proposals_a_bad_one_is_dead_lettered_and_nothing_doubles(
    pipeline: Pipeline, producer: AIOKafkaProducer, db: asyncpg.Connection
) -> None:
    ill_case, business_case = uuid.uuid4(), uuid.uuid4()
    ill_event, business_event = uuid.uuid4(), uuid.uuid4()
    ill = _example("ill-customer.json", ill_case)
    business = _example("small-business.json", business_case)
    negative = _example("ill-customer.json", ill_case)
    negative["debt"]["outstanding_principal"]["amount"] = "-48000.00"
    # Same case, same partition, in this order: a good request, a bad one, then a good one again.
    await _send(producer, pipeline, str(ill_case), _event(ill, ill_event))
    await _send(producer, pipeline, str(ill_case), _event(negative))
    await _send(producer, pipeline, str(ill_case), b'{"not": "a plan request"}')
    await _send(producer, pipeline, str(business_case), _event(business, business_event))
    await _send(producer, pipeline, str(ill_case), _event(ill, ill_event))  # the same event again: a repeat
    pipeline.start("planner")

    proposed = await read_topic(pipeline.bootstrap_servers, pipeline.topic(topics.PLAN_PROPOSED), at_least=2)
    events = [PlanProposedEvent.model_validate_json(record.value) for record in proposed]
    by_case = {event.data.case_id: event for event in events}
    assert len(by_case) == 2
    assert len(proposed) == 2, "one proposal per request, the repeat changes nothing"
    for record in proposed:
        assert record.key == json.loads(record.value)["data"]["case_id"].encode()
    assert by_case[ill_case].id == proposed_event_id(ill_event)
    assert any("deferral" in [c.kind for c in p.components] for p in by_case[ill_case].data.proposals)
    assert any([c.kind for c in p.components] == ["term_extension"] for p in by_case[business_case].data.proposals)

    dead = await read_topic(pipeline.bootstrap_servers, pipeline.topic(topics.dead_letter_topic("planner")), at_least=2)
    reasons = sorted(_header(record, rejection_header("reason")) for record in dead)
    assert reasons == ["invalid_plan_request", "schema_violation"]
    negative_record = next(r for r in dead if _header(r, rejection_header("reason")) == "invalid_plan_request")
    assert "must not be negative" in _header(negative_record, rejection_header("detail"))
    assert _header(negative_record, rejection_header("source_offset")) == "1"
    assert pipeline.processes["planner"].poll() is None, "a bad request never stops the planner"
    assert "repeated plan requests skipped" in pipeline.log_text("planner")
    assert await wait_for_rows(db, "SELECT count(*) FROM processed_messages WHERE consumer = 'planner'", 2) == 2

    assert pipeline.stop("planner") == 0, "SIGTERM stops the planner cleanly"


async def test_a_planner_killed_mid_stream_plans_each_request_once_when_its_records_come_again(
    pipeline: Pipeline, producer: AIOKafkaProducer, db: asyncpg.Connection
) -> None:
    """SIGKILL leaves a batch unacknowledged: the next worker gets those records again, recognises them and
    publishes nothing twice."""
    requests = 1200
    template = _example("ill-customer.json", uuid.uuid4())
    sent = []
    for _ in range(requests):
        case_id = uuid.uuid4()
        data = {**template, "request_id": str(uuid.uuid4()), "case_id": str(case_id)}
        event_id = uuid.uuid4()
        sent.append(event_id)
        await producer.send(pipeline.topic(topics.PLAN_REQUESTED), _event(data, event_id), key=str(case_id).encode())
    await producer.flush()
    planned = "SELECT count(*) FROM processed_messages WHERE consumer = 'planner'"
    pipeline.start("planner", "planner-a")
    assert await wait_for_rows(db, planned, 150) >= 150
    pipeline.kill("planner-a")
    in_the_middle = await db.fetchval(planned)
    assert in_the_middle < requests, "the kill must land mid-stream for this test to mean anything"
    pipeline.start("planner", "planner-b")
    assert await wait_for_rows(db, planned, requests, timeout_seconds=180) == requests
    for _ in range(100):
        if await db.fetchval("SELECT count(*) FROM outbox WHERE source = 'planner'") == 0:
            break
        await asyncio.sleep(0.2)
    assert await db.fetchval("SELECT count(*) FROM outbox WHERE source = 'planner'") == 0
    await asyncio.sleep(2)  # anything doubled would land by now
    assert await db.fetchval(planned) == requests
    proposed = await read_topic(pipeline.bootstrap_servers, pipeline.topic(topics.PLAN_PROPOSED), at_least=requests)
    # The relay is at-least-once, so the topic may carry a record twice: each under its one event id.
    assert {json.loads(record.value)["id"] for record in proposed} == {str(proposed_event_id(e)) for e in sent}
    dead = await read_topic(
        pipeline.bootstrap_servers, pipeline.topic(topics.dead_letter_topic("planner")), at_least=0, settle_seconds=0.5
    )
    assert dead == [], "a crash is not a reason to dead-letter anything"
    assert pipeline.stop("planner-b") == 0
