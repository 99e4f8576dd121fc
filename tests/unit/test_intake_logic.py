"""Intake rules: a raw channel message becomes a canonical event, or a rejection with one reason."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from uuid import UUID

import pytest
from pydantic import ValidationError

from schemas.channels import (
    AppDetails,
    BranchDetails,
    Channel,
    HotlineDetails,
    LetterDetails,
    RegulatorDetails,
    SocialDetails,
    SocialPlatform,
)
from schemas.feedback import FeedbackReceived, Language, RejectReason
from services.intake.logic import Accepted, Rejected, detect_language, feedback_id, normalise
from tests.samples import SENT_AT, encode, raw_message

LIMIT = 256 * 1024
PHONE = "13800138000"

EXPECTED_TEXT = {
    Channel.HOTLINE: "客户：我生病住院了，这个月贷款还不上，想申请延期。",
    Channel.APP: "APP转账一直失败，工资发不出去了",
    Channel.SOCIAL: "某银行理财亏了还不给解释，大家小心！",
    Channel.BRANCH: "客户到网点反映信用卡年费多收",
    Channel.LETTER: "I lost my job and cannot make my loan repayment this month.",
    Channel.REGULATOR: "監管轉辦：客戶投訴理財產品銷售誤導",
}
EXPECTED_LANGUAGE = {
    Channel.HOTLINE: Language.ZH_HANS,
    Channel.APP: Language.ZH_HANS,
    Channel.SOCIAL: Language.ZH_HANS,
    Channel.BRANCH: Language.ZH_HANS,
    Channel.LETTER: Language.EN,
    Channel.REGULATOR: Language.ZH_HANT,
}
EXPECTED_DETAILS = {
    Channel.HOTLINE: HotlineDetails,
    Channel.APP: AppDetails,
    Channel.SOCIAL: SocialDetails,
    Channel.BRANCH: BranchDetails,
    Channel.LETTER: LetterDetails,
    Channel.REGULATOR: RegulatorDetails,
}


def run(channel: Channel, body: dict[str, Any] | bytes, now: datetime, limit: int = LIMIT) -> Accepted | Rejected:
    value = body if isinstance(body, bytes) else encode(body)
    return normalise(channel, value, received_at=now, max_body_bytes=limit, pii_key=b"test-key")


def accepted(channel: Channel, body: dict[str, Any] | bytes, now: datetime) -> Accepted:
    result = run(channel, body, now)
    assert isinstance(result, Accepted), result
    return result


def rejected(channel: Channel, body: dict[str, Any] | bytes, now: datetime, limit: int = LIMIT) -> Rejected:
    result = run(channel, body, now, limit)
    assert isinstance(result, Rejected), result
    return result


# ---- accepted messages ----


@pytest.mark.parametrize("channel", list(Channel))
def test_every_channel_sample_is_accepted_with_canonical_fields(channel: Channel, now: datetime) -> None:
    result = accepted(channel, raw_message(channel, "M-1"), now)
    event = result.event
    data = event.data

    assert event.type == "com.parley.feedback.received.v1"
    assert event.source == "/parley/intake"
    assert event.specversion == "1.0"
    assert event.time == now
    assert event.subject is None
    assert event.id == feedback_id(channel, "M-1")

    assert data.channel is channel
    assert data.channel_message_id == "M-1"
    assert data.text == EXPECTED_TEXT[channel]
    assert data.language is EXPECTED_LANGUAGE[channel]
    assert data.sent_at == datetime(2026, 11, 22, 1, 15, tzinfo=UTC)
    assert data.case_id is None
    assert type(data.details) is EXPECTED_DETAILS[channel]
    assert data.details.channel is channel

    assert result.dedupe_key == str(feedback_id(channel, "M-1"))


@pytest.mark.parametrize("channel", [c for c in Channel if c is not Channel.SOCIAL])
def test_customer_is_the_key_and_the_customer_ref(channel: Channel, now: datetime) -> None:
    result = accepted(channel, raw_message(channel, "M-2"), now)
    assert result.key == "C-M-2"
    assert result.event.data.customer_ref == "C-M-2"


def test_anonymous_message_is_keyed_by_channel_and_message_id(now: datetime) -> None:
    result = accepted(Channel.SOCIAL, raw_message(Channel.SOCIAL, "M-3"), now)
    assert result.event.data.customer_ref is None
    assert result.key == "social:M-3"


def test_received_at_is_the_event_time_not_sent_at(now: datetime) -> None:
    later = now + timedelta(hours=5)
    result = accepted(Channel.APP, raw_message(Channel.APP, "M-4"), later)
    assert result.event.time == later
    assert result.event.data.sent_at == datetime.fromisoformat(SENT_AT)


def test_hotline_details(now: datetime) -> None:
    result = accepted(Channel.HOTLINE, raw_message(Channel.HOTLINE, "H-1"), now)
    details = result.event.data.details
    assert isinstance(details, HotlineDetails)
    # The caller's number is personal data: it travels as a token, the original goes to the vault.
    assert details.caller_number is not None
    assert re.fullmatch(r"\[MOBILE#[0-9a-f]{16}\]", details.caller_number)
    token = details.caller_number[8:-1]
    assert (token, "mobile", "+86 138 0013 8000") in result.originals
    assert "+86 138 0013 8000" not in result.event.model_dump_json()
    assert details.ivr_path == ["main", "loans"]
    assert details.duration_seconds == 340


def test_app_details(now: datetime) -> None:
    details = accepted(Channel.APP, raw_message(Channel.APP, "A-1"), now).event.data.details
    assert isinstance(details, AppDetails)
    assert (details.kind, details.platform, details.app_version, details.session_id) == (
        "chat",
        "android",
        "8.4.1",
        "S1",
    )
    assert details.form_subject is None


def test_social_details_keep_reach(now: datetime) -> None:
    details = accepted(Channel.SOCIAL, raw_message(Channel.SOCIAL, "S-1"), now).event.data.details
    assert isinstance(details, SocialDetails)
    assert details.platform is SocialPlatform.WEIBO
    assert details.post_id == "P-S-1"
    assert details.author_handle == "angry_user"
    assert details.posted_at == datetime(2026, 11, 22, 9, 15, tzinfo=timezone(timedelta(hours=8)))
    assert details.reach.followers == 120000
    assert details.reach.reposts == 3400
    assert details.reach.comments == 800
    assert details.reach.likes == 9000
    assert details.reach.views is None


def test_branch_details(now: datetime) -> None:
    details = accepted(Channel.BRANCH, raw_message(Channel.BRANCH, "B-1"), now).event.data.details
    assert isinstance(details, BranchDetails)
    assert (details.branch_code, details.staff_id) == ("SH-PD-003", "E12345")


def test_letter_details(now: datetime) -> None:
    result = accepted(Channel.LETTER, raw_message(Channel.LETTER, "L-1"), now)
    details = result.event.data.details
    assert isinstance(details, LetterDetails)
    assert details.kind == "email"
    assert details.sender_email is not None
    assert details.sender_email.startswith("[EMAIL#")
    assert "someone@mail.example" not in result.event.model_dump_json()
    assert details.subject == "Complaint"
    assert details.sender_name is None


def test_regulator_details(now: datetime) -> None:
    details = accepted(Channel.REGULATOR, raw_message(Channel.REGULATOR, "R-1"), now).event.data.details
    assert isinstance(details, RegulatorDetails)
    assert details.regulator.value == "nfra_12378"
    assert details.source_reference == "12378-20261122-000123"
    assert details.response_due_by == datetime(2026, 12, 6, 16, 0, tzinfo=UTC)


def test_case_id_in_raw_message_becomes_subject(now: datetime) -> None:
    case_id = "6f1c1a2e-0000-4000-8000-000000000001"
    result = accepted(Channel.APP, raw_message(Channel.APP, "A-2", case_id=case_id), now)
    assert result.event.data.case_id == UUID(case_id)
    assert result.event.subject == case_id


def test_matching_declared_channel_is_accepted(now: datetime) -> None:
    result = accepted(Channel.BRANCH, raw_message(Channel.BRANCH, "B-2", channel="branch"), now)
    assert result.event.data.channel is Channel.BRANCH


def test_unknown_extra_fields_in_raw_message_are_ignored(now: datetime) -> None:
    body = raw_message(Channel.APP, "A-3", new_field_from_app_team="x", nested={"a": [1, 2]})
    result = accepted(Channel.APP, body, now)
    dumped = result.event.model_dump()
    assert "new_field_from_app_team" not in json.dumps(dumped, default=str)
    assert result.event.data.text == EXPECTED_TEXT[Channel.APP]


def test_published_event_model_is_closed(now: datetime) -> None:
    data = accepted(Channel.APP, raw_message(Channel.APP, "A-4"), now).event.data
    fields = data.model_dump()
    FeedbackReceived.model_validate(fields)  # the untouched fields are valid
    with pytest.raises(ValidationError) as info:
        FeedbackReceived.model_validate({**fields, "unexpected": 1})
    assert info.value.errors()[0]["type"] == "extra_forbidden"


def test_body_exactly_at_limit_is_not_too_large(now: datetime) -> None:
    value = encode(raw_message(Channel.APP, "A-5"))
    assert isinstance(run(Channel.APP, value, now, limit=len(value)), Accepted)
    assert rejected(Channel.APP, value, now, limit=len(value) - 1).reason is RejectReason.TOO_LARGE


# ---- deterministic ids ----


def test_event_id_is_deterministic(now: datetime) -> None:
    first = accepted(Channel.APP, raw_message(Channel.APP, "A-6"), now).event.id
    again = accepted(Channel.APP, raw_message(Channel.APP, "A-6", text="retried with other text"), now + timedelta(1))
    assert first == again.event.id
    assert first == feedback_id(Channel.APP, "A-6")
    assert first.version == 5


def test_event_id_differs_by_message_id_and_by_channel(now: datetime) -> None:
    app = accepted(Channel.APP, raw_message(Channel.APP, "X-1"), now).event.id
    other_message = accepted(Channel.APP, raw_message(Channel.APP, "X-2"), now).event.id
    other_channel = accepted(Channel.BRANCH, raw_message(Channel.BRANCH, "X-1"), now).event.id
    assert len({app, other_message, other_channel}) == 3


# ---- rejections ----


def test_too_large(now: datetime) -> None:
    value = encode(raw_message(Channel.APP, "A-7", text="投诉" * 100))
    result = rejected(Channel.APP, value, now, limit=100)
    assert result.reason is RejectReason.TOO_LARGE
    assert str(len(value)) in result.detail
    assert "100" in result.detail


def test_invalid_encoding(now: datetime) -> None:
    value = json.dumps(raw_message(Channel.APP, "A-8"), ensure_ascii=False).encode("gb18030")
    result = rejected(Channel.APP, value, now)
    assert result.reason is RejectReason.INVALID_ENCODING
    assert "UTF-8" in result.detail


@pytest.mark.parametrize("value", [b'{"message_id": "A-9", ', b"not json", b"", b"{'single': 'quotes'}"])
def test_invalid_json(value: bytes, now: datetime) -> None:
    assert rejected(Channel.APP, value, now).reason is RejectReason.INVALID_JSON


@pytest.mark.parametrize(
    ("value", "kind"), [(b"[1, 2]", "list"), (b'"text"', "str"), (b"42", "int"), (b"null", "None")]
)
def test_not_an_object(value: bytes, kind: str, now: datetime) -> None:
    result = rejected(Channel.APP, value, now)
    assert result.reason is RejectReason.NOT_AN_OBJECT
    assert kind in result.detail


@pytest.mark.parametrize("declared", ["fax", 7, ["app"], {"name": "app"}, "", "APP", True])
def test_unknown_channel(declared: Any, now: datetime) -> None:
    result = rejected(Channel.APP, raw_message(Channel.APP, "A-10", channel=declared), now)
    assert result.reason is RejectReason.UNKNOWN_CHANNEL


def test_channel_mismatch(now: datetime) -> None:
    result = rejected(Channel.APP, raw_message(Channel.APP, "A-11", channel="hotline"), now)
    assert result.reason is RejectReason.CHANNEL_MISMATCH
    assert "hotline" in result.detail


def test_schema_violation_missing_sent_at(now: datetime) -> None:
    body = raw_message(Channel.APP, "A-12")
    del body["sent_at"]
    result = rejected(Channel.APP, body, now)
    assert result.reason is RejectReason.SCHEMA_VIOLATION
    assert result.detail.startswith("sent_at:")


@pytest.mark.parametrize("sent_at", [12345, 1795000000.5, "2026-11-22T09:15:00", "yesterday", None])
def test_schema_violation_bad_sent_at(sent_at: Any, now: datetime) -> None:
    result = rejected(Channel.APP, raw_message(Channel.APP, "A-13", sent_at=sent_at), now)
    assert result.reason is RejectReason.SCHEMA_VIOLATION
    assert "sent_at" in result.detail


@pytest.mark.parametrize("sent_at", ["12345", PHONE])
def test_schema_violation_numeric_string_sent_at(sent_at: str, now: datetime) -> None:
    result = run(Channel.APP, raw_message(Channel.APP, "A-14", sent_at=sent_at), now)
    assert isinstance(result, Rejected)
    assert result.reason is RejectReason.SCHEMA_VIOLATION


def test_schema_violation_wrong_type_for_reach_followers(now: datetime) -> None:
    reach = {"followers": "many", "reposts": 1}
    result = rejected(Channel.SOCIAL, raw_message(Channel.SOCIAL, "S-2", reach=reach), now)
    assert result.reason is RejectReason.SCHEMA_VIOLATION
    assert "reach.followers" in result.detail


def test_schema_violation_wrong_text_field_for_channel(now: datetime) -> None:
    body = raw_message(Channel.LETTER, "L-2")
    body["text"] = body.pop("body")  # letters carry their text in "body"
    result = rejected(Channel.LETTER, body, now)
    assert result.reason is RejectReason.SCHEMA_VIOLATION
    assert result.detail.startswith("body:")


@pytest.mark.parametrize(
    ("channel", "overrides", "path"),
    [
        (Channel.SOCIAL, {"reach": {"followers": f"{PHONE}x"}}, "reach.followers"),
        (Channel.APP, {"customer_id": int(PHONE)}, "customer_id"),
        (Channel.APP, {"kind": PHONE}, "kind"),
        (Channel.APP, {"case_id": PHONE}, "case_id"),
        (Channel.HOTLINE, {"duration_seconds": f"{PHONE} seconds"}, "duration_seconds"),
        (Channel.HOTLINE, {"caller_number": [PHONE]}, "caller_number"),
        (Channel.REGULATOR, {"regulator": PHONE}, "regulator"),
    ],
)
def test_detail_names_the_field_never_the_value(
    channel: Channel, overrides: dict[str, Any], path: str, now: datetime
) -> None:
    result = rejected(channel, raw_message(channel, "P-1", **overrides), now)
    assert result.reason is RejectReason.SCHEMA_VIOLATION
    assert path in result.detail
    assert PHONE not in result.detail
    assert "138" not in result.detail


@pytest.mark.parametrize("channel", list(Channel))
@pytest.mark.parametrize("blank", ["", "   ", "\n\t ", "\u3000"])
def test_empty_text(channel: Channel, blank: str, now: datetime) -> None:
    field = {Channel.HOTLINE: "transcript", Channel.LETTER: "body"}.get(channel, "text")
    result = rejected(channel, raw_message(channel, "E-1", **{field: blank}), now)
    assert result.reason is RejectReason.EMPTY_TEXT


def test_checks_run_in_order_size_before_encoding_before_json(now: datetime) -> None:
    bad = "投诉".encode("gb18030") * 100
    assert rejected(Channel.APP, bad, now, limit=10).reason is RejectReason.TOO_LARGE
    assert rejected(Channel.APP, bad, now).reason is RejectReason.INVALID_ENCODING


# ---- language ----


@pytest.mark.parametrize(
    ("text", "language"),
    [
        ("这个月贷款还不上，请帮我处理", Language.ZH_HANS),
        ("我上个月突然生病住院", Language.ZH_HANS),
        ("這個月貸款還不上，請幫我處理", Language.ZH_HANT),
        ("理財產品虧損嚴重，當初銷售時沒有說明風險", Language.ZH_HANT),
        ("我唔想再等", Language.YUE),
        ("呢個係我嘅卡", Language.YUE),
        ("我張卡俾人盜用咗", Language.YUE),
        ("I lost my job and cannot pay", Language.EN),
        ("My card was stolen in 北京 yesterday evening", Language.EN),
        ("13800138000", Language.UNDETERMINED),
        ("", Language.UNDETERMINED),
        ("!!! ???", Language.UNDETERMINED),
    ],
)
def test_detect_language(text: str, language: Language) -> None:
    assert detect_language(text) is language


def test_traditional_mandarin_with_guanxi_is_not_cantonese() -> None:
    assert detect_language("這與我的貸款沒有關係，請處理") is Language.ZH_HANT


def test_nul_characters_are_dropped_because_postgresql_cannot_store_them() -> None:
    body = raw_message(Channel.APP, "M-\x00-1", text="还款\x00困难")
    result = run(Channel.APP, body, datetime(2026, 11, 22, 9, 30, tzinfo=UTC))
    assert isinstance(result, Accepted)
    assert result.event.data.text == "还款困难"
    assert result.event.data.channel_message_id == "M--1"
    assert "\x00" not in result.dedupe_key
