"""What the SLA processor reads from each consumed record (no broker, no database): an agent's extension, a
routed step's lane, a merge's new facts, and the parked requests' round trip through their stored form."""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import yaml

from schemas import topics
from schemas.values import CaseStatus
from services.runtime.deadletter import InboundMessage
from services.runtime.errors import PermanentError
from services.runtime.settings import Settings
from services.sla import logic, store
from services.sla.app import FACT_TRIGGERS, SlaEngine, to_sla_event
from services.sla.calendar import Unit
from services.sla.logic import SlaEvent, Target
from services.sla.policies import book_from_file, load_policy_book, parse_policy_document

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "schemas" / "examples"
PRESETS = ROOT / "deploy" / "config" / "sla-policies.yaml"
CASE = uuid.UUID("3f2c1a9e-8b7d-4e6f-9a1b-2c3d4e5f6a7b")
EVERYTHING = frozenset({*FACT_TRIGGERS, logic.MERGED, "tracking.plan_accepted"})


def example(name: str) -> dict[str, Any]:
    document: dict[str, Any] = json.loads((EXAMPLES / f"com.parley.{name}.v1.json").read_text(encoding="utf-8"))
    return document


def message(document: dict[str, Any], topic: str = "case.tracking") -> InboundMessage:
    return InboundMessage(topic, 0, 0, None, json.dumps(document, ensure_ascii=False).encode(), [])


def test_an_agents_extension_reaches_the_engine_with_its_approver_and_target() -> None:
    document = example("agent.clock_extended")
    document["data"]["approved_by"] = "E10422"
    read = to_sla_event(message(document, topics.AGENT_ACTIONS), EVERYTHING)
    assert read is not None
    assert (read.trigger, read.case_id, read.clock, read.agent_id, read.approved_by) == (
        logic.EXTEND,
        CASE,
        logic.ClockName.RESOLUTION,
        "E20731",
        "E10422",
    )
    assert read.new_target == Target(30, Unit.DAYS)
    assert read.at == datetime(2026, 12, 3, 11, 20, tzinfo=ZoneInfo("Asia/Shanghai"))
    del document["data"]["new_target"]
    plain = to_sla_event(message(document, topics.AGENT_ACTIONS), EVERYTHING)
    assert plain is not None
    assert plain.new_target is None


def test_an_extension_without_a_reason_is_a_schema_violation() -> None:
    document = example("agent.clock_extended")
    del document["data"]["reason"]
    with pytest.raises(PermanentError, match="reason"):
        to_sla_event(message(document, topics.AGENT_ACTIONS), EVERYTHING)


@pytest.mark.parametrize(("lane", "expected"), [(None, "primary"), ("primary", "primary"), ("public_opinion", None)])
def test_a_routed_step_gives_the_case_its_queue_only_from_the_primary_lane(
    lane: str | None, expected: str | None
) -> None:
    document = example("tracking.routed")
    if lane is not None:
        document["data"]["lane"] = lane
    read = to_sla_event(message(document), EVERYTHING)
    assert read is not None
    assert read.lane == (lane or "primary")
    facts = logic.on_event(None, [], read, load_policy_book(PRESETS)).facts
    assert facts.queue == ("repayment_hardship" if expected else None)
    assert facts.priority == "P2"  # a PR copy still says how urgent the case is


def test_a_merge_says_whether_it_brought_new_facts() -> None:
    document = example("tracking.merged")
    for new_facts in (True, False):
        document["data"]["new_facts"] = new_facts
        read = to_sla_event(message(document), EVERYTHING)
        assert read is not None
        assert (read.trigger, read.new_facts) == (logic.MERGED, new_facts)


RESTARTING = """
calendars:
  always: {time_zone: UTC, holidays: every-day, working_hours: ["00:00-24:00"]}
policies:
  - id: restarting
    version: 1
    effective_from: 2020-01-01T00:00:00Z
    clocks:
      - {name: regulator_response, calendar: always, target: {amount: 1, unit: days},
         starts_on: [tracking.opened], stops_on: [tracking.resolved], restart_on_new_facts: RESTART}
"""


@pytest.mark.parametrize("restart", [True, False])
def test_the_worker_reads_merges_only_when_a_clock_restarts_on_new_facts(restart: bool) -> None:
    document = yaml.safe_load(RESTARTING.replace("RESTART", str(restart).lower()))
    book = book_from_file(parse_policy_document(document, "test"))
    engine = SlaEngine(app=None, book=book, settings=Settings())  # type: ignore[arg-type]
    assert (logic.MERGED in engine.wanted) is restart
    assert logic.EXTEND in engine.wanted  # agents' extensions are always read, like pauses
    read = to_sla_event(message(example("tracking.merged")), engine.wanted)
    assert (read is not None) is restart


def test_a_parked_extension_keeps_its_target_and_approver_in_the_database_form() -> None:
    at = datetime(2026, 12, 3, 11, 20, tzinfo=ZoneInfo("Asia/Shanghai"))
    parked = (
        SlaEvent(
            uuid.uuid4(),
            logic.EXTEND,
            CASE,
            at,
            clock=logic.ClockName.RESOLUTION,
            reason="情况复杂",
            agent_id="E20731",
            approved_by="E10422",
            new_target=Target(60, Unit.DAYS),
        ),
        SlaEvent(uuid.uuid4(), logic.PAUSE, CASE, at, clock=logic.ClockName.RESOLUTION, reason="等待司法鉴定"),
    )
    assert store._parked(store._parked_json(parked), CASE) == parked
    # A request parked before extensions carried a target reads back without one.
    older = json.loads(store._parked_json(parked[1:]))
    del older[0]["new_target"]
    assert store._parked(json.dumps(older), CASE) == parked[1:]


def test_the_tracker_records_an_agents_extension_on_the_cases_audit_trail() -> None:
    from services.tracker.logic import World
    from tests.unit.test_tracker_support import T0, action, an_id, case_in, run

    case_id, feedback_id = an_id("extension-case"), an_id("extension-feedback")
    request = action(
        "clock_extended",
        case_id,
        T0,
        clock="resolution",
        reason="情况复杂，需调取交易流水",
        approved_by="E10422",
        new_target={"amount": 60, "unit": "days"},
    )
    world = World(cases={case_id: case_in(CaseStatus.CONTACTED, case_id, feedback_id)})
    outcome = run(world, request)
    assert outcome.emitted == []  # nothing for case.tracking: the SLA engine answers on sla.alerts
    (row,) = [r for r in outcome.audit_rows if r.case_id == case_id]
    assert (row.event_id, row.event_type) == (request.event.id, "com.parley.agent.clock_extended.v1")
    assert row.payload["data"]["new_target"] == {"amount": 60, "unit": "days"}
    assert world.cases[case_id].status is CaseStatus.CONTACTED


def _mutations(document: dict[str, Any]) -> list[Any]:
    """The record as sent, and as a careless or hostile producer might send it: each attribute and each data field
    left out, given the wrong type, or given an unknown neighbour; another version of the type; not an object."""
    found: list[Any] = [document, [document], "text", None]
    for key in document:
        found.append({k: v for k, v in document.items() if k != key})
        found.extend({**document, key: wrong} for wrong in (123, "x", None, {"case_id": str(CASE)}))
    found.append({**document, "unknown_attribute": 1})
    found.append({**document, "type": document["type"].replace(".v1", ".v2")})
    data = document["data"]
    for key in data:
        found.append({**document, "data": {k: v for k, v in data.items() if k != key}})
        found.extend({**document, "data": {**data, key: wrong}} for wrong in (123, "x", None, [], "2026-11-22"))
    found.append({**document, "data": {**data, "unknown_field": 1}})
    return found


def _outcome(read: Any, value: InboundMessage) -> Any:
    try:
        return read(value)
    except PermanentError as exc:
        return ("rejected", exc.reason, exc.detail)


@pytest.mark.parametrize("wanted", [EVERYTHING, frozenset({logic.OPENED, logic.PAUSE, "tracking.first_contact"})])
def test_reading_a_record_in_one_pass_gives_what_reading_it_step_by_step_gives(wanted: frozenset[str]) -> None:
    """The engine reads each record once, straight into its model; a record it cannot read so is read again step
    by step, envelope first: events, ignored records and rejections (with their reasons) stay as they were."""
    from services.sla.app import EventReader, _read_step_by_step

    reader = EventReader(wanted)
    compared = rejected = 0
    for path in sorted(EXAMPLES.glob("com.parley.*.v1.json")):
        if not path.name.startswith(("com.parley.tracking.", "com.parley.agent.")):
            continue
        document = json.loads(path.read_text(encoding="utf-8"))
        for mutated in _mutations(document):
            value = InboundMessage("case.tracking", 0, 0, None, json.dumps(mutated, ensure_ascii=False).encode(), [])
            one_pass = _outcome(reader.read, value)
            assert one_pass == _outcome(lambda m: _read_step_by_step(m, wanted), value), (path.name, mutated)
            compared += 1
            rejected += isinstance(one_pass, tuple)
    assert compared > 1000
    assert 0 < rejected < compared


def test_the_alerts_records_are_what_event_record_makes_of_them() -> None:
    """The engine serialises its alerts straight to bytes: the records must be the runtime's, byte for byte."""
    from services.runtime.kafka import event_record

    book = load_policy_book(PRESETS)
    engine = SlaEngine(app=None, book=book, settings=Settings())  # type: ignore[arg-type]
    opened, triaged = example("tracking.opened"), example("tracking.triaged")
    opened["data"]["jurisdiction"] = "CN"
    facts = logic.on_event(None, [], _read(opened, engine.wanted), book).facts
    alerts = logic.on_event(facts, [], _read(triaged, engine.wanted), book).alerts
    assert len(alerts) >= 2
    expected = [event_record(engine.alerts_topic, str(a.data.case_id), a) for a in alerts]
    assert engine.records(alerts) == expected


def _read(document: dict[str, Any], wanted: frozenset[str]) -> SlaEvent:
    read = to_sla_event(message(document), wanted)
    assert read is not None
    return read


@pytest.mark.parametrize(
    "case_id",
    [uuid.UUID(int=0), uuid.UUID(int=(1 << 128) - 1), uuid.UUID(int=1 << 127), uuid.UUID(int=(1 << 127) - 1), CASE],
)
def test_a_cases_lock_key_is_its_first_eight_bytes_as_a_signed_number(case_id: uuid.UUID) -> None:
    """Workers that lock the same case must compute the same key, whichever way it is computed."""
    assert store._lock_key(case_id) == int.from_bytes(case_id.bytes[:8], "big", signed=True)


def test_the_engines_quick_constructors_make_what_the_dataclasses_make() -> None:
    """SlaEvent and a just-started ClockState are built without their frozen __init__ on the hot path: every field
    must be there, with the dataclass's default where none is given, and an unknown field refused."""
    from dataclasses import fields

    at = datetime(2026, 11, 24, 9, 0, tzinfo=ZoneInfo("Asia/Shanghai"))
    event_id = uuid.uuid4()
    quick = logic.new_sla_event(event_id, logic.ROUTED, CASE, at, priority="P2", queue="loans", lane="primary")
    assert quick == SlaEvent(event_id, logic.ROUTED, CASE, at, priority="P2", queue="loans", lane="primary")
    assert set(vars(quick)) == {f.name for f in fields(SlaEvent)}
    with pytest.raises(TypeError, match="no field"):
        logic.new_sla_event(event_id, logic.ROUTED, CASE, at, colour="red")
    clock = logic._new_clock(CASE, logic.ClockName.RESOLUTION, 1, "cn-nfra-complaint", 2, "cn-desk", at, "P2", None, at)
    assert clock == logic.ClockState(
        CASE, logic.ClockName.RESOLUTION, 1, "cn-nfra-complaint", 2, "cn-desk", logic.ClockStatus.RUNNING, at, at,
        "P2", None, regulator_deadline=at,
    )  # fmt: skip
    assert set(vars(clock)) == {f.name for f in fields(logic.ClockState)}
