"""Feedback to case, through every processor in front of the tracker: intake, triage, routing, tracker.

The tracker opens cases only from what routing delivers, and records routing's merges.
"""

from __future__ import annotations

import json
from pathlib import Path

import asyncpg
import pytest
from aiokafka import AIOKafkaProducer

from schemas import topics
from schemas.channels import Channel
from schemas.plans import PlanRequestedEvent
from tests.integration.conftest import Pipeline, load_accounts, read_topic, wait_for_rows
from tests.samples import encode, raw_message
from tests.unit.test_tracker_support import account

pytestmark = pytest.mark.integration


async def test_routed_feedback_opens_cases_and_a_reference_merges_into_one(
    pipeline: Pipeline, producer: AIOKafkaProducer, db: asyncpg.Connection, database_url: str, tmp_path: Path
) -> None:
    for processor in ("intake", "triage", "routing", "tracker"):
        pipeline.start(processor)
    # The hotline caller's debt is known to the bank: a hardship case asks the planner at once.
    extract = tmp_path / "accounts.jsonl"
    extract.write_text(account("C-E2E-1").model_dump_json() + "\n", encoding="utf-8")
    await load_accounts(database_url, extract)

    hotline = raw_message(Channel.HOTLINE, "E2E-1", customer_id="C-E2E-1")
    app = raw_message(Channel.APP, "E2E-2", customer_id="C-E2E-2")
    await producer.send_and_wait(pipeline.topic(topics.raw_topic(Channel.HOTLINE)), encode(hotline), key=b"C-E2E-1")
    await producer.send_and_wait(pipeline.topic(topics.raw_topic(Channel.APP)), encode(app), key=b"C-E2E-2")
    assert await wait_for_rows(db, "SELECT count(*) FROM cases", 2, timeout_seconds=120) == 2
    hotline_case = await db.fetchval("SELECT case_id FROM cases WHERE customer_ref = 'C-E2E-1'")

    # A letter naming the hotline case: routing merges it on that explicit reference.
    letter = raw_message(Channel.LETTER, "E2E-3", customer_id="C-E2E-1", case_id=str(hotline_case))
    await producer.send_and_wait(pipeline.topic(topics.raw_topic(Channel.LETTER)), encode(letter), key=b"C-E2E-1")
    query = f"SELECT feedback_count FROM cases WHERE case_id = '{hotline_case}'"
    assert await wait_for_rows(db, query, 2, timeout_seconds=120) == 2
    assert await db.fetchval("SELECT count(*) FROM cases") == 2

    records = await read_topic(pipeline.bootstrap_servers, pipeline.topic(topics.CASE_TRACKING), at_least=7)
    steps: dict[str, list[str]] = {}
    for record in records:
        event = json.loads(record.value)
        steps.setdefault(event["subject"], []).append(event["type"].removeprefix("com.parley.").removesuffix(".v1"))
    assert steps[str(hotline_case)] == ["tracking.opened", "tracking.triaged", "tracking.routed", "tracking.merged"]
    assert len(steps) == 2
    merged = next(json.loads(r.value) for r in records if json.loads(r.value)["type"].endswith("tracking.merged.v1"))
    assert merged["data"]["match_basis"] == "explicit_reference"

    row = await db.fetchrow("SELECT category, queue, jurisdiction, status FROM cases WHERE case_id = $1", hotline_case)
    assert dict(row) == {
        "category": "repayment_hardship",
        "queue": "repayment_hardship",
        "jurisdiction": "CN",
        "status": "routed",
    }
    requests = await read_topic(pipeline.bootstrap_servers, pipeline.topic(topics.PLAN_REQUESTED), at_least=1)
    assert [PlanRequestedEvent.model_validate_json(r.value).data.case_id for r in requests] == [hotline_case]
