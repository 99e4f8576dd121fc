"""Routing's metrics: deliveries by queue and link, overflows by the full queue, viral alerts, backlogs."""

from __future__ import annotations

from pathlib import Path

from schemas.values import Category, Priority, Queue
from services.routing import logic
from services.routing.app import observe
from services.routing.logic import RoutingState
from services.routing.rules import load_rules
from services.runtime.metrics import REGISTRY
from tests.unit.test_routing_samples import T0, app, social, triaged

RULES = load_rules(Path("deploy/config/routing.yaml"))


def value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_a_batch_is_counted_with_bounded_labels() -> None:
    before = {
        "new": value("parley_routing_deliveries_total", queue="ai_assistant", link="new_case"),
        "pr": value("parley_routing_deliveries_total", queue="public_opinion", link="public_opinion"),
        "overflow": value("parley_routing_overflows_total", queue="cards_payments"),
        "critical": value("parley_routing_viral_alerts_total", severity="critical"),
    }
    state = RoutingState()
    state.backlog[Queue.CARDS_PAYMENTS] = 400
    simple = triaged("m1", details=app(), category=Category.CARD_PAYMENT_ACCOUNT, priority=Priority.P4)
    viral = triaged("m2", customer=None, details=social("P-M", followers=900000, reposts=90000))
    outputs = logic.on_triaged(simple, state, RULES, T0) + logic.on_triaged(viral, state, RULES, T0)
    observe(outputs, state)
    assert value("parley_routing_deliveries_total", queue="ai_assistant", link="new_case") == before["new"] + 1
    assert value("parley_routing_deliveries_total", queue="public_opinion", link="public_opinion") == before["pr"] + 1
    assert value("parley_routing_overflows_total", queue="cards_payments") == before["overflow"] + 1
    assert value("parley_routing_viral_alerts_total", severity="critical") == before["critical"] + 1
    assert value("parley_routing_queue_backlog", queue="cards_payments") == 400
    assert value("parley_routing_queue_backlog", queue="ai_assistant") == 1
