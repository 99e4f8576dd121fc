"""Valid raw messages for every channel, as channel systems send them."""

from __future__ import annotations

import json
from typing import Any

from schemas.channels import Channel

SENT_AT = "2026-11-22T09:15:00+08:00"


def raw_message(of_channel: Channel, message_id: str, **overrides: Any) -> dict[str, Any]:
    common: dict[str, Any] = {"message_id": message_id, "sent_at": SENT_AT, "customer_id": f"C-{message_id}"}
    bodies: dict[Channel, dict[str, Any]] = {
        Channel.HOTLINE: {
            "caller_number": "+86 138 0013 8000",
            "ivr_path": ["main", "loans"],
            "duration_seconds": 340,
            "transcript": "客户：我生病住院了，这个月贷款还不上，想申请延期。",
        },
        Channel.APP: {
            "kind": "chat",
            "platform": "android",
            "app_version": "8.4.1",
            "session_id": "S1",
            "text": "APP转账一直失败，工资发不出去了",
        },
        Channel.SOCIAL: {
            "customer_id": None,
            "platform": "weibo",
            "post_id": f"P-{message_id}",
            "author_handle": "angry_user",
            "posted_at": SENT_AT,
            "reach": {"followers": 120000, "reposts": 3400, "comments": 800, "likes": 9000},
            "text": "某银行理财亏了还不给解释，大家小心！",
        },
        Channel.BRANCH: {"branch_code": "SH-PD-003", "staff_id": "E12345", "text": "客户到网点反映信用卡年费多收"},
        Channel.LETTER: {
            "kind": "email",
            "sender_email": "someone@mail.example",
            "subject": "Complaint",
            "body": "I lost my job and cannot make my loan repayment this month.",
        },
        Channel.REGULATOR: {
            "regulator": "nfra_12378",
            "source_reference": "12378-20261122-000123",
            "response_due_by": "2026-12-07T00:00:00+08:00",
            "text": "監管轉辦：客戶投訴理財產品銷售誤導",
        },
    }
    return {**common, **bodies[of_channel], **overrides}


def encode(body: dict[str, Any]) -> bytes:
    return json.dumps(body, ensure_ascii=False).encode()
