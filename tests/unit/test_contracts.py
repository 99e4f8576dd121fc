"""The contract: committed files match the models, changes stay compatible, every topic is described."""

from __future__ import annotations

import json
import re
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal

import pytest
import yaml
from pydantic import BaseModel, ConfigDict, Field, create_model

from schemas import generate, topics
from schemas.catalog import EVENTS, TOPICS, events_on
from schemas.compat import breaking_changes

# ---- the committed files ----


def test_committed_contract_files_match_the_models() -> None:
    assert generate.drift() == [], "run `make schemas` and commit the result"


def test_no_event_type_breaks_any_earlier_schema_of_itself() -> None:
    assert generate.compatibility_problems() == {}


def test_history_ends_with_the_current_schema_of_every_type() -> None:
    for spec in EVENTS:
        versions = generate.history_of(spec.name)
        assert versions, f"{spec.name} has no history: run `make schemas`"
        assert versions[-1].read_text(encoding="utf-8") == generate.render_json(generate.json_schema(spec))


def test_every_schema_is_draft_2020_12_with_an_id_and_its_openness() -> None:
    for spec in EVENTS:
        schema = generate.json_schema(spec)
        assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
        assert schema["$id"].endswith(f"/{spec.name}.json")
        if spec.consumed:
            assert schema.get("additionalProperties") is not False, f"{spec.name} is read tolerantly"
        else:
            assert schema["additionalProperties"] is False, f"{spec.name} is published closed"


# ---- the catalog ----


def _expand(address: str, parameters: dict[str, tuple[str, ...]]) -> list[str]:
    if not parameters:
        return [address]
    ((name, values),) = parameters.items()
    return [address.replace("{" + name + "}", value) for value in values]


def test_every_topic_we_create_is_in_the_contract_and_nothing_else() -> None:
    described = {name for topic in TOPICS for name in _expand(topic.address, topic.parameters)}
    assert described == set(topics.ALL_TOPICS)


def test_every_topic_carries_at_least_one_event_type_and_every_event_names_known_topics() -> None:
    addresses = {topic.address for topic in TOPICS}
    for topic in TOPICS:
        assert events_on(topic), f"{topic.address} has no event type"
    for spec in EVENTS:
        assert set(spec.topics) <= addresses, spec.name


def test_event_type_names_are_namespaced_and_versioned_and_match_the_cloudevents_type() -> None:
    names = [spec.name for spec in EVENTS]
    assert len(names) == len(set(names))
    for spec in EVENTS:
        assert re.fullmatch(r"com\.parley\.[a-z_]+(\.[a-z_]+)*\.v[1-9][0-9]*", spec.name), spec.name
        if spec.is_cloudevent:
            assert spec.model.model_fields["type"].default == spec.name


def test_the_issue_lists_every_required_event() -> None:
    names = {spec.name.removeprefix("com.parley.").removesuffix(".v1") for spec in EVENTS}
    required = {
        *(f"raw.{c}" for c in ("hotline", "app", "social", "branch", "letter", "regulator")),
        "feedback.received",
        "dead_letter.headers",
        "case.triaged",
        "case.routed",
        *(
            f"agent.{a}"
            for a in (
                "contacted",
                "contact_attempt_failed",
                "note_added",
                "plan_offered",
                "customer_accepted",
                "customer_declined",
                "customer_countered",
                "resolved",
                "follow_up_done",
                "escalated",
                "clock_paused",
                "clock_resumed",
                "reopened",
            )
        ),
        "plan.requested",
        "plan.proposed",
        *(
            f"tracking.{t}"
            for t in (
                "opened",
                "merged",
                "triaged",
                "routed",
                "first_contact",
                "plan_proposed",
                "plan_accepted",
                "plan_active",
                "instalment_paid",
                "instalment_missed",
                "plan_broken",
                "plan_completed",
                "resolved",
                "followed_up",
                "closed",
                "reopened",
            )
        ),
        *(
            f"sla.{s}"
            for s in ("clock_started", "clock_paused", "clock_resumed", "clock_met", "warning", "breached", "escalated")
        ),
    }
    assert required <= names, sorted(required - names)


# ---- the AsyncAPI document ----


def _resolve_pointer(document: dict[str, Any], ref: str) -> Any:
    node: Any = document
    for part in ref.removeprefix("#/").split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        return [node["$ref"]] if "$ref" in node else [r for value in node.values() for r in _refs(value)]
    if isinstance(node, list):
        return [r for value in node for r in _refs(value)]
    return []


def test_asyncapi_document_is_3_0_and_every_reference_resolves() -> None:
    document = yaml.safe_load(generate.ASYNCAPI_FILE.read_text(encoding="utf-8"))
    assert document["asyncapi"] == "3.0.0"
    refs = _refs(document)
    assert refs
    for ref in refs:
        if ref.startswith("#/"):
            assert _resolve_pointer(document, ref) is not None, ref
        else:
            assert (generate.SCHEMAS_DIR / ref).is_file(), ref


def test_asyncapi_names_key_publishers_and_consumers_of_every_topic() -> None:
    document = yaml.safe_load(generate.ASYNCAPI_FILE.read_text(encoding="utf-8"))
    parties = {
        (op["x-party"], op["action"], op["channel"]["$ref"].split("/")[-1]) for op in document["operations"].values()
    }
    for topic in TOPICS:
        channel_id = topic.address.replace("{", "").replace("}", "")
        channel = document["channels"][channel_id]
        assert channel["address"] == topic.address
        for publisher in topic.publishers:
            assert (publisher, "send", channel_id) in parties
        for consumer in topic.consumers:
            assert (consumer, "receive", channel_id) in parties
        for ref in channel["messages"].values():
            message = _resolve_pointer(document, ref["$ref"])
            assert message["bindings"]["kafka"]["key"]["description"] == topic.key


# ---- the compatibility rules, on small models ----


class Kind(StrEnum):
    A = "a"
    B = "b"


class OnlyA(StrEnum):
    A = "a"


class Closed(BaseModel):
    model_config = ConfigDict(extra="forbid")


def schema_of(model: type[BaseModel]) -> dict[str, Any]:
    return model.model_json_schema()


class Base(Closed):
    case_id: str
    amount: int
    note: str | None = None
    kind: Kind = Kind.A
    code: str = Field(max_length=20)


def test_adding_an_optional_field_is_compatible() -> None:
    class Added(Base):
        extra: str | None = None

    assert breaking_changes(schema_of(Base), schema_of(Added)) == []


def test_loosening_a_constraint_is_compatible() -> None:
    class Looser(Closed):
        case_id: str
        amount: int
        note: str | None = None
        kind: Kind = Kind.A
        code: str = Field(max_length=40)

    assert breaking_changes(schema_of(Base), schema_of(Looser)) == []


@pytest.mark.parametrize(
    ("changed", "expected"),
    [
        ({"amount": (str, ...)}, "amount: type changed"),
        ({"amount": None}, "amount: field removed"),
        ({"reference": (str, ...)}, "reference: new required field"),
        ({"note": (str, ...)}, "note: became required"),
        ({"code": (str, Field(max_length=10))}, "code: maxLength tightened to 10"),
        ({"kind": (OnlyA, OnlyA.A)}, "kind: enum values removed"),
    ],
)
def test_breaking_changes_are_named(changed: dict[str, Any], expected: str) -> None:
    fields: dict[str, Any] = {
        "case_id": (str, ...),
        "amount": (int, ...),
        "note": (str | None, None),
        "kind": (Kind, Kind.A),
        "code": (str, Field(max_length=20)),
    }
    for name, definition in changed.items():
        if definition is None:
            fields.pop(name)
        else:
            fields[name] = definition

    new = create_model("Base", __config__=ConfigDict(extra="forbid"), **fields)
    found = breaking_changes(schema_of(Base), schema_of(new))
    assert any(expected in problem for problem in found), found


def test_an_open_object_closed_is_breaking_and_nested_changes_are_found() -> None:
    class Inner(BaseModel):
        followers: int
        reposts: int = 0

    class Outer(BaseModel):
        reach: Inner

    class InnerClosedWithoutReposts(Closed):
        followers: int

    class OuterNew(BaseModel):
        reach: InnerClosedWithoutReposts

    found = breaking_changes(schema_of(Outer), schema_of(OuterNew))
    assert any("reach: closed to unknown fields" in p for p in found), found
    assert any("reach.reposts: field removed" in p for p in found), found


def test_a_union_member_removed_is_breaking() -> None:
    class Hotline(Closed):
        channel: Literal["hotline"] = "hotline"
        caller: str

    class App(Closed):
        channel: Literal["app"] = "app"
        session: str

    class Old(Closed):
        details: Hotline | App = Field(discriminator="channel")

    class New(Closed):
        details: Hotline

    found = breaking_changes(schema_of(Old), schema_of(New))
    assert found, "removing the app variant must be caught"


def test_compatibility_is_checked_against_every_earlier_version(tmp_path: Path) -> None:
    class V1(Closed):
        case_id: str
        legacy: str | None = None

    class V2(Closed):  # legacy dropped: already breaking against V1, but fine against itself
        case_id: str

    history = [tmp_path / "0001.json", tmp_path / "0002.json"]
    history[0].write_text(json.dumps(schema_of(V1)))
    history[1].write_text(json.dumps(schema_of(V2)))
    found = generate.problems_against_history(schema_of(V2), history)
    assert found == ["against 0001.json: legacy: field removed"]
