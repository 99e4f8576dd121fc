"""A worker's HTTP endpoints: ``/healthz`` (alive), ``/readyz`` (ready to work) and ``/metrics`` (Prometheus).

A small aiohttp server of its own rather than faust's web server (aiohttp is already there, as
faust's dependency). faust's server starts with faust's worker services, after the app's own
start, and carries faust's debugging views (agents, tables, assignment) we would rather not
expose; ours answers ``/healthz`` from the first moment of ``on_start`` (while topics are
created, migrations applied and the group joined, which is what a startup probe waits for),
serves the same three paths whatever runs the worker, and binds a port from our own settings.

Probes answer JSON: ``{"status": "ok" | "unavailable", "checks": {...}}`` with 200 or 503.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field

from aiohttp import web

from services.runtime import metrics

log = logging.getLogger(__name__)

# A scrape waits this long for values read from the database (outbox backlog, readiness), then
# answers with what it has: a slow database must not make /metrics itself time out.
SCRAPE_REFRESH_TIMEOUT_SECONDS = 3.0


@dataclass(frozen=True)
class Status:
    ok: bool
    checks: Mapping[str, bool | int | float | str] = field(default_factory=dict)

    def body(self) -> bytes:
        return json.dumps({"status": "ok" if self.ok else "unavailable", "checks": dict(self.checks)}).encode()


Probe = Callable[[], Awaitable[Status]]


class HealthServer:
    """Serves the three paths on ``host:port`` (port 0: any free port; ``port`` says which after ``start``)."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        live: Probe,
        ready: Probe,
        before_scrape: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self._host = host
        self._requested_port = port
        self._live = live
        self._ready = ready
        self._before_scrape = before_scrape
        self._runner: web.AppRunner | None = None
        self.port: int | None = None

    async def start(self) -> int:
        app = web.Application()
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        app.router.add_get("/metrics", self._metrics)
        # No access log: probes every few seconds would drown the worker's own lines.
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, self._host, self._requested_port)
        try:
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        self.port = int(runner.addresses[0][1])
        return self.port

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _healthz(self, _request: web.Request) -> web.Response:
        return _answer(await self._live())

    async def _readyz(self, _request: web.Request) -> web.Response:
        return _answer(await self._ready())

    async def _metrics(self, _request: web.Request) -> web.Response:
        if self._before_scrape is not None:
            try:
                await asyncio.wait_for(self._before_scrape(), SCRAPE_REFRESH_TIMEOUT_SECONDS)
            except Exception as exc:
                # The scrape still answers; values read from the database keep their last reading.
                log.warning("metrics refresh failed", extra={"error": type(exc).__name__})
        return web.Response(body=metrics.render(), headers={"Content-Type": metrics.CONTENT_TYPE})


def _answer(status: Status) -> web.Response:
    return web.Response(
        body=status.body(), status=200 if status.ok else 503, headers={"Content-Type": "application/json"}
    )
