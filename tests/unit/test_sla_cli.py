"""``parley sla deadline`` on the shipped presets, and the lines ``parley alerts`` prints."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from services.cli import main
from services.sla.cli import COLOURS, RESET, alert_line


def test_deadline_as_json_with_a_pause(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(
        [
            "sla",
            "deadline",
            "--policy",
            "cn-operations",
            "--clock",
            "first_contact",
            "--start",
            "2026-11-23T09:00:00+08:00",
            "--paused",
            "2026-11-23T10:00:00+08:00/2026-11-23T14:00:00+08:00",
            "--json",
        ]
    )
    assert code == 0
    result = json.loads(capsys.readouterr().out)
    assert result["deadline"] == "2026-11-24T12:00:00+08:00"  # 8 working hours, 3 of them paused
    assert [(m["kind"], m["at"]) for m in result["marks"]] == [
        ("warning", "2026-11-24T10:00:00+08:00"),  # 75 %: 6 working hours run (09-10, 14-18, 09-10)
        ("breached", "2026-11-24T12:00:00+08:00"),
        ("escalated", "2026-11-24T12:00:00+08:00"),
    ]


def test_deadline_as_text_names_the_calendar_and_each_alert(capsys: pytest.CaptureFixture[str]) -> None:
    args = ["sla", "deadline", "--policy", "cn-nfra-complaint", "--clock", "resolution"]
    assert main([*args, "--start", "2026-09-20T10:00:00+08:00", "--extensions", "1"]) == 0
    out = capsys.readouterr().out
    assert "clock resolution: 30 days, midnight, rolled to a working day" in out
    assert "mainland China public holidays and make-up working days, Asia/Shanghai" in out
    # 20 September + 30 = 20 October, a Tuesday: ends at 24:00.
    assert "deadline  2026-10-21 00:00:00 Wed (+0800)" in out
    assert "warning 3 (1d before the deadline)" in out
    assert "escalation 3 to consumer_protection_officer (cpo-office)" in out


def test_a_regulators_deadline_is_the_deadline(capsys: pytest.CaptureFixture[str]) -> None:
    args = ["sla", "deadline", "--policy", "cn-regulator-referral", "--clock", "regulator_response", "--json"]
    regulator = "2026-12-09T17:00:00+08:00"
    assert main([*args, "--start", "2026-11-24T09:30:00+08:00", "--regulator-deadline", regulator]) == 0
    assert json.loads(capsys.readouterr().out)["deadline"] == regulator


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--policy", "nope", "--clock", "resolution", "--start", "2026-11-23T09:00:00+08:00"], "policy 'nope'"),
        (["--policy", "uk-fca-disp", "--clock", "lunch", "--start", "2026-11-23T09:00:00Z"], "unknown clock"),
        (["--policy", "uk-fca-disp", "--clock", "resolution", "--start", "2026-11-23T09:00Z"], "has no resolution"),
        (["--policy", "uk-fca-disp", "--clock", "final_response", "--start", "2026-11-23"], "UTC offset"),
        (
            ["--policy", "uk-fca-disp", "--clock", "final_response", "--start", "2026-11-23T09:00Z", "--paused", "x"],
            "FROM/TO",
        ),
        (
            [
                "--policy",
                "uk-fca-disp",
                "--clock",
                "final_response",
                "--start",
                "2026-11-23T09:00Z",
                "--extensions",
                "1",
            ],
            "allows 0 extension",
        ),
    ],
)
def test_deadline_usage_errors(extra: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sla", "deadline", *extra]) == 2
    assert message in capsys.readouterr().err


def test_a_year_without_holiday_data_is_an_error_not_a_guess(capsys: pytest.CaptureFixture[str]) -> None:
    args = ["sla", "deadline", "--policy", "cn-nfra-complaint", "--clock", "resolution"]
    assert main([*args, "--start", "2026-12-28T10:00:00+08:00"]) == 1
    assert "no holiday data for 2027" in capsys.readouterr().err


def test_alert_lines_are_colour_coded_by_kind() -> None:
    breach = {
        "type": "com.parley.sla.breached.v1",
        "time": "2026-10-14T00:00:00+08:00",
        "data": {
            "case_id": "3f2c1a9e-8b7d-4e6f-9a1b-2c3d4e5f6a7b",
            "clock": "resolution",
            "policy_id": "cn-nfra-complaint",
            "policy_version": 1,
            "deadline": "2026-10-14T00:00:00+08:00",
            "overdue_seconds": 5400,
            "priority": "P2",
            "queue": "loans",
        },
    }
    plain = alert_line(json.dumps(breach).encode(), colour=False)
    assert plain is not None
    assert "BREACHED" in plain
    assert "overdue 1h30m" in plain
    assert "P2 loans" in plain
    assert "cn-nfra-complaint v1" in plain
    coloured = alert_line(json.dumps(breach).encode(), colour=True)
    assert coloured == f"{COLOURS['breached']}{plain}{RESET}"
    assert alert_line(b"not json", colour=True) is None


def test_a_refused_extension_or_pause_shows_why_it_was_refused() -> None:
    examples = Path(__file__).resolve().parents[2] / "schemas" / "examples"
    for name, label in (("clock_extension_refused", "EXT. REFUSED"), ("clock_pause_refused", "PAUSE REFUSED")):
        value = (examples / f"com.parley.sla.{name}.v1.json").read_bytes()
        line = alert_line(value, colour=True)
        assert line is not None
        refusal = json.loads(value)["data"]["refusal"]
        assert line.startswith(COLOURS[name])
        assert label in line
        assert f"({refusal})" in line
