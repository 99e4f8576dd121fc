"""The Alertmanager sender against a tiny local aiohttp server standing in for Alertmanager."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiohttp import web

from services.runtime.errors import PermanentError, RetryableError
from services.sla.webhook import AlertmanagerSender, alertmanager_alerts

AT = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
DEADLINE = AT + timedelta(hours=2)
DATA: dict[str, Any] = {
    "case_id": "3f2c1a9e-8b7d-4e6f-9a1b-2c3d4e5f6a7b",
    "clock": "first_contact",
    "policy_id": "cn-operations",
    "policy_version": 1,
    "cycle": 0,
    "deadline": DEADLINE.isoformat(),
    "dedup_key": "3f2c1a9e-8b7d-4e6f-9a1b-2c3d4e5f6a7b/first_contact/0/breached",
    "priority": "P1",
    "queue": "fraud",
}


class FakeAlertmanager:
    def __init__(self) -> None:
        self.posts: list[Any] = []
        self.status = 200
        self.url = ""

    async def handle(self, request: web.Request) -> web.Response:
        self.posts.append(json.loads(await request.text()))
        assert request.headers["Content-Type"] == "application/json"
        return web.json_response({}, status=self.status)


@pytest.fixture
async def alertmanager() -> AsyncIterator[FakeAlertmanager]:
    fake = FakeAlertmanager()
    app = web.Application()
    app.router.add_post("/api/v2/alerts", fake.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    fake.url = f"http://127.0.0.1:{runner.addresses[0][1]}/"
    yield fake
    await runner.cleanup()


def test_a_breach_fires_with_identity_labels_and_stays_firing() -> None:
    [alert] = alertmanager_alerts("com.parley.sla.breached.v1", DEADLINE, DATA)
    assert alert["labels"] == {
        "alertname": "SlaBreached",
        "severity": "critical",
        "service": "parley-sla",
        "case_id": DATA["case_id"],
        "clock": "first_contact",
        "cycle": "0",
    }
    assert alert["annotations"]["dedup_key"] == DATA["dedup_key"]
    assert alert["annotations"]["policy"] == "cn-operations v1"
    assert alert["startsAt"] == DEADLINE.isoformat()
    assert datetime.fromisoformat(alert["endsAt"]) - DEADLINE == timedelta(days=30)


def test_a_warning_ends_at_the_deadline_and_met_resolves_all_three() -> None:
    [warning] = alertmanager_alerts("com.parley.sla.warning.v1", AT, {**DATA, "remaining_seconds": 7200})
    assert (warning["labels"]["severity"], warning["endsAt"]) == ("warning", DEADLINE.isoformat())
    resolved = alertmanager_alerts("com.parley.sla.clock_met.v1", AT, DATA)
    assert {a["labels"]["alertname"] for a in resolved} == {"SlaWarning", "SlaBreached", "SlaEscalated"}
    assert all(a["startsAt"] == a["endsAt"] == AT.isoformat() for a in resolved)
    assert alertmanager_alerts("com.parley.sla.clock_started.v1", AT, DATA) == []


async def test_the_sender_posts_to_the_v2_api(alertmanager: FakeAlertmanager) -> None:
    sender = AlertmanagerSender(alertmanager.url)
    try:
        alerts = alertmanager_alerts("com.parley.sla.breached.v1", DEADLINE, DATA)
        await sender.send(alerts)
        await sender.send([])  # nothing to say: no request
        assert alertmanager.posts == [alerts]
        alertmanager.status = 503
        with pytest.raises(RetryableError, match="503"):
            await sender.send(alerts)
        alertmanager.status = 400
        with pytest.raises(PermanentError, match="400"):
            await sender.send(alerts)
    finally:
        await sender.close()


async def test_an_unreachable_alertmanager_is_a_transient_failure() -> None:
    sender = AlertmanagerSender("http://127.0.0.1:9", timeout_seconds=2)
    try:
        with pytest.raises(RetryableError, match="unreachable"):
            await sender.send(alertmanager_alerts("com.parley.sla.breached.v1", DEADLINE, DATA))
    finally:
        await sender.close()
