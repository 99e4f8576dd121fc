"""The two stories of ../shared/domain.md, end to end through the real broker and database, from the
customer's words to an accepted, active plan:

- a customer falls suddenly ill and cannot pay on time: the bank agrees a deferral and a new plan;
- a small business's cash flow suffers: the bank extends the term and re-schedules the instalments.

Every processor runs as a worker; the test plays the bank's core-banking extract and the agent.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from aiokafka import AIOKafkaProducer

from schemas import topics
from schemas.channels import Channel
from schemas.plans import PlanProposed, PlanProposedEvent
from schemas.values import PlanKind
from services.planner.cli import read_request
from tests.integration.conftest import Pipeline, load_accounts, read_topic, wait_for_rows
from tests.samples import encode, raw_message

pytestmark = pytest.mark.integration

PLANNER_EXAMPLES = Path(__file__).parents[2] / "services" / "planner" / "examples"
AGENT = "E20731"


@dataclass(frozen=True)
class Story:
    customer: str
    channel: Channel
    words: str
    request_file: str
    reason: str
    wanted: PlanKind


STORIES = (
    Story(
        "C-ILL-0001",
        Channel.HOTLINE,
        "客户：我上个月突然生病住院，做了手术，现在还在休养没有收入，这个月的贷款实在还不上了，想申请延期还款，"
        "出院复工以后一定会还清。",
        "ill-customer.json",
        "illness",
        PlanKind.DEFERRAL,
    ),
    Story(
        "C-SME-0002",
        Channel.APP,
        "我们是做外贸的小微企业，今年订单大幅减少，资金周转困难，经营贷每个月的还款压力太大，"
        "希望银行能延长贷款期限，重新安排每期还款金额。",
        "small-business.json",
        "business_downturn",
        PlanKind.TERM_EXTENSION,
    ),
)


def _account_line(story: Story) -> str:
    """The core-banking extract's line for the story's customer: the debt and means of the planner's example."""
    path = PLANNER_EXAMPLES / story.request_file
    raw = path.read_bytes()
    request = read_request(json.loads(raw), raw, today=date(2026, 11, 22), source=str(path))
    snapshot = {"customer_ref": story.customer, "as_of": request.as_of.isoformat(), "debt": request.debt}
    if request.income is not None:
        snapshot["income"] = request.income
    return json.dumps(
        {
            key: value.model_dump(mode="json") if hasattr(value, "model_dump") else value
            for key, value in snapshot.items()
        },
        ensure_ascii=False,
    )


def _agent_action(kind: str, case_id: uuid.UUID, time: str, **data: Any) -> bytes:
    event = {
        "specversion": "1.0",
        "id": str(uuid.uuid4()),
        "source": "/agent-desktop/test",
        "type": f"com.parley.agent.{kind}.v1",
        "time": time,
        "subject": str(case_id),
        "datacontenttype": "application/json",
        "data": {"case_id": str(case_id), "agent_id": AGENT, "queue": "repayment_hardship", **data},
    }
    return json.dumps(event, ensure_ascii=False).encode()


async def _proposals(pipeline: Pipeline, at_least: int) -> dict[uuid.UUID, list[PlanProposed]]:
    """Every plan.proposed so far, by case, in the order they came."""
    records = await read_topic(
        pipeline.bootstrap_servers, pipeline.topic(topics.PLAN_PROPOSED), at_least=at_least, timeout_seconds=120
    )
    by_case: dict[uuid.UUID, list[PlanProposed]] = {}
    for record in records:
        answer = PlanProposedEvent.model_validate_json(record.value).data
        if answer.request_id not in {seen.request_id for seen in by_case.get(answer.case_id, [])}:
            by_case.setdefault(answer.case_id, []).append(answer)
    return by_case


async def test_the_ill_customer_and_the_small_business_end_with_an_active_plan(
    pipeline: Pipeline, producer: AIOKafkaProducer, db: asyncpg.Connection, database_url: str, tmp_path: Path
) -> None:
    extract = tmp_path / "core-banking-extract.jsonl"
    extract.write_text("".join(_account_line(story) + "\n" for story in STORIES), encoding="utf-8")
    await load_accounts(database_url, extract)
    for processor in ("intake", "triage", "routing", "tracker", "planner"):
        pipeline.start(processor)

    for number, story in enumerate(STORIES):
        body = raw_message(story.channel, f"story-{number}", customer_id=story.customer)
        body[{Channel.HOTLINE: "transcript", Channel.APP: "text"}[story.channel]] = story.words
        await producer.send_and_wait(
            pipeline.topic(topics.raw_topic(story.channel)), encode(body), key=story.customer.encode()
        )
    assert await wait_for_rows(db, "SELECT count(*) FROM cases", len(STORIES), timeout_seconds=120) == len(STORIES)
    case_of = {row["customer_ref"]: row["case_id"] for row in await db.fetch("SELECT customer_ref, case_id FROM cases")}
    categories = {
        row["customer_ref"]: row["category"] for row in await db.fetch("SELECT customer_ref, category FROM cases")
    }
    assert categories == {story.customer: "repayment_hardship" for story in STORIES}

    # The tracker knew each debt, so it asked the planner at once; the planner answered with ranked plans.
    proposed = await _proposals(pipeline, at_least=len(STORIES))
    assert {story.customer: bool(proposed.get(case_of[story.customer])) for story in STORIES} == {
        story.customer: True for story in STORIES
    }

    # The agent takes each case and talks to the customer, who says why; the agent asks for plans that fit.
    actions = pipeline.topic(topics.AGENT_ACTIONS)

    async def act(story: Story, kind: str, time: str, **data: Any) -> None:
        case_id = case_of[story.customer]
        await producer.send_and_wait(actions, _agent_action(kind, case_id, time, **data), key=str(case_id).encode())

    for story in STORIES:
        await act(story, "case_accepted", "2026-11-22T10:00:00+08:00")
        await act(story, "contacted", "2026-11-22T10:05:00+08:00", contact_channel="phone")
        await act(
            story,
            "plan_requested",
            "2026-11-22T10:10:00+08:00",
            hardship_reason=story.reason,
            preferred_kinds=[story.wanted.value],
        )
    proposed = await _proposals(pipeline, at_least=2 * len(STORIES))
    chosen: dict[str, uuid.UUID] = {}
    for story in STORIES:
        answer = proposed[case_of[story.customer]][-1]  # the answer to the agent's request
        fitting = [p for p in answer.proposals if story.wanted in {c.kind for c in p.components} and p.affordable]
        kinds = [[c.kind.value for c in p.components] for p in answer.proposals]
        assert fitting, f"{story.customer}: no affordable {story.wanted} among {kinds}; refused {answer.refused}"
        chosen[story.customer] = fitting[0].plan_id
        assert fitting[0].schedule[-1].remaining_balance.amount == 0, "the schedule repays the balance exactly"
        print(f"\n{story.customer}: {[c.kind.value for c in fitting[0].components]}, {fitting[0].instalment.amount}")

    # The agent offers the plan; the customer accepts it.
    for story in STORIES:
        plan_id = str(chosen[story.customer])
        await act(story, "plan_offered", "2026-11-22T10:20:00+08:00", plan_id=plan_id, summary="方案一")
        await act(story, "customer_accepted", "2026-11-22T10:40:00+08:00", plan_id=plan_id)

    active = "SELECT count(*) FROM tracker.plans WHERE status = 'active'"
    assert await wait_for_rows(db, active, len(STORIES), timeout_seconds=120) == len(STORIES)
    statuses = {row["customer_ref"]: row["status"] for row in await db.fetch("SELECT customer_ref, status FROM cases")}
    assert statuses == {story.customer: "plan_active" for story in STORIES}
    plans = {row["case_id"]: row["plan_id"] for row in await db.fetch("SELECT case_id, plan_id FROM tracker.plans")}
    assert plans == {case_of[story.customer]: chosen[story.customer] for story in STORIES}

    tracking = await read_topic(pipeline.bootstrap_servers, pipeline.topic(topics.CASE_TRACKING), at_least=1)
    for story in STORIES:
        steps = [
            json.loads(r.value)["type"].removeprefix("com.parley.tracking.").removesuffix(".v1")
            for r in tracking
            if json.loads(r.value)["subject"] == str(case_of[story.customer])
        ]
        lifecycle = ["opened", "triaged", "routed", "plan_proposed", "plan_offered", "plan_accepted", "plan_active"]
        assert list(dict.fromkeys(step for step in steps if step in lifecycle)) == lifecycle, steps
    for processor in ("intake", "triage", "routing", "tracker", "planner"):
        assert pipeline.processes[processor].poll() is None, pipeline.log_text(processor)[-2000:]
