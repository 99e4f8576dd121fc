"""Text as the rules and the classifier read it: simplified Chinese, Mandarin words, lower case.

The original text is kept for display; only matching uses this form. Traditional characters
become simplified (OpenCC), common written-Cantonese words become their Mandarin equivalents, and
full-width letters and digits become ASCII.
"""

from __future__ import annotations

import re
import unicodedata
from functools import cache

import opencc

# Written Cantonese → Mandarin, longest first so multi-character words win.
_CANTONESE = {
    "乜嘢": "什么",
    "咩": "什么",
    "点解": "为什么",
    "边度": "哪里",
    "而家": "现在",
    "啱啱": "刚刚",
    "头先": "刚才",
    "唔该": "请",
    "唔": "不",
    "系": "是",
    "冇": "没有",
    "佢哋": "他们",
    "佢": "他",
    "咗": "了",
    "啲": "些",
    "喺": "在",
    "嘅": "的",
    "俾": "给",
    "睇": "看",
    "嚟": "来",
    "搞掂": "搞定",
    "揾": "找",
    "攞": "拿",
    "嗰": "那",
    "呢个": "这个",
    "我哋": "我们",
    "你哋": "你们",
    "畀": "给",
    "咁": "这么",
    "嘢": "东西",
    "瞓": "睡",
}
_CANTONESE_PATTERN = re.compile("|".join(sorted(map(re.escape, _CANTONESE), key=len, reverse=True)))
_SPACES = re.compile(r"\s+")


@cache
def _converter() -> opencc.OpenCC:
    return opencc.OpenCC("t2s")


_CANTONESE_CHARACTERS = frozenset("".join(_CANTONESE))


def normalise(text: str) -> str:
    """The matching form of ``text`` (see the module docstring)."""
    if text.isascii():
        return _SPACES.sub(" ", text).strip().lower()
    folded = text if unicodedata.is_normalized("NFKC", text) else unicodedata.normalize("NFKC", text)
    simplified = _converter().convert(folded)
    if not _CANTONESE_CHARACTERS.isdisjoint(simplified):
        simplified = _CANTONESE_PATTERN.sub(lambda match: _CANTONESE[match.group(0)], simplified)
    return _SPACES.sub(" ", simplified).strip().lower()
