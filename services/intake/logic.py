"""Pure intake rules: validate one raw message of a channel and normalise it, or say why not."""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from schemas.channels import DETAILS_MODELS, RAW_MODELS, Channel, RawFeedback
from schemas.feedback import FeedbackReceived, FeedbackReceivedEvent, Language, PiiToken, RejectReason
from schemas.values import PiiKind
from services.privacy.logic import mask, mask_value
from services.runtime.errors import describe_validation_error

SOURCE = "/parley/intake"
# Event ids derive from (channel, channel message id): the same message always has the same id.
FEEDBACK_ID_NAMESPACE = uuid.UUID("5b0e7c1e-2f0a-4c8e-9d61-7a3c1f0e9b21")

_CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
_LATIN = re.compile(r"[A-Za-z]")
# Particles that mark written Cantonese rather than Mandarin. 係 is left out: it is also the
# everyday traditional character of 關係.
_CANTONESE = set("唔嘅咗冇佢啲喺嚟乜嘢咁")
# Characters written differently in the two scripts (a small, frequent sample is enough to decide).
_TRADITIONAL_ONLY = set("這個們國說還為嗎點錢貸銀銷對時間題請無會來電過後發現經帳戶卡款費處理")
_SIMPLIFIED_ONLY = set("这个们国说还为吗点钱贷银销对时间题请无会来电过后发现经账户处理")


_CHANNEL_NAMES = frozenset(channel.value for channel in Channel)


@dataclass(frozen=True)
class Accepted:
    event: FeedbackReceivedEvent
    key: str
    dedupe_key: str
    originals: tuple[tuple[str, str, str], ...] = ()
    """(token, kind, original value) for the vault; never published."""


@dataclass(frozen=True)
class Rejected:
    reason: RejectReason
    detail: str


def feedback_id(channel: Channel, message_id: str) -> uuid.UUID:
    return uuid.uuid5(FEEDBACK_ID_NAMESPACE, f"{channel.value}:{message_id}")


def detect_language(text: str) -> Language:
    cjk = len(_CJK.findall(text))
    latin = len(_LATIN.findall(text))
    if cjk == 0:
        return Language.EN if latin > 0 else Language.UNDETERMINED
    if cjk * 3 < latin:  # mostly English with a few characters
        return Language.EN
    chars = set(text)
    if chars & _CANTONESE:
        return Language.YUE
    traditional = len(chars & (_TRADITIONAL_ONLY - _SIMPLIFIED_ONLY))
    simplified = len(chars & (_SIMPLIFIED_ONLY - _TRADITIONAL_ONLY))
    return Language.ZH_HANT if traditional > simplified else Language.ZH_HANS


def normalise(
    channel: Channel, value: bytes, *, received_at: datetime, max_body_bytes: int, pii_key: bytes
) -> Accepted | Rejected:
    """Turn one raw record of ``channel`` into a canonical event, or a rejection with a reason."""
    if len(value) > max_body_bytes:
        return Rejected(RejectReason.TOO_LARGE, f"{len(value)} bytes; the limit is {max_body_bytes}")
    try:
        decoded = value.decode("utf-8")
    except UnicodeDecodeError as exc:
        return Rejected(RejectReason.INVALID_ENCODING, f"not UTF-8 at byte {exc.start}")
    try:
        body = json.loads(decoded)
    except json.JSONDecodeError as exc:
        return Rejected(RejectReason.INVALID_JSON, f"{exc.msg} at line {exc.lineno} column {exc.colno}")
    if not isinstance(body, dict):
        return Rejected(RejectReason.NOT_AN_OBJECT, f"the body is a JSON {type(body).__name__}, not an object")
    body = _without_nul(body)
    declared = body.get("channel")
    if declared is not None and declared != channel.value:
        if isinstance(declared, str) and declared in _CHANNEL_NAMES:
            return Rejected(RejectReason.CHANNEL_MISMATCH, f"body says channel {declared!r} on the {channel} topic")
        return Rejected(RejectReason.UNKNOWN_CHANNEL, f"body names a channel not in {sorted(_CHANNEL_NAMES)}")
    try:
        raw = RAW_MODELS[channel].model_validate(body)
    except ValidationError as exc:
        return Rejected(RejectReason.SCHEMA_VIOLATION, describe_validation_error(exc))
    text = raw.feedback_text()
    if not text.strip():
        return Rejected(RejectReason.EMPTY_TEXT, "the message has no text")
    return _accept(channel, raw, text, received_at, pii_key)


def _without_nul(value: Any) -> Any:
    """Every string of a JSON value without U+0000: PostgreSQL text and jsonb cannot hold it, and it means
    nothing in a message. The raw record on its topic keeps the original bytes."""
    if isinstance(value, str):
        return value.replace("\x00", "") if "\x00" in value else value
    if isinstance(value, dict):
        return {_without_nul(key): _without_nul(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_without_nul(item) for item in value]
    return value


# Channel detail fields that are personal data by definition: masked whole, whatever they hold.
PERSONAL_DETAIL_FIELDS: dict[str, PiiKind] = {
    "caller_number": PiiKind.MOBILE,
    "sender_name": PiiKind.NAME,
    "sender_email": PiiKind.EMAIL,
}


def _accept(channel: Channel, raw: RawFeedback, text: str, received_at: datetime, pii_key: bytes) -> Accepted:
    masked = mask(text, pii_key)
    found = list(masked.spans)
    details_model = DETAILS_MODELS[channel]
    fields = raw.model_dump(include=set(details_model.model_fields) - {"channel"})
    for name, kind in PERSONAL_DETAIL_FIELDS.items():
        if fields.get(name):
            whole = mask_value(kind, fields[name], pii_key)
            fields[name] = whole.placeholder
            found.append(whole)
    details = details_model.model_validate({**fields, "channel": channel})
    tokens = {item.token: item for item in found}  # one entry per distinct value
    data = FeedbackReceived(
        channel=channel,
        channel_message_id=raw.message_id,
        customer_ref=raw.customer_id,
        case_id=raw.case_id,
        text=masked.text,
        language=detect_language(text),
        sent_at=raw.sent_at,
        details=details,
        pii=[PiiToken(kind=i.span.kind, token=i.token, confidence=i.span.confidence) for i in tokens.values()],
    )
    event = FeedbackReceivedEvent(
        id=feedback_id(channel, raw.message_id),
        source=SOURCE,
        time=received_at,
        subject=str(raw.case_id) if raw.case_id else None,
        data=data,
    )
    key = raw.customer_id or f"{channel.value}:{raw.message_id}"
    return Accepted(
        event=event,
        key=key,
        dedupe_key=str(event.id),  # derived from channel and message id; storable whatever the id holds
        originals=tuple((i.token, i.span.kind.value, i.span.value) for i in tokens.values()),
    )
