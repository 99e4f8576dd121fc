"""Pure personal-data detection and masking (no I/O, no clock).

Finds mainland resident ID numbers (MOD 11-2 check digit; ID-shaped numbers that fail it are
masked too, with lower confidence), mobile numbers (+86, spaces, dashes, full-width digits),
bank card numbers (16-19 digits passing Luhn, grouped or not), e-mail addresses, and names where
the context shows one (我叫…, 本人…, 姓名：…, My name is…, a letter's signature).

Each span is replaced by ``[KIND#token]``; the token is a keyed hash (HMAC-SHA256) of the kind and
the normalised value, so the same ID number always gives the same token and the token reveals
nothing without the key. Amounts, dates, order and transaction references, and the bank's and
regulators' hotline numbers are left alone.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import dataclass

from schemas.values import PiiKind

# Full-width digits and signs become ASCII for matching; one character maps to one, so offsets hold.
_HALF_WIDTH = str.maketrans(
    "０１２３４５６７８９＋－　（）：＠．",
    "0123456789+- ():@.",
)

_FULL_WIDTH = re.compile("[０-９＋－　（）：＠．]")
# Every ID, card and mobile number has three digits in a row: texts without them skip those patterns.
_THREE_DIGITS = re.compile(r"\d\d\d")
# Words every English name cue contains: texts without them skip the (slow) English name pattern.
_EN_NAME_GATE = re.compile(r"ame|his is|incerely|egards|ours ")
_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_ID_CHECK = "10X98765432"

RESIDENT_ID = re.compile(
    r"(?<![0-9A-Za-z])[1-9]\d{5}(?:18|19|20)\d{2}(?:0[1-9]|1[0-2])(?:0[1-9]|[12]\d|3[01])\d{3}[\dXx](?![0-9A-Za-z])"
)
CARD = re.compile(r"(?<![\d-])\d(?:[ -]?\d){15,18}(?![\d-])")
MOBILE = re.compile(r"(?<![\d+])(?:(?:\+|00)?86[ -]?)?1[3-9]\d(?:[ -]?\d{4}){2}(?!\d)")
EMAIL = re.compile(r"(?<![A-Za-z0-9._%+-])[A-Za-z0-9][A-Za-z0-9._%+-]*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")

# Words right before a number that make it a reference, not personal data.
_REFERENCE_CUES = re.compile(
    r"(订单|流水|交易|单号|编号|合同|凭证|工单|受理|案件|参考|序列|批次|reference|ref|order|transaction|txn|ticket|case)"
    r"\s*(号|码|no\.?|number|id|#)?\s*[:：#]?\s*$",
    re.IGNORECASE,
)

# Common surnames (single and double); a Chinese name is a surname and one or two more characters.
_DOUBLE_SURNAMES = (
    "欧阳",
    "司马",
    "上官",
    "诸葛",
    "东方",
    "皇甫",
    "尉迟",
    "公孙",
    "慕容",
    "令狐",
    "司徒",
    "夏侯",
    "歐陽",
)
_SURNAMES = set(
    "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程苏魏吕丁任沈姚卢姜崔钟谭陆汪范金石廖贾"
    "夏韦付方白邹孟熊秦邱江尹薛闫段雷侯龙史陶黎贺顾毛郝龚邵万钱严覃武戴莫孔向汤常温康施文牛樊葛邢安齐易乔伍庞颜倪庄聂章鲁岳翟殷詹申"
    "欧耿关兰焦俞左柳甘祝包宁尚符舒阮柯纪梅童凌毕单季裴霍涂成苗谷盛曲翁冉骆蓝路游辛靳管柴蒙鲍华喻祁蒲房滕屈饶解牟艾尤阳时穆农司卓古吉"
    "缪简车项连芦麦褚娄窦戚岑景党宫费卜冷晏席卫米柏宗瞿桂全佟应臧闵苟邬边卞姬师和仇栾隋商刁沙荣巫寇桑郎甄丛仲虞敖巩明佘池查麻苑迟邝"
    "張劉陳楊黃趙吳許鄭謝韓馮鄧蕭葉蘇呂盧鍾譚陸賈韋鄒龔錢嚴戴顏莊聶魯閻"
)
# Characters that end a name (particles, verbs, punctuation): "我叫王强，" stops at the comma.
_NOT_IN_NAME = set(
    "的了是在有和与就也都很不要我你他她们这那个说想，。！？、；：,.!?;:（）()【】[]\"'“”‘’ \n\t"
    "因于从向对把被让给去到今昨已问找申办欠还借贷卡现刚最近又再才打来电"
)
_HONORIFICS = ("先生", "女士", "小姐", "老师", "经理", "师傅", "阿姨", "大哥", "大姐", "同学", "總", "总")
_CN_NAME_CUES = re.compile(
    r"(我叫|我的名字是|我名字叫|本人(?!在|已|于|是|的|对|因|想|要|今|昨|一)|姓名[:：]?\s*|户名[:：]?\s*|持卡人[:：]?\s*|此致\s*敬礼[\s,，]*)"
)
_CN_I_AM = re.compile(r"(我是|我係|我系)")
_EN_NAME = re.compile(
    r"(?:[Mm]y name is|[Mm]y name's|[Tt]his is|[Ss]incerely|[Rr]egards|[Yy]ours faithfully|[Yy]ours truly)[,:]?\s+"
    r"((?:Mr\.?|Mrs\.?|Ms\.?|Dr\.?)\s+)?([A-Z][a-z]+(?:[ -][A-Z][a-z]+){0,2})"
)
_EN_NOT_NAMES = {"The", "This", "Your", "Bank", "Customer", "Service", "Team", "Sir", "Madam", "Regarding"}


@dataclass(frozen=True)
class PiiSpan:
    kind: PiiKind
    start: int
    end: int
    value: str
    confidence: float

    def normalised(self) -> str:
        """What the token is computed from: the same number however it was written."""
        text = self.value.translate(_HALF_WIDTH)
        if self.kind is PiiKind.MOBILE:
            digits = re.sub(r"\D", "", text)
            return digits[-11:]
        if self.kind in (PiiKind.BANK_CARD,):
            return re.sub(r"\D", "", text)
        if self.kind is PiiKind.RESIDENT_ID:
            return text.upper()
        if self.kind is PiiKind.EMAIL:
            return text.lower()
        return text.strip()


@dataclass(frozen=True)
class MaskedSpan:
    span: PiiSpan
    token: str

    @property
    def placeholder(self) -> str:
        return f"[{self.span.kind.value.upper()}#{self.token}]"


@dataclass(frozen=True)
class MaskedText:
    text: str
    spans: tuple[MaskedSpan, ...]


def resident_id_check_digit_ok(value: str) -> bool:
    body, check = value[:17], value[17].upper()
    return _ID_CHECK[sum(int(d) * w for d, w in zip(body, _ID_WEIGHTS, strict=True)) % 11] == check


def luhn_ok(digits: str) -> bool:
    total = 0
    for index, char in enumerate(reversed(digits)):
        value = int(char)
        if index % 2:
            value = value * 2 - 9 if value > 4 else value * 2
        total += value
    return total % 10 == 0


def _is_reference(text: str, start: int) -> bool:
    return bool(_REFERENCE_CUES.search(text[max(0, start - 16) : start]))


def _chinese_name_after(text: str, position: int, *, must_end: bool = False) -> tuple[int, int] | None:
    """A surname and one or two given-name characters at ``position``; None when there is none.

    ``must_end``: the name must be followed by punctuation or the end (for the ambiguous 我是…).
    """
    rest = text[position : position + 4]
    surname_length = 2 if rest[:2] in _DOUBLE_SURNAMES else 1 if rest[:1] in _SURNAMES else 0
    if not surname_length:
        return None
    given_start = position + surname_length
    if text.startswith(_HONORIFICS, given_start):
        return None  # 王先生: a surname alone identifies nobody
    end = given_start
    while end < min(given_start + 2, len(text)) and "\u4e00" <= text[end] <= "\u9fff" and text[end] not in _NOT_IN_NAME:
        end += 1
    if end == given_start:
        return None
    if must_end and end < len(text) and "\u4e00" <= text[end] <= "\u9fff":
        return None
    return position, end


def find_pii(text: str) -> list[PiiSpan]:
    """Every personal-data span, without overlaps, in text order."""
    plain = text.translate(_HALF_WIDTH) if _FULL_WIDTH.search(text) else text
    found: list[PiiSpan] = []
    taken = [False] * len(text)

    def add(kind: PiiKind, start: int, end: int, confidence: float) -> None:
        if any(taken[start:end]):
            return
        for i in range(start, end):
            taken[i] = True
        found.append(PiiSpan(kind, start, end, text[start:end], confidence))

    has_digits = _THREE_DIGITS.search(plain) is not None
    for match in RESIDENT_ID.finditer(plain) if has_digits else ():
        if not _is_reference(plain, match.start()):
            add(PiiKind.RESIDENT_ID, match.start(), match.end(), 0.99 if resident_id_check_digit_ok(match[0]) else 0.6)
    for match in EMAIL.finditer(plain) if "@" in plain else ():
        add(PiiKind.EMAIL, match.start(), match.end(), 0.99)
    for match in CARD.finditer(plain) if has_digits else ():
        digits = re.sub(r"\D", "", match[0])
        if 16 <= len(digits) <= 19 and luhn_ok(digits) and not _is_reference(plain, match.start()):
            add(PiiKind.BANK_CARD, match.start(), match.end(), 0.95)
    for match in MOBILE.finditer(plain) if has_digits else ():
        if not _is_reference(plain, match.start()):
            add(PiiKind.MOBILE, match.start(), match.end(), 0.95)
    for match in _CN_NAME_CUES.finditer(plain):
        span = _chinese_name_after(plain, match.end())
        if span is not None:
            add(PiiKind.NAME, span[0], span[1], 0.7)
    for match in _CN_I_AM.finditer(plain):
        span = _chinese_name_after(plain, match.end(), must_end=True)
        if span is not None:
            add(PiiKind.NAME, span[0], span[1], 0.6)
    for match in _EN_NAME.finditer(plain) if _EN_NAME_GATE.search(plain) else ():
        name = match.group(2)
        if name.split()[0] not in _EN_NOT_NAMES:
            add(PiiKind.NAME, match.start(2), match.end(2), 0.7)
    found.sort(key=lambda span: span.start)
    return found


def token_for(kind: PiiKind, normalised_value: str, key: bytes) -> str:
    """A stable, keyed token: 16 hex characters (64 bits) of HMAC-SHA256."""
    digest = hmac.new(key, f"{kind.value}:{normalised_value}".encode(), hashlib.sha256).hexdigest()
    return digest[:16]


def mask(text: str, key: bytes) -> MaskedText:
    """Replace every personal-data span by ``[KIND#token]``."""
    spans = find_pii(text)
    masked = [MaskedSpan(span, token_for(span.kind, span.normalised(), key)) for span in spans]
    pieces: list[str] = []
    cursor = 0
    for item in masked:
        pieces.append(text[cursor : item.span.start])
        pieces.append(item.placeholder)
        cursor = item.span.end
    pieces.append(text[cursor:])
    return MaskedText("".join(pieces), tuple(masked))


def mask_value(kind: PiiKind, value: str, key: bytes) -> MaskedSpan:
    """A whole field that is personal data by definition (a caller number, a sender's e-mail)."""
    span = PiiSpan(kind, 0, len(value), value, 1.0)
    return MaskedSpan(span, token_for(kind, span.normalised(), key))


@dataclass(frozen=True)
class RedactedBytes:
    value: bytes
    """The record with personal data masked; every other byte unchanged."""
    spans: tuple[MaskedSpan, ...]
    original_ref: str
    """SHA-256 of the original bytes: where the vault keeps them."""


def redact_bytes(value: bytes, key: bytes) -> RedactedBytes:
    """Mask personal data inside any bytes (even invalid UTF-8: other bytes survive exactly)."""
    text = value.decode("utf-8", errors="surrogateescape")
    masked = mask(text, key)
    redacted = masked.text.encode("utf-8", errors="surrogateescape") if masked.spans else value
    return RedactedBytes(redacted, masked.spans, hashlib.sha256(value).hexdigest())
