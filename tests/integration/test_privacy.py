"""Personal data stops at intake: not on any topic after it, not in any log line, not outside the vault."""

from __future__ import annotations

import json
import re
import uuid

import asyncpg
import pytest
from aiokafka import AIOKafkaProducer

from schemas import topics
from schemas.channels import Channel
from services.privacy.store import reveal
from tests.integration.conftest import Pipeline, read_topic, wait_for_rows
from tests.samples import encode, raw_message

pytestmark = pytest.mark.integration

# Synthetic personal data of every kind, in the ways customers write it.
RESIDENT_ID = "110105199003076515"  # valid MOD 11-2 check digit
RESIDENT_ID_BAD_CHECK = "44030419851212003X"  # the right check digit is 1
MOBILE_SPACED = "+86 139 1234 5678"
MOBILE_FULL_WIDTH = "１５８－２２３３－４４５５"
MOBILE_PLAIN = "13700001111"
CARD_GROUPED = "6222 0212 3456 7890 128"  # Luhn-valid
CARD_PLAIN = "4392260000000008"  # Luhn-valid
EMAIL = "li.na.1988@example.com"
NAME_CN = "欧阳娜娜"
NAME_EN = "Margaret Thornton"
SENDER_NAME = "赵子龙"
SENDER_EMAIL = "zhao.zilong@example.org"

RAW_VALUES = [
    RESIDENT_ID,
    RESIDENT_ID_BAD_CHECK,
    MOBILE_SPACED,
    MOBILE_FULL_WIDTH,
    MOBILE_PLAIN,
    CARD_GROUPED,
    CARD_PLAIN,
    EMAIL,
    NAME_CN,
    NAME_EN,
    SENDER_NAME,
    SENDER_EMAIL,
]


def _forms(value: str) -> set[str]:
    """The value as written, and digits-only (a number must not leak reformatted either)."""
    plain = value.translate(str.maketrans("０１２３４５６７８９", "0123456789"))
    digits = re.sub(r"\D", "", plain)
    forms = {value, plain}
    if len(digits) >= 11:
        forms.add(digits[-11:] if "86" in plain[:4] else digits)
    return forms


FORBIDDEN = sorted({form for value in RAW_VALUES for form in _forms(value)})


def _messages() -> list[tuple[Channel, bytes]]:
    text = (
        f"我叫{NAME_CN}，身份证{RESIDENT_ID}，手机{MOBILE_SPACED}，卡号{CARD_GROUPED}，"
        f"邮箱{EMAIL}，我老公电话{MOBILE_FULL_WIDTH}，另一张卡{CARD_PLAIN}，证件{RESIDENT_ID_BAD_CHECK}"
    )
    return [
        (Channel.HOTLINE, encode(raw_message(Channel.HOTLINE, "p-h", caller_number=MOBILE_PLAIN, transcript=text))),
        (Channel.APP, encode(raw_message(Channel.APP, "p-a", text=text))),
        (Channel.SOCIAL, encode(raw_message(Channel.SOCIAL, "p-s", text=f"@银行客服 {text} #投诉#"))),
        (Channel.BRANCH, encode(raw_message(Channel.BRANCH, "p-b", text=f"客户到网点反映：{text}"))),
        (
            Channel.LETTER,
            encode(
                raw_message(
                    Channel.LETTER,
                    "p-l",
                    sender_name=SENDER_NAME,
                    sender_email=SENDER_EMAIL,
                    body=f"My name is {NAME_EN}. My card {CARD_GROUPED} was charged twice. "
                    f"Call me on {MOBILE_SPACED}. Regards, {NAME_EN}",
                )
            ),
        ),
        (Channel.REGULATOR, encode(raw_message(Channel.REGULATOR, "p-r", text=f"监管转办：{text}"))),
        # Rejected ones carry personal data too: a missing sent_at, and a body that is not JSON.
        (Channel.APP, encode({k: v for k, v in raw_message(Channel.APP, "p-x", text=text).items() if k != "sent_at"})),
        (Channel.HOTLINE, f"not json {text}".encode()),
    ]


async def test_no_personal_data_after_intake_on_any_topic_in_any_log_or_table(
    pipeline: Pipeline, producer: AIOKafkaProducer, db: asyncpg.Connection
) -> None:
    for processor in ("intake", "triage", "routing", "tracker"):
        pipeline.start(processor)
    for channel, value in _messages():
        await producer.send_and_wait(pipeline.topic(topics.raw_topic(channel)), value)
    assert await wait_for_rows(db, "SELECT count(*) FROM cases", 6) == 6
    rejected = await read_topic(pipeline.bootstrap_servers, pipeline.topic(topics.FEEDBACK_REJECTED), at_least=2)
    assert len(rejected) == 2
    triaged = await read_topic(pipeline.bootstrap_servers, pipeline.topic(topics.CASE_TRIAGED), at_least=6)
    assert len(triaged) == 6

    downstream = [name for name in topics.ALL_TOPICS if name not in topics.RAW_TOPICS]
    records = []
    for name in downstream:
        records += await read_topic(pipeline.bootstrap_servers, pipeline.topic(name), at_least=0, settle_seconds=0.5)
    assert len(records) >= 6 + 6 + 6 + 2, "feedback, triage results, cases and rejections were all read"
    leaks = []
    for record in records:
        blob = (record.key or b"") + record.value + b"".join(v for _, v in record.headers)
        text = blob.decode("utf-8", errors="replace")
        leaks += [(record.topic, form) for form in FORBIDDEN if form in text]
    assert leaks == []

    masked_text = json.loads(records[0].value) if records else {}
    assert masked_text, "sanity: something was read"

    for name in ("intake", "triage", "routing", "tracker"):
        log = pipeline.log_text(name)
        assert [form for form in FORBIDDEN if form in log] == [], f"{name} log leaks personal data"

    dumps = []
    every_table = "SELECT schemaname || '.' || tablename AS name FROM pg_tables WHERE schemaname = ANY($1::text[])"
    tables = [row["name"] for row in await db.fetch(every_table, ["public", "routing", "tracker"])]
    assert {"public.cases", "public.case_events", "public.outbox"} <= set(tables)
    assert any(table.startswith("routing.") for table in tables)
    assert any(t.startswith("tracker.") for t in tables)
    for table in tables:
        dumps.append(await db.fetchval(f"SELECT coalesce(string_agg(t::text, ' '), '') FROM {table} t"))
    database_text = " ".join(dumps)
    assert [form for form in FORBIDDEN if form in database_text] == [], "only the pii schema holds originals"

    vault = {row["value"] for row in await db.fetch("SELECT value FROM pii.vault")}
    assert set(RAW_VALUES) <= vault


async def test_vault_reads_go_through_the_audited_function_and_its_tables_stay_closed(
    pipeline: Pipeline, producer: AIOKafkaProducer, db: asyncpg.Connection, database_url: str
) -> None:
    pipeline.start("intake")
    body = raw_message(Channel.APP, "v-1", text=f"请回电 {MOBILE_PLAIN}")
    await producer.send_and_wait(pipeline.topic(topics.raw_topic(Channel.APP)), encode(body))
    received = await read_topic(pipeline.bootstrap_servers, pipeline.topic(topics.FEEDBACK_RECEIVED), at_least=1)
    event = json.loads(received[0].value)
    (pii,) = event["data"]["pii"]
    assert pii["kind"] == "mobile"
    assert event["data"]["text"] == f"请回电 [MOBILE#{pii['token']}]"

    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=1)
    try:
        assert await reveal(pool, pii["token"], reader="agent-0042", purpose="call the customer back") == MOBILE_PLAIN
        assert await reveal(pool, "0" * 16, reader="agent-0042", purpose="probe an unknown token") is None
    finally:
        await pool.close()
    log = await db.fetch("SELECT ref, reader, purpose, found FROM pii.access_log ORDER BY id")
    assert [tuple(row) for row in log] == [
        (pii["token"], "agent-0042", "call the customer back", True),
        ("0" * 16, "agent-0042", "probe an unknown token", False),
    ]

    # An application role without the reader grant sees nothing; with it, it may only call the function.
    role = f"parley_test_{uuid.uuid4().hex[:8]}"
    await db.execute(f"CREATE ROLE {role} NOLOGIN")
    try:
        await db.execute(f"SET ROLE {role}")
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await db.fetch("SELECT * FROM pii.vault")
        await db.execute("RESET ROLE")
        await db.execute(f"GRANT parley_pii_reader TO {role}")
        await db.execute(f"SET ROLE {role}")
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await db.fetch("SELECT * FROM pii.vault")
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await db.fetch("SELECT * FROM pii.access_log")
        value = await db.fetchval("SELECT pii.reveal($1, 'agent-7', 'verify identity')", pii["token"])
        assert value == MOBILE_PLAIN
    finally:
        await db.execute("RESET ROLE")
        await db.execute(f"DROP ROLE {role}")
    assert await db.fetchval("SELECT count(*) FROM pii.access_log WHERE reader = 'agent-7'") == 1
