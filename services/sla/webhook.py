"""An Alertmanager-compatible sender: SLA warnings, breaches and escalations as Alertmanager alerts.

Alerts go to ``POST <url>/api/v2/alerts`` (the API Prometheus itself uses). An alert's identity is
its label set: the alert name, severity, case, clock and run. A warning ends at the deadline; a
breach or an escalation stays firing until the clock is met or cancelled, when the same label sets
are sent again with ``endsAt`` (resolved). Alertmanager deduplicates repeats by labels, so a
redelivered SLA alert is harmless.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

import aiohttp

from services.runtime.errors import PermanentError, RetryableError

ALERTS_PATH = "/api/v2/alerts"
FIRING_FOR = timedelta(days=30)
"""How long a breach or escalation stays firing unless the clock is met or cancelled first."""

_FIRING = {
    "com.parley.sla.warning.v1": ("SlaWarning", "warning"),
    "com.parley.sla.breached.v1": ("SlaBreached", "critical"),
    "com.parley.sla.escalated.v1": ("SlaEscalated", "critical"),
}
_RESOLVING = {"com.parley.sla.clock_met.v1", "com.parley.sla.clock_cancelled.v1"}


def _labels(name: str, severity: str, data: dict[str, Any]) -> dict[str, str]:
    return {
        "alertname": name,
        "severity": severity,
        "service": "parley-sla",
        "case_id": str(data["case_id"]),
        "clock": str(data["clock"]),
        "cycle": str(data.get("cycle") or 0),
    }


def _summary(name: str, data: dict[str, Any]) -> str:
    clock = data["clock"]
    if name == "SlaWarning":
        return f"{clock} deadline near: {data.get('remaining_seconds', 0)} s left"
    if name == "SlaBreached":
        return f"{clock} deadline passed ({data.get('priority', '?')}, queue {data.get('queue') or 'none'})"
    return f"{clock} escalated to {data.get('escalated_to')} (level {data.get('level')})"


def alertmanager_alerts(event_type: str, time: datetime, data: dict[str, Any]) -> list[dict[str, Any]]:
    """The Alertmanager alerts an sla.alerts event stands for (none for started, paused, resumed ...)."""
    if event_type in _FIRING:
        name, severity = _FIRING[event_type]
        deadline = datetime.fromisoformat(str(data["deadline"]))
        ends = deadline if name == "SlaWarning" and deadline > time else time + FIRING_FOR
        annotations = {
            "summary": _summary(name, data),
            "deadline": deadline.isoformat(),
            "policy": f"{data['policy_id']} v{data.get('policy_version') or '?'}",
            "dedup_key": str(data.get("dedup_key") or ""),
        }
        if name == "SlaEscalated":
            annotations["escalated_to"] = str(data.get("escalated_to"))
            annotations["recipients"] = ", ".join(data.get("recipients") or [])
            annotations["reason"] = str(data.get("reason"))
        return [
            {
                "labels": _labels(name, severity, data),
                "annotations": annotations,
                "startsAt": time.isoformat(),
                "endsAt": ends.isoformat(),
            }
        ]
    if event_type in _RESOLVING:
        return [
            {
                "labels": _labels(name, severity, data),
                "annotations": {"summary": f"{data['clock']} clock stopped"},
                "startsAt": time.isoformat(),
                "endsAt": time.isoformat(),
            }
            for name, severity in _FIRING.values()
        ]
    return []


class AlertmanagerSender:
    """Posts alerts to one Alertmanager; failures say whether a retry can help."""

    def __init__(self, base_url: str, *, timeout_seconds: float = 10.0) -> None:
        self.url = base_url.rstrip("/") + ALERTS_PATH
        self._timeout = aiohttp.ClientTimeout(total=timeout_seconds)
        self._session: aiohttp.ClientSession | None = None

    async def send(self, alerts: list[dict[str, Any]]) -> None:
        if not alerts:
            return
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        try:
            async with self._session.post(
                self.url, data=json.dumps(alerts), headers={"Content-Type": "application/json"}
            ) as response:
                if response.status >= 500 or response.status == 429:
                    raise RetryableError(f"alertmanager answered {response.status}")
                if response.status >= 400:
                    raise PermanentError("alertmanager_rejected", f"alertmanager answered {response.status}")
        except aiohttp.ClientError as exc:
            raise RetryableError(f"alertmanager unreachable: {type(exc).__name__}") from exc

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
