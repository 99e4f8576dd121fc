"""Account snapshot files (the core-banking extract): every line validated, errors that name line and field only."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

from services.tracker.accounts import parse_lines
from tests.unit.test_tracker_support import account


def good_line(customer_ref: str = "C20458813", **changes: Any) -> str:
    body = json.loads(account(customer_ref).model_dump_json())
    body.update(changes)
    return json.dumps(body)


def test_valid_lines_become_snapshots() -> None:
    parsed = parse_lines([good_line("C1"), "", "   ", good_line("C2")])
    assert parsed.errors == []
    assert parsed.blank_lines == 2
    assert [s.customer_ref for s in parsed.snapshots] == ["C1", "C2"]
    assert parsed.snapshots[0].debt.outstanding_principal.amount == Decimal("10200.00")
    assert parsed.snapshots[0] == account("C1")


def test_income_may_be_left_out() -> None:
    body = json.loads(good_line())
    del body["income"]
    parsed = parse_lines([json.dumps(body)])
    assert parsed.errors == []
    assert parsed.snapshots[0].income is None


def test_each_bad_line_is_named_with_what_is_wrong_and_never_its_values() -> None:
    money_as_number = json.loads(good_line("C3"))
    money_as_number["debt"]["arrears"]["amount"] = 3450.0
    missing_debt = json.loads(good_line("C4"))
    del missing_debt["debt"]
    lines = [
        good_line("C1"),
        '{"customer_ref": "C2", ',
        "[1, 2]",
        json.dumps(money_as_number),
        json.dumps(missing_debt),
        good_line("C5", salary="secret-9999"),
        good_line("C1"),
    ]
    parsed = parse_lines(lines)
    assert [s.customer_ref for s in parsed.snapshots] == ["C1"]
    described = [error.describe() for error in parsed.errors]
    assert described[0].startswith("line 2: not JSON (JSONDecodeError at column")
    assert described[1] == "line 3: not a JSON object"
    assert described[2].startswith("line 4: debt.arrears.amount: ")
    assert described[3] == "line 5: debt: Field required"
    assert described[4].startswith("line 6: salary: Extra inputs are not permitted")
    assert described[5] == "line 7: customer_ref repeats line 1"
    assert not any("3450" in text or "secret-9999" in text for text in described)
