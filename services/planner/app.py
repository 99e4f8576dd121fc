"""Planner's consumer: the only place the planner touches topics.

Stateless apart from idempotency: each plan.requested gives one plan.proposed (key = case id), whose
event id is derived from the request event's id. In one transaction the planner records the request
as handled and puts the proposal in the outbox, so a redelivered request changes nothing and a
proposal is published once it is on record (the relay publishes it). A request that can never give
a plan (a negative balance, mixed currencies) goes to deadletter.planner with the reason.
"""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime

from pydantic_core import to_json

from schemas import topics
from schemas.envelope import CONTENT_TYPE_HEADER, STRUCTURED_CONTENT_TYPE
from schemas.plans import PlanProposedEvent, PlanRequestedEvent
from services.planner import store
from services.planner.logic import PlanEngine, PlanRequestError
from services.planner.policy import load_policy
from services.runtime.deadletter import InboundMessage
from services.runtime.errors import PermanentError
from services.runtime.kafka import Record
from services.runtime.settings import Settings
from services.runtime.worker import Connections, ProcessorApp

log = logging.getLogger(__name__)

PROCESSOR = "planner"
SOURCE = "/parley/planner"
PROPOSED_ID_NAMESPACE = uuid.UUID("9d3f6a1e-2b7c-4e58-a0f4-6c8e1b2d3a75")
PROPOSED_TYPE: str = PlanProposedEvent.model_fields["type"].default
INVALID_REQUEST = "invalid_plan_request"


def proposed_event_id(request_event_id: uuid.UUID) -> uuid.UUID:
    return uuid.uuid5(PROPOSED_ID_NAMESPACE, str(request_event_id))


def proposed_record(topic: str, request: PlanRequestedEvent, data_json: bytes, now: datetime) -> Record:
    """The plan.proposed event in structured mode, keyed by the case id, around the engine's JSON data.

    Encoded from the engine's JSON text rather than through the model (a schedule holds hundreds of
    amounts, and a model for each costs more than the planning); tests check such documents against
    the model.
    """
    case_id = str(request.data.case_id)
    envelope = {
        "specversion": "1.0",
        "id": str(proposed_event_id(request.id)),
        "source": SOURCE,
        "type": PROPOSED_TYPE,
        "time": now.isoformat(),
        "subject": case_id,
        "datacontenttype": "application/json",
    }
    value = to_json(envelope)[:-1] + b',"data":' + data_json + b"}"
    return Record(topic, case_id.encode(), value, [(CONTENT_TYPE_HEADER, STRUCTURED_CONTENT_TYPE.encode())])


def plan_records(
    engine: PlanEngine, topic: str, messages: list[InboundMessage], now: datetime
) -> list[tuple[str, Record]]:
    """Each message's plan.proposed record with the request event's id; a bad request raises PermanentError."""
    planned = []
    for message in messages:
        request = message.parse(PlanRequestedEvent)
        try:
            data = engine.plan_json(request.data)
        except PlanRequestError as exc:
            raise PermanentError(INVALID_REQUEST, exc.detail) from exc
        planned.append((str(request.id), proposed_record(topic, request, data, now)))
    return planned


def consumed_topics(settings: Settings) -> list[str]:
    return [settings.topic(topics.PLAN_REQUESTED)]


def create_app(settings: Settings, connections: Connections) -> ProcessorApp:
    app = ProcessorApp(PROCESSOR, settings, connections, relays_outbox=True)
    engine = PlanEngine(load_policy(settings.plan_policy_path))  # a bad policy file stops the worker here
    proposed_topic = settings.topic(topics.PLAN_PROPOSED)

    async def handle(messages: list[InboundMessage]) -> None:
        # Plan first (pure, may raise for one bad request: the batch is then retried record by record).
        planned = plan_records(engine, proposed_topic, messages, datetime.now(UTC))
        repeats = await store.record_proposals(app.pool, PROCESSOR, planned)
        app.counters["duplicates"] += repeats
        if repeats:
            log.info("repeated plan requests skipped", extra={"processor": PROCESSOR, "repeats": repeats})

    app.consume_topics(consumed_topics(settings), handle)

    return app
