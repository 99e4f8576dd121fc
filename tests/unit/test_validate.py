"""`parley schemas validate`: line by line, field path, expected, got."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from schemas.channels import Channel
from schemas.validate import find_event_type, problems_in, validate_lines
from services.cli import main
from tests.samples import encode, raw_message


def test_short_type_names_are_understood() -> None:
    for short in ("raw.hotline", "com.parley.raw.hotline", "com.parley.raw.hotline.v1"):
        spec = find_event_type(short)
        assert spec is not None
        assert spec.name == "com.parley.raw.hotline.v1"
    assert find_event_type("raw.fax") is None


def test_a_valid_line_has_no_problems() -> None:
    spec = find_event_type("raw.hotline")
    assert spec is not None
    assert problems_in(spec, encode(raw_message(Channel.HOTLINE, "H1")).decode(), 1) == []


def test_each_problem_names_line_path_expectation_and_what_was_found() -> None:
    spec = find_event_type("raw.social")
    assert spec is not None
    body = raw_message(Channel.SOCIAL, "S1")
    body["reach"]["followers"] = -5
    body["posted_at"] = "2026-11-22T09:15:00"
    del body["message_id"]
    problems = {p.path: p for p in problems_in(spec, json.dumps(body, ensure_ascii=False), 7)}
    assert set(problems) == {"reach.followers", "posted_at", "message_id"}
    assert str(problems["reach.followers"]) == "line 7: reach.followers: expected a value ≥ 0; got -5"
    assert "UTC offset" in problems["posted_at"].expected
    assert problems["posted_at"].got == '"2026-11-22T09:15:00"'
    assert problems["message_id"].expected == "required field is missing"
    assert problems["message_id"].got == "nothing"


def test_closed_types_name_unknown_fields_and_money_must_be_text() -> None:
    spec = find_event_type("plan.requested")
    assert spec is not None
    event = {
        "specversion": "1.0",
        "id": "not-a-uuid",
        "source": "/x",
        "type": spec.name,
        "time": "2026-11-22T09:15:00+08:00",
        "data": {},
        "surprise": 1,
    }
    paths = {p.path: p.expected for p in problems_in(spec, json.dumps(event), 1)}
    assert paths["surprise"] == "not a field of this event type (its schema is closed)"
    assert paths["id"].startswith("expected a UUID")
    assert paths["data.case_id"] == "required field is missing"


def test_a_line_that_is_not_json_is_reported_and_blank_lines_are_skipped() -> None:
    spec = find_event_type("raw.app")
    assert spec is not None
    report = validate_lines(spec, [encode(raw_message(Channel.APP, "A1")).decode(), "", "{oops\n"])
    assert (report.lines, report.valid, report.invalid) == (2, 1, 1)
    assert report.problems is not None
    assert report.problems[0].line == 3
    assert report.problems[0].expected.startswith("expected JSON")
    assert report.problems[0].got == '"{oops"'


def test_the_command_prints_problems_and_a_summary_and_exits_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    feed = tmp_path / "hotline.jsonl"
    good = encode(raw_message(Channel.HOTLINE, "H1")).decode()
    bad = json.dumps({**raw_message(Channel.HOTLINE, "H2"), "transcript": 5})
    feed.write_text(f"{good}\n{bad}\n", encoding="utf-8")
    assert main(["schemas", "validate", "--type", "raw.hotline", str(feed)]) == 1
    out = capsys.readouterr().out
    assert "line 2: transcript: expected text (a JSON string); got 5" in out
    assert "2 events of com.parley.raw.hotline.v1 (unknown fields are ignored for this type): 1 valid, 1 invalid" in out


def test_the_command_exits_0_on_a_clean_file_and_2_on_an_unknown_type(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    feed = tmp_path / "ok.jsonl"
    feed.write_text(encode(raw_message(Channel.BRANCH, "B1")).decode() + "\n", encoding="utf-8")
    assert main(["schemas", "validate", "--type", "raw.branch", str(feed)]) == 0
    assert main(["schemas", "validate", "--type", "raw.fax", str(feed)]) == 2
    assert "unknown event type 'raw.fax'" in capsys.readouterr().err


def test_list_shows_every_type_with_its_topic(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["schemas", "list"]) == 0
    out = capsys.readouterr().out
    assert "com.parley.sla.breached.v1" in out
    assert "case.routed.{queue}" in out
