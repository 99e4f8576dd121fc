"""Triage through the real broker: feedback.received in, case.triaged out, with reasons and masked text."""

from __future__ import annotations

import json

import pytest
from aiokafka import AIOKafkaProducer

from schemas import topics
from schemas.channels import Channel
from schemas.triage import CaseTriagedEvent
from tests.integration.conftest import Pipeline, read_topic
from tests.samples import encode, raw_message

pytestmark = pytest.mark.integration


async def test_each_feedback_is_triaged_once_with_reasons_and_no_personal_data(
    pipeline: Pipeline, producer: AIOKafkaProducer
) -> None:
    pipeline.start("intake")
    pipeline.start("triage")
    messages = {
        "self-harm": (Channel.APP, "我叫王建军，手机13800138000。欠了三家，每天一睁眼就是还钱，我真的不想活了"),
        "live-fraud": (Channel.HOTLINE, "有人冒充客服让我把钱转到安全账户，我刚转了两万，快帮我冻结！"),
        "question": (Channel.APP, "请问信用卡年费怎么收？"),
        "regulator": (Channel.REGULATOR, "监管转办：客户反映理财产品销售时未说明风险，亏损百分之十二。"),
    }
    for message_id, (channel, text) in messages.items():
        field = "transcript" if channel is Channel.HOTLINE else "text"
        body = raw_message(channel, message_id, customer_id=f"C-{message_id}", **{field: text})
        await producer.send_and_wait(pipeline.topic(topics.raw_topic(channel)), encode(body))

    records = await read_topic(pipeline.bootstrap_servers, pipeline.topic(topics.CASE_TRIAGED), at_least=4)
    events = {
        event.data.customer_ref: event for event in (CaseTriagedEvent.model_validate_json(r.value) for r in records)
    }
    assert len(records) == 4, "one triage result per feedback"
    for record in records:
        assert record.key == json.loads(record.value)["data"]["customer_ref"].encode()
        assert b"13800138000" not in record.value
        assert "王建军".encode() not in record.value

    harm = events["C-self-harm"].data
    assert "self_harm" in harm.flags
    assert (harm.priority, harm.human_required) == ("P1", True)
    assert any(r.decided == "flag" and r.value == "self_harm" and r.cue for r in harm.reasons)
    assert "[MOBILE#" in harm.text

    fraud = events["C-live-fraud"].data
    assert fraud.category == "fraud_security"
    assert "live_fraud" in fraud.flags
    assert (fraud.priority, fraud.human_required) == ("P1", True)

    question = events["C-question"].data
    assert question.flags == []
    assert question.priority in ("P3", "P4")
    assert not question.human_required

    referral = events["C-regulator"].data
    assert "regulator_threat" in referral.flags
    assert any(r.rule == "priority.channel.regulator" for r in referral.reasons)
    assert all(e.data.ruleset_version and e.data.reasons for e in events.values())
