"""A poison message in any processor goes to that processor's dead-letter topic, with its reason and
origin in headers, and the partition moves on: the valid record behind it is processed."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer

from schemas import topics
from schemas.feedback import rejection_header
from schemas.values import Queue
from tests.integration.conftest import Pipeline, read_topic

pytestmark = pytest.mark.integration

EXAMPLES = Path(__file__).parents[2] / "schemas" / "examples"
POISONS = (
    b"\xff\xfe not even UTF-8",
    b'{"specversion": "1.0", "id": "not-a-uuid", "type": "com.parley.nothing.v1"}',
    b"[1, 2, 3]",
)


@dataclass(frozen=True)
class Case:
    processor: str
    input_topic: str
    examples: tuple[str, ...]
    output_topics: tuple[str, ...]
    output_type: str


CASES = (
    Case(
        "triage", topics.FEEDBACK_RECEIVED, ("com.parley.feedback.received.v1",), (topics.CASE_TRIAGED,), "case.triaged"
    ),
    Case("routing", topics.CASE_TRIAGED, ("com.parley.case.triaged.v1",), topics.ROUTED_TOPICS, "case.routed"),
    Case(
        "tracker",
        topics.routed_topic(Queue.REPAYMENT_HARDSHIP),
        ("com.parley.case.routed.v1",),
        (topics.CASE_TRACKING,),
        "tracking.opened",
    ),
    Case("planner", topics.PLAN_REQUESTED, ("com.parley.plan.requested.v1",), (topics.PLAN_PROPOSED,), "plan.proposed"),
    Case(
        "sla",
        topics.CASE_TRACKING,
        ("com.parley.tracking.opened.v1", "com.parley.tracking.triaged.v1"),
        (topics.SLA_ALERTS,),
        "sla.clock_started",
    ),
)


@pytest.mark.parametrize("case", CASES, ids=[case.processor for case in CASES])
async def test_a_poison_message_is_dead_lettered_and_the_partition_moves_on(
    case: Case, pipeline: Pipeline, producer: AIOKafkaProducer
) -> None:
    key = b"one-key-one-partition"
    input_topic = pipeline.topic(case.input_topic)
    for poison in POISONS:
        await producer.send(input_topic, poison, key=key)
    for example in case.examples:  # the valid records behind the poison
        event = json.loads((EXAMPLES / f"{example}.json").read_text())
        if event["type"] == "com.parley.tracking.opened.v1":
            event["data"]["jurisdiction"] = "CN"  # the tracker always says whose rules apply
        await producer.send(input_topic, json.dumps(event).encode(), key=key)
    await producer.flush()
    pipeline.start(case.processor)

    dead = await read_topic(
        pipeline.bootstrap_servers, pipeline.topic(topics.dead_letter_topic(case.processor)), at_least=len(POISONS)
    )
    assert [record.value for record in dead] == list(POISONS)
    for record in dead:
        headers = {name: value.decode() for name, value in record.headers}
        assert headers[rejection_header("processor")] == case.processor
        assert headers[rejection_header("source_topic")] == input_topic
        assert headers[rejection_header("reason")]
    offsets = [int(dict(record.headers)[rejection_header("source_offset")]) for record in dead]
    assert offsets == sorted(offsets)

    outputs = []
    deadline = time.monotonic() + 60
    while not outputs and time.monotonic() < deadline:
        for topic in case.output_topics:
            outputs += await read_topic(
                pipeline.bootstrap_servers, pipeline.topic(topic), at_least=0, timeout_seconds=1, settle_seconds=0
            )
    types = {json.loads(record.value)["type"] for record in outputs}
    assert any(case.output_type in kind for kind in types), types
    assert pipeline.processes[case.processor].poll() is None, "the worker keeps running after poison records"
