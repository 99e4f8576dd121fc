"""Check a file of events against one event type, line by line, in words a channel developer reads.

Used by ``parley schemas validate --type TYPE FILE.jsonl``. Each problem names the line, the field
path, what was expected and what was found.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError
from pydantic_core import ErrorDetails

from schemas.catalog import EVENTS_BY_NAME, TYPE_NAMESPACE, EventSpec

_GOT_LIMIT = 60


@dataclass(frozen=True)
class Problem:
    line: int
    path: str
    expected: str
    got: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.path}: {self.expected}; got {self.got}"


def find_event_type(name: str) -> EventSpec | None:
    """Exact type, or a short form: ``raw.hotline``, ``tracking.opened``, ``com.parley.sla.warning``."""
    for candidate in (name, f"{name}.v1", f"{TYPE_NAMESPACE}{name}", f"{TYPE_NAMESPACE}{name}.v1"):
        if candidate in EVENTS_BY_NAME:
            return EVENTS_BY_NAME[candidate]
    return None


def _path(location: Iterable[int | str]) -> str:
    text = ""
    for part in location:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "(the whole event)"


def _shown(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= _GOT_LIMIT else text[: _GOT_LIMIT - 1] + "…"


_EXPECTATIONS = {
    "missing": "required field is missing",
    "extra_forbidden": "not a field of this event type (its schema is closed)",
    "string_type": "expected text (a JSON string)",
    "int_type": "expected a whole number",
    "int_parsing": "expected a whole number",
    "int_from_float": "expected a whole number",
    "float_type": "expected a number",
    "float_parsing": "expected a number",
    "bool_type": "expected true or false",
    "bool_parsing": "expected true or false",
    "uuid_type": "expected a UUID such as 3f2c1a9e-8b7d-4e6f-9a1b-2c3d4e5f6a7b",
    "uuid_parsing": "expected a UUID such as 3f2c1a9e-8b7d-4e6f-9a1b-2c3d4e5f6a7b",
    "datetime_type": "expected an ISO 8601 time with a UTC offset, such as 2026-11-22T09:15:00+08:00",
    "datetime_parsing": "expected an ISO 8601 time with a UTC offset, such as 2026-11-22T09:15:00+08:00",
    "datetime_from_date_parsing": "expected an ISO 8601 time with a UTC offset, such as 2026-11-22T09:15:00+08:00",
    "timezone_aware": "expected a time with a UTC offset (+08:00 or Z); this one has none",
    "date_type": "expected a date such as 2026-12-15",
    "date_parsing": "expected a date such as 2026-12-15",
    "date_from_datetime_inexact": "expected a date such as 2026-12-15, without a time",
    "model_type": "expected a JSON object",
    "dict_type": "expected a JSON object",
    "list_type": "expected a JSON array",
    "union_tag_invalid": "expected one of the known kinds",
    "union_tag_not_found": "expected the field that says which kind this is",
}


def _expected(error: ErrorDetails) -> str:
    kind = error["type"]
    context: dict[str, Any] = dict(error.get("ctx") or {})
    if kind in _EXPECTATIONS:
        return _EXPECTATIONS[kind]
    if kind in ("enum", "literal_error"):
        return f"expected {context.get('expected', 'one of the allowed values')}"
    bounds = {
        "greater_than_equal": ("≥", "ge"),
        "greater_than": (">", "gt"),
        "less_than_equal": ("≤", "le"),
        "less_than": ("<", "lt"),
    }
    if kind in bounds:
        symbol, key = bounds[kind]
        return f"expected a value {symbol} {context.get(key)}"
    if kind == "string_too_long":
        return f"expected at most {context.get('max_length')} characters"
    if kind == "string_too_short":
        return f"expected at least {context.get('min_length')} character(s)"
    if kind == "too_short":
        return f"expected at least {context.get('min_length')} item(s)"
    if kind == "too_long":
        return f"expected at most {context.get('max_length')} item(s)"
    if kind == "string_pattern_mismatch":
        return f"expected text matching {context.get('pattern')}"
    message = str(error["msg"]).removeprefix("Value error, ")
    return message.replace("Input should be", "expected", 1)


def problems_in(spec: EventSpec, text: str, line: int) -> list[Problem]:
    """What is wrong with one line (empty when it is a valid event of ``spec``)."""
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        shown = _shown(text.rstrip("\r\n"))
        return [Problem(line, "(the whole line)", f"expected JSON ({exc.msg} at column {exc.colno})", shown)]
    try:
        spec.model.model_validate(document)
    except ValidationError as exc:
        return [
            Problem(
                line,
                _path(error["loc"]),
                _expected(error),
                "nothing" if error["type"] == "missing" else _shown(error.get("input")),
            )
            for error in exc.errors(include_url=False)
        ]
    return []


@dataclass
class Report:
    lines: int = 0
    valid: int = 0
    problems: list[Problem] | None = None

    @property
    def invalid(self) -> int:
        return self.lines - self.valid


def validate_lines(spec: EventSpec, lines: Iterable[str]) -> Report:
    report = Report(problems=[])
    assert report.problems is not None
    for number, text in enumerate(lines, start=1):
        if not text.strip():
            continue
        report.lines += 1
        found = problems_in(spec, text, number)
        if found:
            report.problems.extend(found)
        else:
            report.valid += 1
    return report
