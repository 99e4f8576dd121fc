"""Account snapshots: each customer's debt and declared means, from the bank's core-banking extract (pure).

One JSON object per line::

    {"customer_ref": "C20458813", "as_of": "2026-11-20",
     "debt": {...schemas.plans.Debt...}, "income": {...schemas.plans.IncomeAndExpenditure...}}

Amounts are decimal strings, as everywhere. ``income`` may be left out. Unknown fields are errors:
a misspelt field in a bank extract must not pass silently.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Annotated

from pydantic import Field, ValidationError

from schemas.base import PublishedModel
from schemas.plans import Debt, IncomeAndExpenditure
from schemas.values import Day
from services.runtime.errors import describe_validation_error


class AccountSnapshot(PublishedModel):
    customer_ref: Annotated[str, Field(min_length=1, max_length=200)]
    as_of: Day = Field(description="The extract's date; a newer snapshot replaces an older one")
    debt: Debt
    income: IncomeAndExpenditure | None = None


@dataclass(frozen=True)
class LineError:
    line: int
    problem: str

    def describe(self) -> str:
        return f"line {self.line}: {self.problem}"


@dataclass(frozen=True)
class ParsedAccounts:
    snapshots: list[AccountSnapshot]
    errors: list[LineError]
    blank_lines: int


def parse_lines(lines: Iterable[str]) -> ParsedAccounts:
    """Every line validated; errors name the line and the field, never the values (they are personal)."""
    snapshots: list[AccountSnapshot] = []
    errors: list[LineError] = []
    blank = 0
    seen: dict[str, int] = {}
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            blank += 1
            continue
        try:
            body = json.loads(line)
        except ValueError as exc:
            errors.append(LineError(number, f"not JSON ({exc.__class__.__name__} at column {_column(exc)})"))
            continue
        if not isinstance(body, dict):
            errors.append(LineError(number, "not a JSON object"))
            continue
        try:
            snapshot = AccountSnapshot.model_validate(body)
        except ValidationError as exc:
            errors.append(LineError(number, describe_validation_error(exc)))
            continue
        if snapshot.customer_ref in seen:
            errors.append(LineError(number, f"customer_ref repeats line {seen[snapshot.customer_ref]}"))
            continue
        seen[snapshot.customer_ref] = number
        snapshots.append(snapshot)
    return ParsedAccounts(snapshots, errors, blank)


def _column(error: ValueError) -> object:
    return getattr(error, "colno", "?")
