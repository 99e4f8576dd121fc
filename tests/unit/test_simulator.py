"""The simulator's messages: valid ones pass intake, each flaw is rejected with its matching reason."""

from __future__ import annotations

import json
import random
from datetime import datetime

import pytest

from schemas.channels import Channel
from schemas.feedback import RejectReason
from services.intake.logic import Accepted, Rejected, normalise
from services.simulator.logic import TEXT_FIELD, THEMED_TEXTS, Flaw, Memory, _flawed, generate, raw_body

LIMIT = 256 * 1024

FLAW_REASON = {
    Flaw.INVALID_JSON: RejectReason.INVALID_JSON,
    Flaw.NOT_AN_OBJECT: RejectReason.NOT_AN_OBJECT,
    Flaw.MISSING_FIELD: RejectReason.SCHEMA_VIOLATION,
    Flaw.WRONG_TYPE: RejectReason.SCHEMA_VIOLATION,
    Flaw.EMPTY_TEXT: RejectReason.EMPTY_TEXT,
    Flaw.UNKNOWN_CHANNEL: RejectReason.UNKNOWN_CHANNEL,
    Flaw.INVALID_ENCODING: RejectReason.INVALID_ENCODING,
    Flaw.TOO_LARGE: RejectReason.TOO_LARGE,
}


def test_every_flaw_has_an_expected_reason() -> None:
    assert set(FLAW_REASON) == set(Flaw)


@pytest.mark.parametrize("channel", list(Channel))
@pytest.mark.parametrize("seed", range(5))
def test_valid_messages_are_accepted(channel: Channel, seed: int, now: datetime) -> None:
    rng = random.Random(seed)
    for sequence in range(10):
        message = generate(channel, rng, now, sequence, malformed_share=0.0)
        assert message.flaw is None
        assert message.channel is channel
        result = normalise(channel, message.value, received_at=now, max_body_bytes=LIMIT, pii_key=b"test-key")
        assert isinstance(result, Accepted), (message.value, result)
        assert result.event.data.channel is channel
        assert result.event.data.channel_message_id == message.message_id
        assert result.dedupe_key == str(result.event.id)
        body = json.loads(message.value)
        if body.get("customer_id"):
            assert message.key == body["customer_id"].encode()
            assert result.key == body["customer_id"]
        else:
            assert message.key is None


def test_message_id_carries_channel_date_run_and_sequence(now: datetime) -> None:
    message = generate(Channel.REGULATOR, random.Random(1), now, 42, malformed_share=0.0, run_id="ab12")
    assert message.message_id.startswith("REG-20261122-ab12-00000042-")
    other_run = generate(Channel.REGULATOR, random.Random(1), now, 42, malformed_share=0.0, run_id="cd34")
    assert other_run.message_id != message.message_id, "a repeated seeded run must not look like retries"
    assert json.loads(message.value)["message_id"] == message.message_id


@pytest.mark.parametrize("channel", list(Channel))
@pytest.mark.parametrize("flaw", list(Flaw))
def test_forced_flaw_is_rejected_with_matching_reason(channel: Channel, flaw: Flaw, now: datetime) -> None:
    body = raw_body(channel, random.Random(3), now, "SIM-1")
    value = _flawed(flaw, body, TEXT_FIELD.get(channel, "text"))
    result = normalise(channel, value, received_at=now, max_body_bytes=LIMIT, pii_key=b"test-key")
    assert isinstance(result, Rejected)
    assert result.reason is FLAW_REASON[flaw]


def test_generated_flaws_cover_every_kind_and_match_their_reason(now: datetime) -> None:
    rng = random.Random(2026)
    channels = list(Channel)
    seen: set[Flaw] = set()
    for sequence in range(2000):
        channel = channels[sequence % len(channels)]
        message = generate(channel, rng, now, sequence, malformed_share=1.0)
        assert message.flaw is not None
        assert message.key is None
        result = normalise(channel, message.value, received_at=now, max_body_bytes=LIMIT, pii_key=b"test-key")
        assert isinstance(result, Rejected), message.flaw
        assert result.reason is FLAW_REASON[message.flaw]
        seen.add(message.flaw)
        if seen == set(Flaw):
            break
    assert seen == set(Flaw)


def test_same_seed_same_bytes(now: datetime) -> None:
    def run(seed: int) -> list[tuple[bytes, bytes | None, str, Flaw | None]]:
        rng = random.Random(seed)
        return [
            (m.value, m.key, m.message_id, m.flaw)
            for m in (generate(c, rng, now, i, malformed_share=0.3) for i, c in enumerate(list(Channel) * 5))
        ]

    first = run(11)
    assert first == run(11)
    assert first != run(12)


def test_memory_brings_back_customers_through_other_channels_and_updates_posts(now: datetime) -> None:
    rng = random.Random(7)
    memory = Memory(follow_up_share=0.3, post_update_share=0.5, viral_share=0.2)
    channels = list(Channel)
    messages = [
        generate(channels[i % len(channels)], rng, now, i, malformed_share=0.0, memory=memory) for i in range(600)
    ]
    customers_seen: dict[str, str] = {}
    first_theme: dict[str, str] = {}
    follow_ups = [m for m in messages if m.kind == "follow_up"]
    updates = [m for m in messages if m.kind == "post_update"]
    assert len(follow_ups) > 50
    assert len(updates) > 20
    for message in messages:
        result = normalise(message.channel, message.value, received_at=now, max_body_bytes=LIMIT, pii_key=b"k")
        assert isinstance(result, Accepted), message.kind
        body = json.loads(message.value)
        text = body.get("transcript") or body.get("body") or body["text"]
        theme = next(theme for theme, texts in THEMED_TEXTS.items() if any(t in text for t in texts))
        customer = body.get("customer_id")
        if customer is None:
            continue
        if message.kind == "follow_up":
            assert first_theme[customer] == theme, "a follow-up is about the customer's first theme"
        customers_seen.setdefault(customer, message.channel.value)
        first_theme.setdefault(customer, theme)
    assert any(customers_seen[json.loads(m.value)["customer_id"]] != m.channel.value for m in follow_ups)
    assert any(m.channel is Channel.SOCIAL and json.loads(m.value).get("customer_id") for m in follow_ups)
    # A post update repeats the post (id, author, text, url) with grown figures and a new message id.
    first_seen: dict[str, dict[str, object]] = {}
    grew = viral = 0
    for message in messages:
        if message.channel is not Channel.SOCIAL:
            continue
        body = json.loads(message.value)
        earlier = first_seen.setdefault(body["post_id"], body)
        if message.kind == "post_update":
            assert earlier is not body, "an update of a post seen before"
            assert (body["author_handle"], body["text"], body["url"]) == (
                earlier["author_handle"],
                earlier["text"],
                earlier["url"],
            )
            assert body["message_id"] != earlier["message_id"]
            reach, before = body["reach"], earlier["reach"]
            assert isinstance(before, dict)
            assert reach["reposts"] >= before["reposts"]
            grew += reach["reposts"] > before["reposts"]
            viral += reach["reposts"] - before["reposts"] > 500
    assert grew > 10
    assert viral > 0
    anonymous = [m for m in messages if m.channel is Channel.SOCIAL and m.kind == "new"]
    assert anonymous
    assert all(json.loads(m.value).get("customer_id") is None for m in anonymous)
    assert all(m.key is None for m in anonymous)
