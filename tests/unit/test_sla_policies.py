"""The SLA policies file: the shipped presets load, and a mistake is refused with the file, policy and field."""

from __future__ import annotations

import copy
import json
from datetime import date
from pathlib import Path
from typing import Any

import pytest
import yaml

from schemas.values import ClockName
from services.sla.policies import (
    PolicyError,
    PolicyVersion,
    book_from_file,
    load_holiday_files,
    load_policy_book,
    parse_duration,
    parse_policy_document,
)

PRESETS = Path(__file__).resolve().parents[2] / "deploy" / "config" / "sla-policies.yaml"


def presets() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(PRESETS.read_text(encoding="utf-8"))
    return document


def place(document: dict[str, Any], policy_id: str, version: int) -> int:
    """The index of a policy version in the file's list."""
    found = [i for i, p in enumerate(document["policies"]) if (p["id"], p["version"]) == (policy_id, version)]
    assert len(found) == 1
    return found[0]


def test_the_shipped_presets_load_with_every_jurisdiction() -> None:
    book = load_policy_book(PRESETS)
    ids = list(dict.fromkeys(v.policy.id for v in book.versions))
    assert ids[:2] == ["cn-regulator-referral", "cn-nfra-complaint"]
    assert {"uk-fca-disp", "us-cfpb", "cn-operations-p1", "cn-operations"} <= set(ids)
    assert set(book.clock_names()) == set(ClockName)
    resolution = book.version("cn-nfra-complaint", 1).policy.clock(ClockName.RESOLUTION)
    assert resolution is not None
    assert [s.days for s in resolution.spans()] == [15, 30, 60]
    assert [e.approval_required for e in resolution.extensions] == [False, True]
    assert {"tracking.opened", "tracking.first_contact", "agent.contacted", "tracking.closed"} <= book.triggers()


def _error(document: Any) -> str:
    with pytest.raises(PolicyError) as raised:
        parse_policy_document(document, "sla-policies.yaml")
    return str(raised.value)


def test_an_unknown_calendar_is_named_with_its_policy() -> None:
    document = presets()
    document["policies"][place(document, "cn-nfra-complaint", 1)]["clocks"][0]["calendar"] = "cn-desk-typo"
    message = _error(document)
    assert "cn-nfra-complaint v1" in message
    assert "no calendar named 'cn-desk-typo'" in message


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda clock: clock.update(starts_on=["tracking.openned"]), "not an event the SLA engine reads"),
        (lambda clock: clock["warnings"].append({"percent": 50, "before": "1d"}), "either percent"),
        (lambda clock: clock["warnings"].append({"before": "two days"}), "a duration looks like"),
        (lambda clock: clock["target"].update(unit="weeks", counting="working"), "working weeks"),
        (lambda clock: clock["target"].update(unit="hours"), "day_end and roll_to_working_day"),
        (lambda clock: clock.update(name="lunch"), "Input should be"),
        (lambda clock: clock.update(pause_conditions=["waiting_on_godot"]), "pause condition 'waiting_on_godot'"),
        (lambda clock: clock["escalations"].append({"level": 1, "to": "x", "after": "0s"}), "distinct"),
    ],
)
def test_a_wrong_clock_is_refused_with_its_place(change: Any, expected: str) -> None:
    document = presets()
    index = place(document, "cn-nfra-complaint", 1)
    clock = document["policies"][index]["clocks"][0]
    change(clock)
    message = _error(document)
    assert expected in message
    assert f"policies[{index}] (cn-nfra-complaint)" in message or "cn-nfra-complaint v1" in message


def test_a_version_defined_twice_is_refused() -> None:
    document = presets()
    document["policies"].append(copy.deepcopy(document["policies"][0]))
    assert "version 1 of cn-regulator-referral is defined twice" in _error(document)


def test_a_bad_time_zone_and_bad_hours_are_refused() -> None:
    document = presets()
    document["calendars"]["cn-hotline"]["time_zone"] = "Asia/Peking"
    assert "unknown time zone 'Asia/Peking'" in _error(document)
    document = presets()
    document["calendars"]["cn-hotline"]["working_hours"] = ["13:00-18:00", "09:00-12:00"]
    assert "sorted" in _error(document)


def test_a_missing_file_and_broken_yaml_say_which_file(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match=r"nowhere\.yaml"):
        load_policy_book(tmp_path / "nowhere.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("policies: [\n", encoding="utf-8")
    with pytest.raises(PolicyError, match=r"broken\.yaml is not valid YAML"):
        load_policy_book(broken)


def test_holiday_files_in_yaml_and_json_with_ranges(tmp_path: Path) -> None:
    as_yaml = tmp_path / "cn-2027.yaml"
    as_yaml.write_text(
        "years:\n  2027:\n    days_off: [2027-01-01, 2027-02-06..2027-02-09]\n    make_up_days: [2027-02-14]\n",
        encoding="utf-8",
    )
    as_json = tmp_path / "cn-2028.json"
    as_json.write_text(json.dumps({"years": {"2028": {"days_off": ["2028-01-01"]}}}), encoding="utf-8")
    supplied = load_holiday_files([str(as_yaml), str(as_json)])
    assert supplied.years == {2027, 2028}
    assert date(2027, 2, 8) in supplied.days_off
    assert date(2027, 2, 10) not in supplied.days_off
    assert supplied.make_up_days == {date(2027, 2, 14)}
    wrong = tmp_path / "wrong.yaml"
    wrong.write_text("years:\n  2027:\n    days_off: [2026-12-31]\n", encoding="utf-8")
    with pytest.raises(PolicyError, match="2026-12-31 is not in 2027"):
        load_holiday_files([str(wrong)])


def test_a_calendar_with_a_holiday_file_counts_the_supplied_year(tmp_path: Path) -> None:
    holidays = tmp_path / "cn-2027.yaml"
    holidays.write_text("years:\n  2027:\n    days_off: [2027-01-01]\n", encoding="utf-8")
    document = presets()
    document["calendars"]["cn-complaints-desk"]["holiday_files"] = [str(holidays)]
    book = book_from_file(parse_policy_document(document, "test"))
    assert not book.calendar("cn-complaints-desk").is_working_day(date(2027, 1, 1))
    assert book.calendar("cn-complaints-desk").is_working_day(date(2027, 1, 4))


def test_pause_reasons_name_their_condition() -> None:
    book = load_policy_book(PRESETS)
    assert book.pause_condition("等待客户补充出院小结和收入证明") == "waiting_on_customer"
    assert book.pause_condition("waiting_on_third_party: valuation report") == "waiting_on_third_party"
    assert book.pause_condition("等待司法鉴定结论") == "waiting_on_third_party"
    assert book.pause_condition("agent on holiday") is None


def test_a_version_checksum_covers_its_calendars_but_not_holiday_data() -> None:
    book = load_policy_book(PRESETS)
    version = book.version("cn-nfra-complaint", 1)
    same = PolicyVersion.from_spec(json.loads(json.dumps(version.spec())))
    assert same.checksum == version.checksum
    spec = version.spec()
    spec["calendars"]["cn-complaints-desk"]["holiday_files"] = ["more.yaml"]
    assert PolicyVersion.from_spec(spec).checksum == version.checksum
    spec["calendars"]["cn-complaints-desk"]["working_hours"] = ["09:00-17:00"]
    assert PolicyVersion.from_spec(spec).checksum != version.checksum


def test_durations() -> None:
    assert parse_duration("1h30m").total_seconds() == 5400
    assert parse_duration("1w").days == 7
    assert parse_duration(90).total_seconds() == 90
    for bad in ("", "1y", "-5m", 1.5):
        with pytest.raises(ValueError, match="duration"):
            parse_duration(bad)


def test_clock_fields_added_later_leave_the_recorded_versions_checksums_alone() -> None:
    # Checksums the database recorded for version 1 before extension_choice and restart_on_new_facts existed:
    # a worker compares them at start and refuses a version whose meaning changed.
    book = load_policy_book(PRESETS)
    assert book.version("cn-nfra-complaint", 1).checksum.startswith("a943562bc974")
    assert book.version("cn-regulator-referral", 1).checksum.startswith("cae9051a2ddd")
    assert book.version("uk-fca-disp", 1).checksum.startswith("87451099a6d2")
    assert book.version("us-cfpb", 1).checksum.startswith("e32966bab583")
    referral = book.version("cn-regulator-referral", 2)
    assert referral.spec()["policy"]["clocks"][0]["restart_on_new_facts"] is True
    assert "restart_on_new_facts" not in referral.spec()["policy"]["clocks"][1]  # at its default: left out
    assert PolicyVersion.from_spec(referral.spec()).checksum == referral.checksum


def test_version_2_differs_from_version_1_only_where_the_yaml_says() -> None:
    book = load_policy_book(PRESETS)
    for policy_id in ("cn-regulator-referral", "cn-nfra-complaint", "uk-fca-disp", "us-cfpb"):
        first, second = book.version(policy_id, 1).policy, book.version(policy_id, 2).policy
        assert first.selector == second.selector
        assert second.effective_from > first.effective_from
        for old in first.clocks:
            new = second.clock(old.name)
            assert new is not None
            changed = {name for name in type(old).model_fields if getattr(old, name) != getattr(new, name)}
            assert changed <= {"stops_on", "restart_on_new_facts"}, (policy_id, old.name, changed)
            if "stops_on" in changed:
                assert new.stops_on == [*old.stops_on, "tracking.plan_accepted"]
