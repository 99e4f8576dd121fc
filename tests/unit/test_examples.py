"""The example documents in schemas/examples: one per event type, what other teams read to learn the contracts.

Each example must be valid against its pydantic model and its JSON Schema (draft 2020-12), and a broken copy of
each must be refused by both, so the examples, the models and the generated schemas cannot drift apart.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from decimal import Decimal
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator
from pydantic import ValidationError

import schemas
from schemas.catalog import EVENTS, EVENTS_BY_NAME, EventSpec

SCHEMAS_DIR = Path(schemas.__file__).resolve().parent
EXAMPLES_DIR = SCHEMAS_DIR / "examples"
JSON_SCHEMA_DIR = SCHEMAS_DIR / "jsonschema"

JsonPath = tuple[str | int, ...]

ALL = pytest.mark.parametrize("spec", EVENTS, ids=[spec.name for spec in EVENTS])
CLOUDEVENTS = [spec for spec in EVENTS if spec.is_cloudevent]


def _example_path(spec: EventSpec) -> Path:
    return EXAMPLES_DIR / f"{spec.name}.json"


@cache
def _example_text(name: str) -> str:
    return (EXAMPLES_DIR / f"{name}.json").read_text(encoding="utf-8")


def example(spec: EventSpec) -> Any:
    """A fresh copy of the example, safe to change."""
    return json.loads(_example_text(spec.name))


@cache
def _schema(name: str) -> dict[str, Any]:
    schema: dict[str, Any] = json.loads((JSON_SCHEMA_DIR / f"{name}.json").read_text(encoding="utf-8"))
    Draft202012Validator.check_schema(schema)
    return schema


@cache
def validator(name: str) -> Draft202012Validator:
    return Draft202012Validator(_schema(name), format_checker=Draft202012Validator.FORMAT_CHECKER)


def schema_errors(spec: EventSpec, document: Any) -> list[str]:
    return [f"{error.json_path}: {error.message}" for error in validator(spec.name).iter_errors(document)]


def pydantic_accepts(spec: EventSpec, document: Any) -> bool:
    try:
        spec.model.model_validate_json(json.dumps(document, ensure_ascii=False))
    except ValidationError:
        return False
    return True


def assert_rejected_by_both(spec: EventSpec, document: Any, what: str) -> None:
    assert schema_errors(spec, document), f"the JSON Schema accepts {what}"
    assert not pydantic_accepts(spec, document), f"the pydantic model accepts {what}"


def pointer(path: JsonPath) -> str:
    return "/" + "/".join(str(part) for part in path)


def get_at(document: Any, path: JsonPath) -> Any:
    for part in path:
        document = document[part]
    return document


def set_at(document: Any, path: JsonPath, value: Any) -> None:
    get_at(document, path[:-1])[path[-1]] = value


def delete_at(document: Any, path: JsonPath) -> None:
    del get_at(document, path[:-1])[path[-1]]


# ---- walking an example together with its schema ----


def _applicable(schema: dict[str, Any], instance: Any, root: dict[str, Any]) -> dict[str, Any]:
    """The subschema that describes ``instance``: ``$ref`` into ``$defs`` followed, the matching anyOf/oneOf taken."""
    while "$ref" in schema:
        reference = schema["$ref"]
        assert reference.startswith("#/$defs/"), f"unexpected reference {reference}"
        schema = root["$defs"][reference.removeprefix("#/$defs/")]
    for combinator in ("anyOf", "oneOf"):
        for variant in schema.get(combinator, []):
            if Draft202012Validator({"$defs": root.get("$defs", {}), **variant}).is_valid(instance):
                return _applicable(variant, instance, root)
    return schema


def required_paths(
    instance: Any, schema: dict[str, Any], root: dict[str, Any], at: JsonPath = ()
) -> Iterator[JsonPath]:
    """Paths of every property present in the example that the schema requires where it stands."""
    schema = _applicable(schema, instance, root)
    if isinstance(instance, dict):
        yield from ((*at, name) for name in schema.get("required", []) if name in instance)
        properties = schema.get("properties", {})
        for name, value in instance.items():
            if name in properties:
                yield from required_paths(value, properties[name], root, (*at, name))
    elif isinstance(instance, list) and isinstance(schema.get("items"), dict):
        for index, item in enumerate(instance):
            yield from required_paths(item, schema["items"], root, (*at, index))


def deepest_required_path(spec: EventSpec) -> JsonPath:
    """A required property of the deepest object that has one (the first found when several are as deep)."""
    root = _schema(spec.name)
    paths = list(required_paths(example(spec), root, root))
    assert paths, f"{spec.name}: the example has no required property to delete"
    return max(paths, key=len)


# ---- one example per event type ----


def test_every_event_type_has_an_example_and_every_example_a_type() -> None:
    expected = {f"{spec.name}.json" for spec in EVENTS}
    present = {path.name for path in EXAMPLES_DIR.glob("*.json")}
    assert sorted(expected - present) == [], "event types without an example"
    assert sorted(present - expected) == [], "examples of no event type in schemas.catalog.EVENTS"
    assert sorted(path.name for path in EXAMPLES_DIR.iterdir() if path.is_file()) == sorted(present)


@ALL
def test_example_is_pretty_printed_utf8(spec: EventSpec) -> None:
    text = _example_path(spec).read_bytes().decode("utf-8")
    assert text == json.dumps(json.loads(text), indent=2, ensure_ascii=False) + "\n"
    assert isinstance(json.loads(text), dict)


@ALL
def test_example_validates_with_its_model(spec: EventSpec) -> None:
    spec.model.model_validate_json(_example_path(spec).read_text(encoding="utf-8"))


@ALL
def test_example_validates_with_its_json_schema(spec: EventSpec) -> None:
    assert schema_errors(spec, example(spec)) == []


@ALL
def test_broken_copy_is_rejected_by_both(spec: EventSpec) -> None:
    path = deepest_required_path(spec)
    broken = example(spec)
    delete_at(broken, path)
    assert_rejected_by_both(spec, broken, f"the example without {pointer(path)}")


def test_broken_copies_reach_into_the_data() -> None:
    """The walker goes below the envelope: every CloudEvent loses a field of its data, not an attribute."""
    shallow = [spec.name for spec in CLOUDEVENTS if deepest_required_path(spec)[0] != "data"]
    assert shallow == []
    path = deepest_required_path(EVENTS_BY_NAME["com.parley.plan.proposed.v1"])
    assert path == ("data", "proposals", 0, "schedule", 0, "payment", "amount")


@pytest.mark.parametrize(
    ("name", "path", "text"),
    [
        ("com.parley.plan.requested.v1", ("data", "debt", "contractual_instalment", "amount"), "3450.00"),
        ("com.parley.agent.customer_countered.v1", ("data", "proposed_instalment", "amount"), "1200.00"),
    ],
    ids=["published-money", "consumed-money"],
)
def test_money_as_a_json_number_is_rejected_by_both(name: str, path: JsonPath, text: str) -> None:
    spec = EVENTS_BY_NAME[name]
    document = example(spec)
    assert get_at(document, path) == text
    set_at(document, path, float(text))
    assert_rejected_by_both(spec, document, f"{pointer(path)} as the number {float(text)}")


# ---- CloudEvents attributes and openness ----


@pytest.mark.parametrize("spec", CLOUDEVENTS, ids=[spec.name for spec in CLOUDEVENTS])
def test_cloudevent_attributes(spec: EventSpec) -> None:
    document = example(spec)
    assert document["type"] == spec.name
    assert document["specversion"] == "1.0"
    assert document["datacontenttype"] == "application/json"
    assert document["source"].startswith("/")
    case_id = document["data"].get("case_id")
    if case_id is not None:
        assert document["subject"] == case_id


@ALL
def test_unknown_top_level_field_is_refused_when_published_and_ignored_when_consumed(spec: EventSpec) -> None:
    document = example(spec)
    document["unexpected"] = 1
    if spec.consumed:
        assert pydantic_accepts(spec, document), "a consumed event must be read tolerantly"
        assert schema_errors(spec, document) == []
    else:
        assert_rejected_by_both(spec, document, 'an unknown top-level field "unexpected"')


def test_consumed_events_are_the_raw_channel_and_agent_events() -> None:
    consumed = {spec.name for spec in EVENTS if spec.consumed}
    assert consumed == {spec.name for spec in EVENTS if spec.name.startswith(("com.parley.raw.", "com.parley.agent."))}


# ---- plan.proposed: schedules exact to the cent ----


def _amount(money: dict[str, str]) -> Decimal:
    assert money["currency"] == "CNY"
    return Decimal(money["amount"])


def test_proposed_plans_add_up_to_the_cent() -> None:
    data = example(EVENTS_BY_NAME["com.parley.plan.proposed.v1"])["data"]
    assert len(data["proposals"]) >= 2
    assert [proposal["rank"] for proposal in data["proposals"]] == list(range(1, len(data["proposals"]) + 1))
    for proposal in data["proposals"]:
        schedule = proposal["schedule"]
        assert [row["number"] for row in schedule] == list(range(1, len(schedule) + 1))
        assert len(schedule) == proposal["term_months"]
        balance: Decimal | None = None
        for row in schedule:
            payment, principal = _amount(row["payment"]), _amount(row["principal"])
            assert payment == principal + _amount(row["interest"]) + _amount(row["fees"]), row["number"]
            remaining = _amount(row["remaining_balance"])
            if balance is not None:
                assert remaining == balance - principal, row["number"]
                assert remaining < balance
            balance = remaining
        assert schedule[-1]["remaining_balance"]["amount"] == "0.00"
        assert _amount(proposal["total_repayable"]) == sum(_amount(row["payment"]) for row in schedule)
        assert _amount(proposal["instalment"]) == max(_amount(row["payment"]) for row in schedule)


@pytest.mark.parametrize(
    ("name", "time"),
    [
        ("com.parley.agent.contacted.v1", "2026-11-22T09:15:00"),  # no offset
        ("com.parley.agent.contacted.v1", 1795352014),  # epoch seconds
        ("com.parley.sla.breached.v1", "22/11/2026 09:15"),
    ],
)
def test_an_event_time_must_be_iso_8601_with_an_offset_for_both_validators(name: str, time: object) -> None:
    spec = EVENTS_BY_NAME[name]
    document = example(spec)
    document["time"] = time
    assert schema_errors(spec, document), "jsonschema must refuse it"
    with pytest.raises(ValidationError):
        spec.model.model_validate(document)


def test_a_due_date_given_as_a_number_is_refused() -> None:
    spec = EVENTS_BY_NAME["com.parley.agent.payment_missed.v1"]
    document = example(spec)
    document["data"]["due_date"] = 20261210
    assert schema_errors(spec, document)
    with pytest.raises(ValidationError):
        spec.model.model_validate(document)


def test_repeated_flags_are_refused_by_both() -> None:
    spec = EVENTS_BY_NAME["com.parley.case.triaged.v1"]
    document = example(spec)
    document["data"]["flags"] = ["vulnerable", "vulnerable"]
    assert schema_errors(spec, document)
    with pytest.raises(ValidationError):
        spec.model.model_validate(document)
