"""Routing through the real broker and database: case.triaged and agent actions in, case.routed.<queue> out.

The routing processor runs as a worker process with a test rules file (short timeouts, small backlog
limits, one queue that may see mobile numbers); the tests publish triaged feedback and agent actions
directly, as triage and agent desktops would.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from schemas import topics
from schemas.agent import (
    AgentAction,
    CaseAccepted,
    CaseAcceptedEvent,
    MergeUndone,
    MergeUndoneEvent,
    Resolved,
    ResolvedEvent,
)
from schemas.envelope import ReceivedCloudEvent
from schemas.reputation import ViralPostEvent
from schemas.routing import CaseRoutedEvent
from schemas.sla import Severity
from schemas.triage import CaseTriaged, SentimentLabel
from schemas.values import Category, Flag, PiiKind, Priority, Queue
from services.privacy.logic import token_for
from services.routing.app import Router
from services.routing.logic import case_id_for
from services.routing.rules import PROJECT_ROOT, load_rules
from services.runtime.db import connect_pool
from services.runtime.deadletter import InboundMessage
from services.runtime.errors import RetryableError
from services.runtime.settings import DEVELOPMENT_PII_KEY, Settings
from tests.integration.conftest import Pipeline, wait_for_rows
from tests.unit.test_routing_samples import app, feedback_id, hotline, regulator, social, triaged, triaged_event

pytestmark = pytest.mark.integration

MOBILE = "13912345678"
MOBILE_TOKEN = token_for(PiiKind.MOBILE, MOBILE, DEVELOPMENT_PII_KEY.encode())
ROUTED_TOPICS = [topics.routed_topic(queue) for queue in Queue]


def rules_file(tmp_path: Path) -> Path:
    """The shipped rules with seconds for hours, a small cards queue, and the fraud desk seeing mobile numbers."""
    text = (PROJECT_ROOT / "deploy" / "config" / "routing.yaml").read_text(encoding="utf-8")
    changes = {
        "      - {queue: repayment_hardship, timeout: 2h}\n      - {queue: loans, timeout: 2h}\n": (
            "      - {queue: repayment_hardship, timeout: 6s}\n      - {queue: loans, timeout: 6s}\n"
        ),
        "cards_payments: {backlog_limit: 400,": "cards_payments: {backlog_limit: 2,",
        "fraud: {backlog_limit: 200, visible_pii: []}": "fraud: {backlog_limit: 200, visible_pii: [mobile]}",
    }
    for before, after in changes.items():
        assert before in text
        text = text.replace(before, after)
    path = tmp_path / "routing.yaml"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture
def routing(pipeline: Pipeline, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Pipeline:
    monkeypatch.setenv("PARLEY_ROUTING_RULES_PATH", str(rules_file(tmp_path)))
    monkeypatch.setenv("PARLEY_ROUTING_TIMER_POLL_SECONDS", "0.3")
    pipeline.start("routing")
    return pipeline


class Topics:
    """Reads routed topics and alerts as they arrive, for the whole test."""

    def __init__(self, pipeline: Pipeline) -> None:
        self.pipeline = pipeline
        self.routed: list[CaseRoutedEvent] = []
        self.alerts: list[ViralPostEvent] = []
        self.keys: dict[uuid.UUID, bytes] = {}
        self._consumer = AIOKafkaConsumer(
            *(pipeline.topic(name) for name in (*ROUTED_TOPICS, topics.REPUTATION_ALERTS)),
            bootstrap_servers=pipeline.bootstrap_servers,
            group_id=None,
            auto_offset_reset="earliest",
        )

    async def __aenter__(self) -> Topics:
        await self._consumer.start()
        return self

    async def __aexit__(self, *_: object) -> None:
        await self._consumer.stop()

    async def until(self, done: object, timeout_seconds: float = 60.0) -> None:
        """Read until ``done()`` holds (a callable), or fail after the timeout."""
        assert callable(done)
        deadline = time.monotonic() + timeout_seconds
        while not done():
            assert time.monotonic() < deadline, f"timed out; routed so far: {[self.describe(e) for e in self.routed]}"
            for batch in (await self._consumer.getmany(timeout_ms=300)).values():
                for record in batch:
                    if record.topic == self.pipeline.topic(topics.REPUTATION_ALERTS):
                        self.alerts.append(ViralPostEvent.model_validate_json(record.value))
                    else:
                        event = CaseRoutedEvent.model_validate_json(record.value)
                        assert record.topic == self.pipeline.topic(topics.routed_topic(event.data.queue))
                        self.keys[event.id] = record.key or b""
                        self.routed.append(event)

    def of(self, name: str) -> list[CaseRoutedEvent]:
        return [event for event in self.routed if event.data.feedback_id == feedback_id(name)]

    def one(self, name: str) -> CaseRoutedEvent:
        (event,) = [
            event for event in self.of(name) if event.data.lane == "primary" and event.data.link.kind != "escalated"
        ]
        return event

    def routed_count(self, name: str) -> int:
        return len(self.of(name))

    @staticmethod
    def describe(event: CaseRoutedEvent) -> str:
        return f"{event.data.feedback_id}->{event.data.queue.value}:{event.data.link.kind}"


async def publish_triaged(producer: AIOKafkaProducer, pipeline: Pipeline, *items: CaseTriaged) -> None:
    for data in items:
        key = (data.customer_ref or str(data.feedback_id)).encode()
        await producer.send_and_wait(pipeline.topic(topics.CASE_TRIAGED), triaged_event(data).to_json_bytes(), key=key)


async def act(producer: AIOKafkaProducer, pipeline: Pipeline, event: ReceivedCloudEvent[AgentAction]) -> None:
    key = str(event.data.case_id).encode()
    await producer.send_and_wait(pipeline.topic(topics.AGENT_ACTIONS), event.to_json_bytes(), key=key)


def action_event(model: type[ReceivedCloudEvent[AgentAction]], data: AgentAction) -> ReceivedCloudEvent[AgentAction]:
    return model(id=uuid.uuid4(), source="/desk/test", time=datetime.now(UTC), subject=str(data.case_id), data=data)


def now() -> datetime:
    return datetime.now(UTC)


async def test_one_case_per_customer_problem_conflicts_never_merge_and_a_split_undoes_a_merge(
    routing: Pipeline, producer: AIOKafkaProducer, db: asyncpg.Connection
) -> None:
    pipeline = routing
    # The vault holds the fraud desk's mobile number (intake would have put it there).
    assert await wait_for_rows(db, "SELECT count(*) FROM schema_migrations WHERE version = 4", 1) == 1
    await db.execute("INSERT INTO pii.vault (token, kind, value) VALUES ($1, 'mobile', $2)", MOBILE_TOKEN, MOBILE)
    at = now()
    await publish_triaged(
        producer,
        pipeline,
        triaged("hotline", customer="C1", details=hotline(), at=at),
        triaged(
            "weibo",
            customer="C1",
            details=social("P-LOAN", posted_at=at - timedelta(hours=1)),
            category=Category.LOAN_APPROVAL,
            at=at + timedelta(hours=5),
        ),
        triaged("anonymous", customer=None, details=social("P-ANON"), at=at),
        triaged("referral-a", customer="C3", details=regulator("12378-A"), at=at),
        triaged("referral-b", customer="C3", details=regulator("12378-B"), at=at),
        triaged(
            "fraud",
            customer="C4",
            category=Category.FRAUD_SECURITY,
            text=f"卡被盗刷了，请打我手机[MOBILE#{MOBILE_TOKEN}]",
            at=at,
        ),
    )
    async with Topics(pipeline) as seen:
        await seen.until(lambda: len(seen.routed) >= 6)
        # Another customer quotes the hotline case (now that it exists): not merged.
        await publish_triaged(
            producer, pipeline, triaged("other-customer", customer="C2", case_id=case_id_for(feedback_id("hotline")))
        )
        await seen.until(lambda: len(seen.routed) >= 7)
        hotline_case = seen.one("hotline").data.case_id
        assert hotline_case == case_id_for(feedback_id("hotline"))
        weibo = seen.one("weibo")
        assert (weibo.data.case_id, weibo.data.link.kind, weibo.data.link.match_basis) == (
            hotline_case,
            "merged",
            "customer_token",
        )
        assert weibo.data.queue is Queue.REPAYMENT_HARDSHIP, "delivered where the case is"
        anonymous = seen.one("anonymous")
        assert anonymous.data.link.kind == "new_case"
        assert anonymous.data.case_id == case_id_for(feedback_id("anonymous"))
        other = seen.one("other-customer")
        assert other.data.case_id != hotline_case
        assert any("another customer" in r.detail for r in other.data.reasons)
        assert seen.one("referral-a").data.case_id != seen.one("referral-b").data.case_id
        for event in seen.routed:
            assert seen.keys[event.id] == str(event.data.case_id).encode(), "keyed by case id"
            assert event.data.reasons

        # Masked views: the fraud desk sees the mobile number (revealed with an audit row); nobody else does.
        fraud = seen.one("fraud")
        assert fraud.data.queue is Queue.FRAUD
        assert fraud.data.visible_pii == [PiiKind.MOBILE]
        assert MOBILE in fraud.data.text
        assert f"[MOBILE#{MOBILE_TOKEN}]" not in fraud.data.text
        hardship = seen.one("hotline")
        assert "[MOBILE#0123456789abcdef]" in hardship.data.text
        assert hardship.data.visible_pii == []
        log = await db.fetch("SELECT ref, reader, found FROM pii.access_log")
        assert sorted(tuple(row) for row in log) == sorted(
            [(MOBILE_TOKEN, "routing:fraud", True), ("0123456789abcdef", "routing:fraud", False)]
        ), "the text's number and the caller number (a test token the vault does not hold), each read once, audited"

        # An agent undoes the merge: the post leaves the case for one of its own.
        await act(
            producer,
            pipeline,
            action_event(
                MergeUndoneEvent,
                MergeUndone(
                    case_id=hotline_case, agent_id="agent-9", feedback_id=feedback_id("weibo"), reason="another loan"
                ),
            ),
        )
        await seen.until(lambda: any(e.data.link.kind == "split" for e in seen.routed))
        (split,) = [e for e in seen.routed if e.data.link.kind == "split"]
        assert split.data.case_id == case_id_for(feedback_id("weibo"))
        assert split.data.link.split_from_case_id == hotline_case
        assert split.data.link.split_by == "agent-9"

    cases = await db.fetchval("SELECT count(*) FROM routing.cases")
    assert cases == 7, "hotline+weibo merged then split (2), anonymous, other customer, two referrals, fraud"
    assert await db.fetchval("SELECT case_id FROM routing.feedback WHERE feedback_id = $1", feedback_id("weibo")) == (
        split.data.case_id
    )


async def test_escalation_acceptance_and_overflow(
    routing: Pipeline, producer: AIOKafkaProducer, db: asyncpg.Connection
) -> None:
    pipeline = routing
    at = now()
    simple = {"category": Category.CARD_PAYMENT_ACCOUNT, "priority": Priority.P4, "sentiment": SentimentLabel.NEUTRAL}
    await publish_triaged(
        producer,
        pipeline,
        triaged("waits", customer="C10", at=at),
        triaged("taken", customer="C11", at=at),
        triaged("card-1", customer="C12", details=app(), at=at, **simple),
        triaged("card-2", customer="C13", details=app(), at=at, **simple),
    )
    async with Topics(pipeline) as seen:
        await seen.until(lambda: len(seen.routed) >= 4)
        taken = seen.one("taken").data.case_id
        await act(
            producer,
            pipeline,
            action_event(
                CaseAcceptedEvent, CaseAccepted(case_id=taken, agent_id="agent-1", queue=Queue.REPAYMENT_HARDSHIP)
            ),
        )
        # The cards queue now holds its limit (2): a third simple inquiry overflows; P1 and P2 ones never do.
        await publish_triaged(
            producer,
            pipeline,
            triaged("card-3", customer="C14", details=app(), at=at, **simple),
            triaged(
                "card-p1",
                customer="C15",
                details=app(),
                category=Category.CARD_PAYMENT_ACCOUNT,
                priority=Priority.P1,
                human_required=True,
                flags=(Flag.VULNERABLE,),
                at=at,
            ),
            triaged(
                "card-p2",
                customer="C16",
                details=app(),
                category=Category.CARD_PAYMENT_ACCOUNT,
                priority=Priority.P2,
                at=at,
            ),
        )
        await seen.until(lambda: all(seen.of(name) for name in ("card-3", "card-p1", "card-p2")))
        overflowed = seen.one("card-3")
        assert overflowed.data.queue is Queue.AI_ASSISTANT
        assert overflowed.data.overflow is True
        assert any(r.kind == "overflow" and "(limit 2)" in r.detail for r in overflowed.data.reasons)
        for name in ("card-p1", "card-p2"):
            stayed = seen.one(name)
            assert stayed.data.queue is Queue.CARDS_PAYMENTS
            assert stayed.data.overflow is False
            assert any(r.kind == "overflow" for r in stayed.data.reasons)

        # Nobody accepts "waits" within 6 s: it moves to loans, then (6 s later) to the senior desk.
        await seen.until(lambda: len([e for e in seen.of("waits") if e.data.link.kind == "escalated"]) >= 2)
        first, second = [e for e in seen.of("waits") if e.data.link.kind == "escalated"]
        assert (first.data.queue, first.data.escalation_level, first.data.target_index) == (Queue.LOANS, 1, 1)
        assert (second.data.queue, second.data.escalation_level) == (Queue.SENIOR_COMPLAINTS, 2)
        assert any(
            r.kind == "escalation" and "not accepted in repayment_hardship" in r.detail for r in first.data.reasons
        )
        assert not [e for e in seen.of("taken") if e.data.link.kind == "escalated"], "accepted: never escalates"

        # A resolved case leaves the backlog.
        await act(
            producer,
            pipeline,
            action_event(
                ResolvedEvent, Resolved(case_id=second.data.case_id, agent_id="agent-2", resolution="explained")
            ),
        )
    backlog = {}
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        backlog = {row["queue"]: row for row in await db.fetch("SELECT * FROM routing.queues")}
        if backlog.get("senior_complaints") is not None and backlog["senior_complaints"]["waiting"] == 0:
            break
        await asyncio.sleep(0.3)
    assert backlog["repayment_hardship"]["waiting"] == 0
    assert backlog["repayment_hardship"]["accepted_total"] == 1
    assert backlog["repayment_hardship"]["escalated_total"] == 1
    assert backlog["senior_complaints"]["waiting"] == 0
    assert backlog["cards_payments"]["waiting"] == 4
    assert backlog["ai_assistant"]["waiting"] == 1
    assert backlog["cards_payments"]["overflowed_total"] == 1, "the full queue sent one to the AI lane"
    due = await db.fetchval("SELECT count(*) FROM routing.assignments WHERE due_at IS NOT NULL AND due_at < now()")
    assert due <= 1, "nothing stays overdue but what the timer is about to take (the AI lane's 10 min are far off)"


async def test_a_viral_post_reaches_the_pr_queue_and_raises_an_alert(
    routing: Pipeline, producer: AIOKafkaProducer, db: asyncpg.Connection
) -> None:
    pipeline = routing
    at = now()
    posted = at - timedelta(hours=2)
    await publish_triaged(
        producer,
        pipeline,
        triaged(
            "post",
            customer=None,
            details=social("P-VIRAL", followers=3000, reposts=12, comments=5, likes=40, posted_at=posted),
            category=Category.WEALTH_PRODUCT,
            at=at,
        ),
    )
    async with Topics(pipeline) as seen:
        await seen.until(lambda: len(seen.routed) >= 1)
        assert [e.data.lane for e in seen.routed] == ["primary"], "a quiet post: no PR copy"
        assert seen.alerts == []
        await publish_triaged(
            producer,
            pipeline,
            triaged(
                "post-later",
                customer=None,
                details=social("P-VIRAL", followers=3000, reposts=5200, comments=1400, likes=20000, posted_at=posted),
                category=Category.WEALTH_PRODUCT,
                flags=(Flag.MEDIA_THREAT,),
                at=at + timedelta(hours=1),
            ),
        )
        await seen.until(lambda: len(seen.alerts) >= 1 and len(seen.of("post-later")) >= 2)
        update, pr = sorted(seen.of("post-later"), key=lambda e: e.data.lane != "primary")
        case_id = seen.one("post").data.case_id
        assert update.data.case_id == pr.data.case_id == case_id
        assert update.data.link.kind == "post_update"
        assert update.data.queue is Queue.WEALTH_PRODUCTS
        assert pr.data.lane == "public_opinion"
        assert pr.data.queue is Queue.PUBLIC_OPINION
        assert pr.data.virality_score is not None
        assert pr.data.virality_score >= 85
        (alert,) = seen.alerts
        assert alert.data.case_id == case_id
        assert alert.data.severity is Severity.CRITICAL
        assert alert.data.post_id == "P-VIRAL"
        assert alert.data.reposts_per_hour == pytest.approx(5188.0)
    assert await db.fetchval("SELECT count(*) FROM routing.cases") == 1, "updates of a post open no new case"
    assert await db.fetchval("SELECT alert_level FROM routing.social_posts") == 2


async def test_a_batch_in_one_transaction_stores_each_triage_as_it_came_and_a_redelivery_changes_nothing(
    database_url: str, tmp_path: Path
) -> None:
    """The batch handler the worker runs, straight on the database: claims and loads in one statement, writes
    in one, reveals every delivery's tokens in one; what it stores and audits is what one statement per row
    stored and audited."""
    settings = Settings()
    rules = load_rules(rules_file(tmp_path))
    pool = await connect_pool(database_url, min_size=1, max_size=2)
    try:
        await pool.execute("INSERT INTO pii.vault (token, kind, value) VALUES ($1, 'mobile', $2)", MOBILE_TOKEN, MOBILE)
        fraud_text = f"卡被盗刷了，请打我手机[MOBILE#{MOBILE_TOKEN}]"
        items = [
            triaged("hotline", customer="C1", details=hotline()),
            triaged("app", customer="C1", details=app(), category=Category.WEALTH_PRODUCT),
            triaged("same-problem", customer="C1", details=app()),
            triaged("post", customer=None, details=social("P-1")),
            triaged("post-again", customer=None, details=social("P-1", reposts=40)),
            triaged("referral", customer="C3", details=regulator("12378-A")),
            triaged("fraud-1", customer="C4", category=Category.FRAUD_SECURITY, text=fraud_text),
            triaged("fraud-2", customer="C5", category=Category.FRAUD_SECURITY, text=fraud_text),
        ]
        topic = settings.topic(topics.CASE_TRIAGED)
        messages = [
            InboundMessage(topic, 0, offset, b"k", triaged_event(data).to_json_bytes(), [])
            for offset, data in enumerate(items)
        ]
        router = Router(pool, settings, rules)
        counts = await router.handle(messages)
        assert counts["triaged"] == len(items)
        assert (counts["routed_new_case"], counts["routed_merged"], counts["routed_post_update"]) == (6, 1, 1)

        stored = {
            row["feedback_id"]: row["triaged"]
            for row in await pool.fetch("SELECT feedback_id, triaged FROM routing.feedback")
        }
        assert stored == {data.feedback_id: json.loads(data.model_dump_json()) for data in items}, (
            "each event's data object, as it came, is the triage serialised again"
        )
        merged = await pool.fetchrow(
            "SELECT case_id FROM routing.feedback WHERE feedback_id = $1", feedback_id("same-problem")
        )
        assert merged is not None
        assert merged["case_id"] == case_id_for(feedback_id("hotline"))
        keys = {row["key"]: row["case_id"] for row in await pool.fetch("SELECT key, case_id FROM routing.case_keys")}
        assert keys == {
            "post:weibo:P-1": case_id_for(feedback_id("post")),
            "regulator:nfra_12378:12378-A": case_id_for(feedback_id("referral")),
        }
        log = await pool.fetch("SELECT ref, reader, purpose, found FROM pii.access_log ORDER BY id")
        expected_log = [
            (token, "routing:fraud", f"case {case_id_for(feedback_id(name))} routed to queue fraud", found)
            for name in ("fraud-1", "fraud-2")
            for token, found in sorted([(MOBILE_TOKEN, True), ("0123456789abcdef", False)])
        ]
        assert [tuple(row) for row in log] == expected_log, "one audit row per token per delivery, in order"
        outbox = await pool.fetch("SELECT topic, key, value FROM outbox ORDER BY id")
        assert len(outbox) == counts["routed_new_case"] + counts["routed_merged"] + counts["routed_post_update"] + (
            counts["routed_public_opinion"] + counts["alerts"]
        )
        frauds = [CaseRoutedEvent.model_validate_json(row["value"]) for row in outbox if row["topic"].endswith("fraud")]
        assert [event.data.text for event in frauds] == [f"卡被盗刷了，请打我手机{MOBILE}"] * 2
        queues = {row["queue"]: row["waiting"] for row in await pool.fetch("SELECT queue, waiting FROM routing.queues")}
        assert sum(queues.values()) == 7, "one wait per case (the merge joins the hotline case's)"

        # The same records again (a redelivery): claimed already, so nothing is written, revealed or emitted.
        again = await router.handle(messages)
        assert again["duplicates"] == len(items)
        assert again["triaged"] == 0
        assert await pool.fetchval("SELECT count(*) FROM outbox") == len(outbox)
        assert await pool.fetchval("SELECT count(*) FROM pii.access_log") == len(log)
        assert {
            row["queue"]: row["waiting"] for row in await pool.fetch("SELECT queue, waiting FROM routing.queues")
        } == queues
    finally:
        await pool.close()


async def test_a_routing_table_changed_under_a_running_worker_makes_the_batch_retry_not_fail(
    database_url: str, tmp_path: Path
) -> None:
    """Rows come back as table-typed records; a migration that changes a table while the worker runs leaves
    its decoders stale: that batch is retried (and then succeeds), never dead-lettered as a bug."""
    settings = Settings()
    pool = await connect_pool(database_url, min_size=1, max_size=1)
    try:
        router = Router(pool, settings, load_rules(rules_file(tmp_path)))
        topic = settings.topic(topics.CASE_TRIAGED)

        def message(data: CaseTriaged, offset: int) -> InboundMessage:
            return InboundMessage(topic, 0, offset, b"k", triaged_event(data).to_json_bytes(), [])

        await router.handle([message(triaged("first", customer="C1", details=hotline()), 0)])
        await pool.execute("ALTER TABLE routing.cases ADD COLUMN note text")
        follow_up = [message(triaged("follow-up", customer="C1", details=app()), 1)]
        with pytest.raises(RetryableError):
            await router.handle(follow_up)
        counts = await router.handle(follow_up)
        assert counts["routed_merged"] == 1
    finally:
        await pool.close()
