"""Pure generation of raw channel messages: (random source, time, sequence) -> bytes to publish.

Texts are written the way customers write: simplified and traditional Chinese, some Cantonese,
some English; hotline transcripts, app chats and forms, social posts with reach figures, branch
notes, letters and e-mails, regulator referrals. Customer numbers and phone numbers are made up.

With a ``Memory`` the traffic also has what routing must untangle: the same customer coming back
through another channel about the same problem (a hotline call in the morning, a Weibo post in the
afternoon), later reach figures of a social post already seen (new reposts, sometimes going viral),
and anonymous posts.
"""

from __future__ import annotations

import json
import random
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, Literal

from schemas.channels import Channel, Regulator, SocialPlatform

# Each text with its theme: what a customer who comes back through another channel talks about again.
THEMED_TEXTS: dict[str, list[str]] = {
    "lending": [
        "我上个月突然生病住院，这个月的贷款实在还不上了，能不能申请延期还款？",
        "因为疫情后生意不好，店里现金流紧张，想把经营贷的期限延长一年，重新安排分期。",
        "贷款审批已经等了三个星期还没结果，到底还要多久？再不批我就去12378投诉。",
        "催收人员一天打十几个电话给我家人，还说要上门，这合法吗？",
        "你们的罚息和手续费算得不对，我提前还款还被收了违约金，请解释。",
        "我失业了，信用卡欠款五万多，愿意还但每个月最多只能还一千，能做个性化分期吗？",
        "最近压力太大了，欠的钱还不上，真的不想活了。",
        "我這個月失業了，房貸還不上，可以申請延期嗎？",
        "I lost my job last month and cannot make my loan repayment. Can we agree a payment holiday?",
        "I have been waiting two weeks for my mortgage approval. This is unacceptable.",
    ],
    "wealth": [
        "我买的理财产品亏了百分之八，当初客户经理说是稳健型，我要投诉误导销售！",
        "理財產品虧損嚴重，當初銷售時沒有說明風險，我要求退款。",
        "個客戶經理講嘅同合約唔一樣，我要投訴。",
    ],
    "cards": [
        "信用卡被盗刷了两笔，一共3999元，我人在北京，卡一直在身上，请马上冻结。",
        "APP转账一直失败，显示系统繁忙，工资发不出去了，急！",
        "信用卡帳單多收了年費，請處理並退還。",
        "我張卡俾人盜用咗，你哋快啲幫我冇咗佢！",
        "Your app charged me twice for the same transfer. Please refund the duplicate fee.",
        "Someone used my card overseas, I did not authorise these payments. Please block it now.",
    ],
    "privacy": ["为什么我的个人信息被第三方知道了？天天接到推销贷款的电话。"],
    "service": [
        "请问怎么修改绑定的手机号？",
        "谢谢客服小王耐心解释，问题已经解决了，服务很好。",
        "联系了三次都没人回复，我已经准备找律师起诉你们银行了。",
    ],
}
_EVERY_TEXT = [text for texts in THEMED_TEXTS.values() for text in texts]
TEXTS_ZH_HANT = [
    "我這個月失業了，房貸還不上，可以申請延期嗎？",
    "理財產品虧損嚴重，當初銷售時沒有說明風險，我要求退款。",
    "信用卡帳單多收了年費，請處理並退還。",
]
TEXTS_YUE = ["我張卡俾人盜用咗，你哋快啲幫我冇咗佢！", "個客戶經理講嘅同合約唔一樣，我要投訴。"]
TEXTS_EN = [text for text in _EVERY_TEXT if text.isascii()]
TEXTS_ZH_HANS = [text for text in _EVERY_TEXT if text not in {*TEXTS_ZH_HANT, *TEXTS_YUE, *TEXTS_EN}]
ALL_TEXTS = TEXTS_ZH_HANS * 3 + TEXTS_ZH_HANT + TEXTS_YUE + TEXTS_EN  # simplified Chinese is most of the traffic
THEME_OF = {text: theme for theme, texts in THEMED_TEXTS.items() for text in texts}

IVR_PATHS = [
    ["main", "loans", "repayment"],
    ["main", "cards", "lost_or_stolen"],
    ["main", "wealth"],
    ["main", "complaints"],
    ["main", "agent"],
]
BRANCHES = ["BJ-CHY-012", "SH-PD-003", "GZ-TH-021", "SZ-NS-007", "CD-JJ-002"]


class Flaw(StrEnum):
    """How a malformed message is broken; each maps to one rejection reason at intake."""

    INVALID_JSON = "invalid_json"
    NOT_AN_OBJECT = "not_an_object"
    MISSING_FIELD = "schema_violation_missing"
    WRONG_TYPE = "schema_violation_type"
    EMPTY_TEXT = "empty_text"
    UNKNOWN_CHANNEL = "unknown_channel"
    INVALID_ENCODING = "invalid_encoding"
    TOO_LARGE = "too_large"


MessageKind = Literal["new", "follow_up", "post_update"]


@dataclass(frozen=True)
class SimulatedMessage:
    channel: Channel
    key: bytes | None
    value: bytes
    message_id: str
    flaw: Flaw | None = None
    kind: MessageKind = "new"


def _customer_id(rng: random.Random) -> str:
    return f"C{rng.randrange(10_000_000, 99_999_999)}"


def _mobile(rng: random.Random) -> str:
    return f"+86 1{rng.choice('3456789')}{rng.randrange(0, 10)} {rng.randrange(1000, 9999)} {rng.randrange(1000, 9999)}"


def raw_body(
    channel: Channel,
    rng: random.Random,
    now: datetime,
    message_id: str,
    *,
    text: str | None = None,
    customer_id: str | None = None,
) -> dict[str, Any]:
    """A valid raw message of ``channel``; ``customer_id`` makes it come from that customer (even a post)."""
    text = text if text is not None else rng.choice(ALL_TEXTS)
    sent_at = (now - timedelta(seconds=rng.randrange(0, 600))).isoformat()
    common: dict[str, Any] = {"message_id": message_id, "sent_at": sent_at}
    if channel is Channel.HOTLINE:
        return {
            **common,
            "customer_id": customer_id or _customer_id(rng),
            "caller_number": _mobile(rng),
            "ivr_path": rng.choice(IVR_PATHS),
            "duration_seconds": rng.randrange(30, 1800),
            "transcript": f"客户：{text} 坐席：好的，我帮您登记。",
        }
    if channel is Channel.APP:
        kind = rng.choice(["chat", "form"])
        body = {
            **common,
            "customer_id": customer_id or _customer_id(rng),
            "kind": kind,
            "platform": rng.choice(["ios", "android", "web", "harmonyos"]),
            "app_version": "8.4.1",
            "session_id": f"S{rng.randrange(10**9)}",
            "text": text,
        }
        if kind == "form":
            body["form_subject"] = rng.choice(["还款", "投诉", "咨询", "Complaint"])
        return body
    if channel is Channel.SOCIAL:
        followers = int(rng.paretovariate(1.2) * 200)
        if customer_id:
            common["customer_id"] = customer_id  # a post the bank matched to a customer
        return {
            **common,
            "platform": rng.choice(list(SocialPlatform)).value,
            "post_id": f"P{rng.randrange(10**12)}",
            "author_handle": f"user_{rng.randrange(10**6)}",
            "url": f"https://social.example/post/{message_id}",
            "posted_at": sent_at,
            "text": text,
            "reach": {
                "followers": followers,
                # Minutes after posting most posts have a handful of reposts; a big account gets more.
                "reposts": rng.randrange(0, followers // 200 + 2),
                "comments": rng.randrange(0, followers // 100 + 5),
                "likes": rng.randrange(0, followers // 20 + 10),
            },
        }
    if channel is Channel.BRANCH:
        return {
            **common,
            "customer_id": customer_id or _customer_id(rng),
            "branch_code": rng.choice(BRANCHES),
            "staff_id": f"E{rng.randrange(10000, 99999)}",
            "text": f"客户到网点反映：{text}",
        }
    if channel is Channel.LETTER:
        kind = rng.choice(["letter", "email"])
        return {
            **common,
            "customer_id": customer_id or (_customer_id(rng) if rng.random() < 0.7 else None),
            "kind": kind,
            "sender_email": f"customer{rng.randrange(10**5)}@mail.example" if kind == "email" else None,
            "subject": "关于我的贷款问题" if rng.random() < 0.5 else "Complaint",
            "body": text,
        }
    return {
        **common,
        "customer_id": customer_id or _customer_id(rng),
        "regulator": rng.choice(list(Regulator)).value,
        "source_reference": f"12378-{now:%Y%m%d}-{rng.randrange(10**6):06d}",
        "response_due_by": (now + timedelta(days=15)).isoformat(),
        "text": f"监管转办：{text}",
    }


def _flawed(flaw: Flaw, body: dict[str, Any], text_field: str) -> bytes:
    if flaw is Flaw.INVALID_JSON:
        return json.dumps(body, ensure_ascii=False)[:-7].encode()
    if flaw is Flaw.NOT_AN_OBJECT:
        return json.dumps([body], ensure_ascii=False).encode()
    if flaw is Flaw.MISSING_FIELD:
        body.pop("sent_at")
    elif flaw is Flaw.WRONG_TYPE:
        body["sent_at"] = "yesterday afternoon"
    elif flaw is Flaw.EMPTY_TEXT:
        body[text_field] = "   "
    elif flaw is Flaw.UNKNOWN_CHANNEL:
        body["channel"] = "fax"
    elif flaw is Flaw.TOO_LARGE:
        body[text_field] = "投诉" * 200_000  # 1.2 MB: over the default intake limit
    elif flaw is Flaw.INVALID_ENCODING:
        body[text_field] = "我的还款问题"  # encoded as GB18030 below: not UTF-8
        return json.dumps(body, ensure_ascii=False).encode("gb18030")
    return json.dumps(body, ensure_ascii=False).encode()


TEXT_FIELD = {Channel.HOTLINE: "transcript", Channel.LETTER: "body"}
# Oversized bodies are rare: each costs a megabyte through the broker twice.
FLAW_WEIGHTS = {flaw: (1 if flaw is Flaw.TOO_LARGE else 10) for flaw in Flaw}


@dataclass(frozen=True)
class Story:
    """A customer who wrote about a theme: they may come back through another channel."""

    customer_id: str
    theme: str


@dataclass
class Memory:
    """What the simulated channels said recently, so later messages can refer to it.

    ``follow_up_share`` of messages come from a recent customer, about the same theme, through
    whatever channel was drawn (routing should merge them into the customer's case);
    ``post_update_share`` of social messages are new reach figures of a recent post (routing should
    update that case's virality, not open a case); ``viral_share`` of those updates explode.
    """

    follow_up_share: float = 0.08
    post_update_share: float = 0.3
    viral_share: float = 0.05
    stories: deque[Story] = field(default_factory=lambda: deque(maxlen=500))
    posts: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=200))

    def remember(self, channel: Channel, body: dict[str, Any], text: str) -> None:
        customer_id = body.get("customer_id")
        if customer_id and text in THEME_OF:
            self.stories.append(Story(customer_id, THEME_OF[text]))
        if channel is Channel.SOCIAL:
            self.posts.append(body)


def post_update(post: dict[str, Any], rng: random.Random, now: datetime, message_id: str, viral_share: float) -> None:
    """New reach figures of a post already published (in place): same post, author and text, a new message id."""
    reach = dict(post["reach"])
    followers = reach["followers"]
    if rng.random() < viral_share:  # it spreads: thousands of reposts within the hour
        reposts = int(followers * rng.uniform(0.5, 4)) + rng.randrange(500, 5000)
    else:
        reposts = rng.randrange(0, followers // 100 + 3)
    reach["reposts"] += reposts
    reach["comments"] += reposts // 3 + rng.randrange(0, 20)
    reach["likes"] += reposts * 2 + rng.randrange(0, 100)
    reach["followers"] = followers + rng.randrange(0, max(2, reposts // 10))
    post.update(message_id=message_id, sent_at=now.isoformat(), reach=reach)


def generate(
    channel: Channel,
    rng: random.Random,
    now: datetime,
    sequence: int,
    *,
    malformed_share: float,
    run_id: str = "r0",
    memory: Memory | None = None,
) -> SimulatedMessage:
    """One message; ``run_id`` keeps message ids of separate runs apart (a repeated id is a retry).

    With ``memory``, some messages are follow-ups of recent customers or updates of recent posts.
    """
    message_id = f"{channel.value[:3].upper()}-{now:%Y%m%d}-{run_id}-{sequence:08d}-{rng.randrange(10**6):06d}"
    kind: MessageKind = "new"
    if memory is not None and channel is Channel.SOCIAL and memory.posts and rng.random() < memory.post_update_share:
        kind = "post_update"
        post = rng.choice(memory.posts)
        post_update(post, rng, now, message_id, memory.viral_share)
        body, text = dict(post), post["text"]
    elif memory is not None and memory.stories and rng.random() < memory.follow_up_share:
        kind = "follow_up"
        story = rng.choice(memory.stories)
        text = rng.choice(THEMED_TEXTS[story.theme])
        body = raw_body(channel, rng, now, message_id, text=text, customer_id=story.customer_id)
    else:
        text = rng.choice(ALL_TEXTS)
        body = raw_body(channel, rng, now, message_id, text=text)
    if rng.random() < malformed_share and kind == "new":
        flaw = rng.choices(list(FLAW_WEIGHTS), weights=list(FLAW_WEIGHTS.values()))[0]
        value = _flawed(flaw, body, TEXT_FIELD.get(channel, "text"))
        return SimulatedMessage(channel, None, value, message_id, flaw)
    if memory is not None and kind == "new":
        memory.remember(channel, body, text)
    key = body.get("customer_id")
    return SimulatedMessage(
        channel, key.encode() if key else None, json.dumps(body, ensure_ascii=False).encode(), message_id, kind=kind
    )
