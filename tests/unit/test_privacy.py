"""Personal-data detection and masking: what is masked, what is left alone, and the tokens."""

from __future__ import annotations

import hashlib

import pytest

from schemas.values import PiiKind
from services.privacy.logic import find_pii, luhn_ok, mask, mask_value, redact_bytes, resident_id_check_digit_ok

KEY = b"unit-test-key"


def kinds(text: str) -> list[tuple[str, str]]:
    return [(span.kind.value, span.value) for span in find_pii(text)]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("身份证110105199003076515。", [("resident_id", "110105199003076515")]),
        ("证件号 44030419851212003x", [("resident_id", "44030419851212003x")]),
        ("手机13800138000", [("mobile", "13800138000")]),
        ("电话 138 0013 8000 找我", [("mobile", "138 0013 8000")]),
        ("电话138-0013-8000", [("mobile", "138-0013-8000")]),
        ("call +86 139 1234 5678 now", [("mobile", "+86 139 1234 5678")]),
        ("+8613912345678", [("mobile", "+8613912345678")]),
        ("手机：１５８２２３３４４５５", [("mobile", "１５８２２３３４４５５")]),
        ("号码＋８６ １５８－２２３３－４４５５", [("mobile", "＋８６ １５８－２２３３－４４５５")]),
        ("卡号6222 0212 3456 7890 128被扣", [("bank_card", "6222 0212 3456 7890 128")]),
        ("卡号6222021234567890128", [("bank_card", "6222021234567890128")]),
        ("card 4392-2600-0000-0008", [("bank_card", "4392-2600-0000-0008")]),
        ("邮箱li.na.1988@example.com，谢谢", [("email", "li.na.1988@example.com")]),
        ("我叫王建军，", [("name", "王建军")]),
        ("本人李娜因病", [("name", "李娜")]),
        ("姓名：欧阳娜娜 电话", [("name", "欧阳娜娜")]),
        ("我係陳大文，張卡俾人盜用咗", [("name", "陳大文")]),
        ("此致\n敬礼\n张伟", [("name", "张伟")]),
        ("My name is Margaret Thornton and", [("name", "Margaret Thornton")]),
        ("Yours sincerely, Dr. Alan Lee", [("name", "Alan Lee")]),
    ],
)
def test_each_kind_in_the_ways_customers_write_it(text: str, expected: list[tuple[str, str]]) -> None:
    assert kinds(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "请拨打95588或者400-820-8888，也可以打12378投诉",
        "金额3,450.00元，2026年11月10日扣款，2026-11-10",
        "订单号2026112215304588，流水号 202611221530458871",
        "交易号：6222021234567890128",  # a Luhn-valid number, but the context says reference
        "卡号6222 0212 3456 7890 125",  # fails Luhn: not a card
        "余额 12345678901234 元",
        "王先生您好",
        "我是个体户，生意不好",
        "I am writing to complain. Regards, The Customer",
    ],
)
def test_what_is_not_personal_data_is_left_alone(text: str) -> None:
    assert kinds(text) == []


def test_check_digits() -> None:
    assert resident_id_check_digit_ok("110105199003076515")
    assert not resident_id_check_digit_ok("110105199003076511")
    assert luhn_ok("6222021234567890128")
    assert not luhn_ok("6222021234567890125")


def test_an_id_failing_its_check_digit_is_masked_with_lower_confidence() -> None:
    good, bad = find_pii("110105199003076515 和 110105199003076511")
    assert good.confidence > bad.confidence
    assert bad.kind is PiiKind.RESIDENT_ID


def test_masked_text_and_stable_keyed_tokens() -> None:
    first = mask("我叫王建军，手机138 0013 8000", KEY)
    second = mask("王建军？不，我的号码是+86 13800138000", KEY)
    assert first.text.startswith("我叫[NAME#")
    assert "138" not in first.text
    mobile_tokens = {s.token for s in first.spans + second.spans if s.span.kind is PiiKind.MOBILE}
    assert len(mobile_tokens) == 1, "the same number written two ways has one token"
    assert mask("手机13800138000", b"another-key").spans[0].token not in mobile_tokens, "tokens depend on the key"
    assert mask_value(PiiKind.MOBILE, "138-0013-8000", KEY).token in mobile_tokens


def test_spans_do_not_overlap_and_the_text_outside_them_is_kept() -> None:
    text = "身份证110105199003076515，卡6222021234567890128，邮箱a@b.cn。"
    masked = mask(text, KEY)
    assert [s.span.kind for s in masked.spans] == [PiiKind.RESIDENT_ID, PiiKind.BANK_CARD, PiiKind.EMAIL]
    assert masked.text.startswith("身份证[RESIDENT_ID#")
    assert masked.text.endswith("]。")
    assert "，卡[BANK_CARD#" in masked.text


def test_redacting_bytes_keeps_every_other_byte_even_in_invalid_utf8() -> None:
    original = "手机13800138000 ".encode() + b"\xff\xfe" + "监管".encode("gb18030")
    redacted = redact_bytes(original, KEY)
    assert b"13800138000" not in redacted.value
    assert redacted.value.endswith(b" \xff\xfe" + "监管".encode("gb18030"))
    assert redacted.original_ref == hashlib.sha256(original).hexdigest()
    untouched = redact_bytes(b'{"text": "no personal data"}', KEY)
    assert untouched.value == b'{"text": "no personal data"}'
    assert untouched.spans == ()
