"""Intake, triage, routing and tracker through the real broker and database, as separate worker processes."""

from __future__ import annotations

import hashlib
import json

import asyncpg
import pytest
from aiokafka import AIOKafkaProducer

from schemas import topics
from schemas.channels import Channel
from schemas.feedback import FeedbackReceivedEvent, rejection_header
from schemas.tracking import CaseOpenedEvent
from services.intake.logic import Accepted, normalise
from tests.conftest import FIXED_NOW
from tests.integration.conftest import Pipeline, read_topic, wait_for_rows
from tests.samples import encode, raw_message

pytestmark = pytest.mark.integration


OPENED = "com.parley.tracking.opened.v1"


def start_case_pipeline(pipeline: Pipeline) -> None:
    """The processors from raw feedback to a recorded case."""
    for processor in ("intake", "triage", "routing", "tracker"):
        pipeline.start(processor)


def _header(record: object, name: str) -> str:
    return dict(record.headers)[name].decode()  # type: ignore[attr-defined]


async def test_every_channel_reaches_a_case_and_bad_input_is_rejected_with_reasons(
    pipeline: Pipeline, producer: AIOKafkaProducer, db: asyncpg.Connection
) -> None:
    start_case_pipeline(pipeline)
    sent_valid: dict[str, Channel] = {}
    for channel in Channel:
        for n in range(3):
            message_id = f"{channel.value}-{n}"
            body = encode(raw_message(channel, message_id))
            await producer.send_and_wait(pipeline.topic(topics.raw_topic(channel)), body, key=message_id.encode())
            sent_valid[message_id] = channel
    # A channel system's retries: the same message again, byte for byte, and once re-serialised.
    await producer.send_and_wait(
        pipeline.topic("feedback.raw.hotline"), encode(raw_message(Channel.HOTLINE, "hotline-0"))
    )
    await producer.send_and_wait(
        pipeline.topic("feedback.raw.app"), json.dumps(raw_message(Channel.APP, "app-1"), indent=2).encode()
    )
    bad = {
        "invalid_json": (Channel.APP, b'{"message_id": "x", '),
        "not_an_object": (Channel.APP, b'["message_id", "x"]'),
        "schema_violation": (Channel.HOTLINE, encode(raw_message(Channel.HOTLINE, "h-bad", sent_at=12345))),
        "empty_text": (Channel.BRANCH, encode(raw_message(Channel.BRANCH, "b-empty", text="  \n "))),
        "unknown_channel": (Channel.SOCIAL, encode(raw_message(Channel.SOCIAL, "s-fax", channel="fax"))),
        "channel_mismatch": (Channel.LETTER, encode(raw_message(Channel.LETTER, "l-mis", channel="app"))),
        "invalid_encoding": (Channel.REGULATOR, "监管转办".encode("gb18030")),
        "too_large": (Channel.LETTER, encode(raw_message(Channel.LETTER, "l-big", body="投诉" * 900_000))),
    }
    originals: dict[str, bytes] = {}
    for reason, (channel, value) in bad.items():
        await producer.send_and_wait(
            pipeline.topic(topics.raw_topic(channel)),
            value,
            key=reason.encode(),
            headers=[("trace-id", reason.encode())],
        )
        originals[reason] = value

    rejected = await read_topic(pipeline.bootstrap_servers, pipeline.topic(topics.FEEDBACK_REJECTED), at_least=len(bad))
    by_reason = {_header(r, rejection_header("reason")): r for r in rejected}
    assert set(by_reason) == set(bad)
    assert len(rejected) == len(bad)
    # Records holding personal data (a caller number, an e-mail address) reach the topic masked; the exact
    # original is in the vault, readable through the audited function. The others travel byte for byte.
    holding_pii = {"schema_violation", "channel_mismatch", "too_large"}
    for reason, record in by_reason.items():
        original = originals[reason]
        if reason in holding_pii:
            assert _header(record, "parley-masked") == "true"
            ref = _header(record, "parley-original-ref")
            assert ref == hashlib.sha256(original).hexdigest()
            assert b"+86 138 0013 8000" not in record.value
            assert b"someone@mail.example" not in record.value
            kept = await db.fetchval("SELECT pii.reveal_rejected($1, 'test', 'check the original is kept')", ref)
            assert kept == original, f"{reason}: the vault keeps the original bytes"
        else:
            assert _header(record, "parley-masked") == "false"
            assert record.value == original, f"{reason}: original bytes must be kept"
        assert record.key == reason.encode()
        assert _header(record, rejection_header("source_topic")) == pipeline.topic(topics.raw_topic(bad[reason][0]))
        assert int(_header(record, rejection_header("source_offset"))) >= 0
        assert int(_header(record, rejection_header("source_partition"))) >= 0
        assert _header(record, rejection_header("processor")) == "intake"
        assert _header(record, "trace-id") == reason, "the channel's own headers travel with the rejection"
    assert "sent_at" in _header(by_reason["schema_violation"], rejection_header("detail"))
    assert "投诉" not in _header(by_reason["too_large"], rejection_header("detail")), "no message text in headers"

    tracking = await read_topic(
        pipeline.bootstrap_servers, pipeline.topic(topics.CASE_TRACKING), at_least=3 * len(sent_valid)
    )
    opened = [record for record in tracking if json.loads(record.value)["type"] == OPENED]
    events = [CaseOpenedEvent.model_validate_json(record.value) for record in opened]
    assert len(events) == len(sent_valid), "one case per distinct message: duplicates dropped, none lost"
    for record, event in zip(opened, events, strict=True):
        assert record.key == str(event.data.case_id).encode(), "case events are keyed by case id"
        assert event.subject == str(event.data.case_id)

    received = await read_topic(
        pipeline.bootstrap_servers, pipeline.topic(topics.FEEDBACK_RECEIVED), at_least=len(sent_valid)
    )
    feedback = [FeedbackReceivedEvent.model_validate_json(r.value) for r in received]
    assert sorted(f.data.channel_message_id for f in feedback) == sorted(sent_valid)
    assert {f.data.channel for f in feedback} == set(Channel)
    social = next(f for f in feedback if f.data.channel is Channel.SOCIAL)
    assert social.data.details.reach.reposts == 3400  # type: ignore[union-attr]
    assert social.data.customer_ref is None
    assert dict(received[0].headers)["content-type"].startswith(b"application/cloudevents+json")

    assert await wait_for_rows(db, "SELECT count(*) FROM cases", len(sent_valid)) == len(sent_valid)
    rows = await db.fetch("SELECT channel, count(*) AS n FROM cases GROUP BY channel")
    assert {row["channel"]: row["n"] for row in rows} == {channel.value: 3 for channel in Channel}
    audit = await db.fetch("SELECT event_type, count(*) AS n FROM case_events GROUP BY event_type")
    steps = {row["event_type"]: row["n"] for row in audit}
    for step in ("opened", "triaged"):
        assert steps[f"com.parley.tracking.{step}.v1"] == len(sent_valid), steps
    # The three viral social posts (120,000 followers, 3,400 reposts) also reach the PR desk: one more routing each.
    assert steps["com.parley.tracking.routed.v1"] == len(sent_valid) + 3, steps
    assert await db.fetchval("SELECT count(*) FROM tracker.case_feedback") == len(sent_valid)
    assert await wait_for_rows(db, "SELECT 0 = count(*) FROM outbox", 1, timeout_seconds=10), "the relays published all"


async def test_feedback_naming_an_open_case_is_recorded_on_it(
    pipeline: Pipeline, producer: AIOKafkaProducer, db: asyncpg.Connection
) -> None:
    start_case_pipeline(pipeline)
    await producer.send_and_wait(pipeline.topic("feedback.raw.hotline"), encode(raw_message(Channel.HOTLINE, "first")))
    assert await wait_for_rows(db, "SELECT count(*) FROM cases", 1) == 1
    case_id = await db.fetchval("SELECT case_id FROM cases")
    # Another customer number, but the letter names the case: an explicit reference that joins it.
    follow_up = raw_message(Channel.LETTER, "second", case_id=str(case_id), customer_id=None)
    await producer.send_and_wait(pipeline.topic("feedback.raw.letter"), encode(follow_up))
    feedback_on_case = f"SELECT count(*) FROM tracker.case_feedback WHERE case_id = '{case_id}'"
    assert await wait_for_rows(db, feedback_on_case, 2) == 2
    assert await db.fetchval("SELECT count(*) FROM cases") == 1
    merged = "SELECT count(*) FROM case_events WHERE case_id = $1 AND event_type = 'com.parley.tracking.merged.v1'"
    assert await db.fetchval(merged, case_id) == 1


async def test_audit_trail_refuses_updates_and_deletes(
    pipeline: Pipeline, producer: AIOKafkaProducer, db: asyncpg.Connection
) -> None:
    start_case_pipeline(pipeline)
    await producer.send_and_wait(pipeline.topic("feedback.raw.app"), encode(raw_message(Channel.APP, "a1")))
    assert await wait_for_rows(db, "SELECT count(*) FROM case_events", 3) >= 3
    with pytest.raises(asyncpg.RaiseError, match="append-only"):
        await db.execute("DELETE FROM case_events")
    with pytest.raises(asyncpg.RaiseError, match="append-only"):
        await db.execute("UPDATE case_events SET event_type = 'x'")


async def test_a_poison_record_in_a_batch_is_dead_lettered_alone(
    pipeline: Pipeline, producer: AIOKafkaProducer, db: asyncpg.Connection
) -> None:
    received_topic = pipeline.topic(topics.FEEDBACK_RECEIVED)
    garbage = b'{"specversion": "1.0", "id": "not-a-uuid"}'
    good = []
    for n in range(20):
        outcome = normalise(
            Channel.APP,
            encode(raw_message(Channel.APP, f"g{n}", customer_id="C-SAME")),
            received_at=FIXED_NOW,
            max_body_bytes=1 << 20,
            pii_key=b"k",
        )
        assert isinstance(outcome, Accepted)
        good.append(outcome.event.to_json_bytes())
    # One key, one partition: the poison record sits in the middle of what triage takes as one batch.
    for value in [*good[:10], garbage, *good[10:]]:
        await producer.send(received_topic, value, key=b"C-SAME")
    await producer.flush()
    pipeline.start("triage")
    dead = await read_topic(pipeline.bootstrap_servers, pipeline.topic(topics.dead_letter_topic("triage")), at_least=1)
    assert [r.value for r in dead] == [garbage]
    assert _header(dead[0], rejection_header("reason")) == "schema_violation"
    assert _header(dead[0], rejection_header("processor")) == "triage"
    assert _header(dead[0], rejection_header("source_offset")) == "10"
    triaged = await read_topic(pipeline.bootstrap_servers, pipeline.topic(topics.CASE_TRIAGED), at_least=20)
    assert len({json.loads(record.value)["data"]["feedback_id"] for record in triaged}) == 20
    assert pipeline.processes["triage"].poll() is None, "the worker keeps running after a poison record"
