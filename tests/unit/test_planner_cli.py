"""``parley plan FILE.json [--table]``: the shipped examples, a person's shorthand, and clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from schemas.plans import PlanProposed
from services.cli import main
from services.planner.policy import PROJECT_ROOT

EXAMPLES = sorted((PROJECT_ROOT / "services" / "planner" / "examples").glob("*.json"))


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda path: path.stem)
def test_each_example_gives_ranked_proposals_as_json(example: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plan", str(example)]) == 0
    data = json.loads(capsys.readouterr().out)
    proposed = PlanProposed.model_validate(data)
    assert proposed.proposals
    assert all(p.schedule for p in proposed.proposals)


def test_the_ill_customer_is_offered_a_holiday_and_the_small_business_a_longer_term(
    capsys: pytest.CaptureFixture[str],
) -> None:
    main(["plan", str(PROJECT_ROOT / "services/planner/examples/ill-customer.json")])
    ill = json.loads(capsys.readouterr().out)
    assert any("deferral" in [c["kind"] for c in p["components"]] for p in ill["proposals"])
    main(["plan", str(PROJECT_ROOT / "services/planner/examples/small-business.json")])
    business = json.loads(capsys.readouterr().out)
    assert any([c["kind"] for c in p["components"]] == ["term_extension"] for p in business["proposals"])


def test_table_prints_each_plan_with_its_schedule_for_a_person(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plan", str(PROJECT_ROOT / "services/planner/examples/ill-customer.json"), "--table"]) == 0
    out = capsys.readouterr().out
    assert "#1  " in out
    assert "approval: agent" in out
    assert "暂停还本付息3个月" in out
    assert "due" in out
    assert "balance" in out
    assert "Not proposed:" in out
    first_row = next(line for line in out.splitlines() if line.strip().startswith("1  2026-12-10"))
    assert "0.00" in first_row


def test_a_whole_plan_requested_event_is_read_too(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    event = PROJECT_ROOT / "schemas" / "examples" / "com.parley.plan.requested.v1.json"
    assert main(["plan", str(event)]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["request_id"] == json.loads(event.read_text())["data"]["request_id"]


def test_the_same_file_gives_the_same_plans(capsys: pytest.CaptureFixture[str]) -> None:
    example = str(EXAMPLES[0])
    main(["plan", example])
    first = capsys.readouterr().out
    main(["plan", example])
    assert capsys.readouterr().out == first


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("not json", "not JSON"),
        ("[1, 2]", "expected a JSON object"),
        ('{"debt": {"product": "personal_loan"}}', "jurisdiction: Field required"),
        (
            '{"jurisdiction": "CN", "debt": {"product": "boat", "outstanding_principal": "100.00",'
            ' "annual_rate": "0.05", "remaining_term_months": 12}}',
            "debt.product",
        ),
        (
            '{"jurisdiction": "CN", "debt": {"product": "personal_loan", "outstanding_principal": "-5.00",'
            ' "annual_rate": "0.05", "remaining_term_months": 12}}',
            "cannot plan for this request: debt.outstanding_principal: must not be negative",
        ),
        (
            '{"jurisdiction": "CN", "debt": {"product": "personal_loan", "outstanding_principal": 100,'
            ' "annual_rate": "0.05", "remaining_term_months": 12}}',
            "debt.outstanding_principal",
        ),
    ],
)
def test_a_bad_file_is_a_clear_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str, message: str
) -> None:
    path = tmp_path / "request.json"
    path.write_text(content)
    assert main(["plan", str(path)]) == 2
    error = capsys.readouterr().err
    assert f"parley plan: {path}" in error
    assert message in error


def test_a_missing_file_is_named(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plan", "/nonexistent/request.json"]) == 2
    assert "no such file: /nonexistent/request.json" in capsys.readouterr().err


def test_a_bad_policy_file_stops_the_command(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    policy = tmp_path / "plan-policy.yaml"
    policy.write_text("version: x\n")
    monkeypatch.setenv("PARLEY_PLAN_POLICY_PATH", str(policy))
    assert main(["plan", str(EXAMPLES[0])]) == 2
    assert "plan-policy.yaml" in capsys.readouterr().err
