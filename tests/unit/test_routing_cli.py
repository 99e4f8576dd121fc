"""``parley route --explain``: the same rules and logic as the processor, on a file; bad lines are named."""

from __future__ import annotations

import json
from collections import Counter
from datetime import timedelta
from pathlib import Path

import pytest

from schemas.values import Category, Priority, Queue
from services.cli import main
from services.routing.cli import explain_lines, parse_line
from services.routing.rules import PROJECT_ROOT, load_rules
from tests.unit.test_routing_samples import T0, app, social, triaged, triaged_event

RULES = load_rules(PROJECT_ROOT / "deploy" / "config" / "routing.yaml")


def lines() -> list[str]:
    return [
        triaged_event(triaged("h", customer="C1")).model_dump_json(),
        triaged_event(
            triaged(
                "w", customer="C1", details=social("P1"), category=Category.LOAN_APPROVAL, at=T0 + timedelta(hours=3)
            )
        ).model_dump_json(),
        "",
        triaged_event(
            triaged("c", customer="C9", details=app(), category=Category.CARD_PAYMENT_ACCOUNT, priority=Priority.P4)
        ).model_dump_json(),
    ]


def test_explains_each_decision_with_its_reasons() -> None:
    output, bad = explain_lines(lines(), RULES, Counter())
    text = "\n".join(output)
    assert bad == 0
    assert "line 1: feedback" in text
    assert "opens case" in text
    assert "line 2: feedback" in text
    assert "joins case" in text
    assert "(customer_token, new facts)" in text
    assert "filter: filter 'repayment-hardship' matched" in text
    assert "line 4:" in text
    assert "-> cards_payments P4" in text
    assert "3 routed: 2 new cases, 1 merged" in output[-2]


def test_a_given_backlog_shows_overflow() -> None:
    output, _ = explain_lines(lines(), RULES, Counter({Queue.CARDS_PAYMENTS: 400}))
    line = next(row for row in output if row.startswith("line 4:"))
    assert "-> ai_assistant P4" in line
    assert line.endswith("overflow")


def test_bad_lines_say_what_is_wrong() -> None:
    assert parse_line("not json").startswith("not JSON")  # type: ignore[union-attr]
    assert parse_line("[1]") == "a JSON list, not a case.triaged event (an object)"
    assert parse_line('{"type": "com.parley.feedback.received.v1"}') == (
        "type is 'com.parley.feedback.received.v1'; expected com.parley.case.triaged.v1"
    )
    broken = json.loads(lines()[0])
    broken["data"]["priority"] = "P9"
    problem = parse_line(json.dumps(broken))
    assert isinstance(problem, str)
    assert problem.startswith("not a valid com.parley.case.triaged.v1: data.priority:")
    output, bad = explain_lines([*lines(), "oops"], RULES, Counter())
    assert bad == 1
    assert "line 5: not JSON (Expecting value at column 1)" in output


def test_the_command_exits_1_on_a_bad_line_and_2_on_a_missing_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = tmp_path / "triaged.jsonl"
    good.write_text("\n".join(lines()) + "\n", encoding="utf-8")
    assert main(["route", "--explain", str(good)]) == 0
    assert "joins case" in capsys.readouterr().out
    bad = tmp_path / "bad.jsonl"
    bad.write_text(lines()[0] + "\n{}\n", encoding="utf-8")
    assert main(["route", "--explain", str(bad)]) == 1
    assert "line 2: type is missing" in capsys.readouterr().out
    assert main(["route", "--explain", str(tmp_path / "absent.jsonl")]) == 2
    assert "no such file" in capsys.readouterr().err
    assert main(["route", "--explain", str(good), "--backlog", "nowhere=3"]) == 2
    assert "--backlog takes QUEUE=N" in capsys.readouterr().err
