"""Routing's outgoing records: byte for byte what the shared ``event_record`` makes of the same events."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from schemas import topics
from services.routing import logic
from services.routing.app import Router
from services.routing.logic import Alert, Delivery, RoutingState
from services.routing.rules import load_rules
from services.runtime.kafka import event_record
from services.runtime.settings import Settings
from tests.unit.test_routing_samples import T0, app, hotline, social, triaged

RULES = load_rules(Path("deploy/config/routing.yaml"))


async def test_records_are_the_shared_structured_records_of_the_events() -> None:
    settings = Settings()
    state = RoutingState()
    outputs = [
        *logic.on_triaged(triaged("h1", details=hotline()), state, RULES, T0),
        *logic.on_triaged(triaged("a1", customer="C2", details=app()), state, RULES, T0),
        *logic.on_triaged(
            triaged("viral", customer=None, details=social("P-V", followers=900_000, reposts=90_000)), state, RULES, T0
        ),
    ]
    assert any(isinstance(output, Alert) for output in outputs)
    pool: Any = None  # no queue of the shipped rules sees personal data: nothing is revealed, nothing is asked
    records = await Router(pool, settings, RULES).records(None, outputs)
    expected = []
    for output in outputs:
        if isinstance(output, Delivery):
            topic = settings.topic(topics.routed_topic(output.queue))
            expected.append(event_record(topic, str(output.event.subject), output.event))
        else:
            topic = settings.topic(topics.REPUTATION_ALERTS)
            expected.append(event_record(topic, str(output.event.data.case_id), output.event))
    assert records == expected
