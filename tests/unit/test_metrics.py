"""Metrics, health endpoints and log hygiene of the shared runtime, without a broker or database.

The same paths through a real broker and database are in tests/integration/test_observability.py.
"""

from __future__ import annotations

import io
import json
import logging
import sys
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from schemas.feedback import RejectReason
from services.runtime import metrics
from services.runtime.deadletter import InboundMessage
from services.runtime.errors import ConfigurationError, PermanentError, RetryableError
from services.runtime.health import HealthServer, Status
from services.runtime.kafka import Record
from services.runtime.logs import JsonFormatter, TextFormatter, describe_exception, format_exception_safely
from services.runtime.settings import Settings
from services.runtime.worker import Connections, ProcessorApp


def sample(name: str, **labels: str) -> float:
    """The value of one series in our registry, 0 when it does not exist yet."""
    value = metrics.REGISTRY.get_sample_value(name, labels)
    return value if value is not None else 0.0


def parse(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


# ---- consumer lag ----


@pytest.mark.parametrize(
    ("highwater", "committed", "last_read", "lag"),
    [
        (None, 10, 9, None),  # no fetch yet: unknown, not zero
        (100, 100, 99, 0),
        (100, 60, 99, 40),  # read ahead of the commit: the commit counts, as Kafka tools count it
        (100, None, 79, 20),  # nothing committed yet: the record after the last one read
        (100, None, None, 100),  # nothing read or committed: from the start of the log
        (5, 7, None, 0),  # a stale high watermark never makes a negative lag
    ],
)
def test_partition_lag(highwater: int | None, committed: int | None, last_read: int | None, lag: int | None) -> None:
    assert metrics.partition_lag(highwater, committed, last_read) == lag


class FakeWorker:
    """A worker as the collector sees it (metrics.WorkerSource): plain data, no broker."""

    def __init__(self, processor: str, lags: list[metrics.PartitionLag], batch_age: float) -> None:
        self.processor = processor
        self.lags = lags
        self.batch_age = batch_age

    def partition_lags(self) -> list[metrics.PartitionLag]:
        return self.lags

    def oldest_batch_age_seconds(self) -> float:
        return self.batch_age


def test_worker_collector_reads_lag_at_scrape_and_forgets_partitions_handed_away() -> None:
    worker = FakeWorker(
        "unit-lag",
        [
            metrics.PartitionLag("case.triaged", 0, 7),
            metrics.PartitionLag("case.triaged", 1, None),
            metrics.PartitionLag("agent.actions", 3, 0),
        ],
        batch_age=2.5,
    )
    metrics.WORKERS.attach(worker)
    try:
        values = parse(metrics.render().decode())
        lag = {k: v for k, v in values.items() if k[0] == "parley_consumer_lag" and ("processor", "unit-lag") in k[1]}
        assert lag == {
            (
                "parley_consumer_lag",
                frozenset({("processor", "unit-lag"), ("topic", "case.triaged"), ("partition", "0")}),
            ): 7,
            (
                "parley_consumer_lag",
                frozenset({("processor", "unit-lag"), ("topic", "agent.actions"), ("partition", "3")}),
            ): 0,
        }, "a partition not fetched yet has no lag sample, rather than a false 0"
        assert values[("parley_assigned_partitions", frozenset({("processor", "unit-lag")}))] == 3
        assert values[("parley_oldest_batch_age_seconds", frozenset({("processor", "unit-lag")}))] == 2.5
        worker.lags = worker.lags[2:]  # a rebalance took partitions 0 and 1 away
        values = parse(metrics.render().decode())
        assert not any(
            name == "parley_consumer_lag"
            and ("topic", "case.triaged") in labels
            and ("processor", "unit-lag") in labels
            for name, labels in values
        )
    finally:
        metrics.WORKERS.detach(worker)
    assert "unit-lag" not in metrics.render().decode()


# ---- the metric API other processors use ----


def test_counter_api_returns_the_same_metric_for_the_same_definition() -> None:
    first = metrics.counter("parley_unit_things_total", "Things.", ("queue",))
    again = metrics.counter("parley_unit_things_total", "Things.", ("queue",))
    assert first is again
    first.labels("fraud").inc(2)
    assert sample("parley_unit_things_total", queue="fraud") == 2
    with pytest.raises(ValueError, match="already"):
        metrics.counter("parley_unit_things_total", "Things.", ("clock",))
    metrics.gauge("parley_unit_open_things", "Open things.")
    with pytest.raises(ValueError, match="already"):
        metrics.histogram("parley_unit_open_things", "Open things.")


@pytest.mark.parametrize(
    ("make", "name", "labels", "message"),
    [
        (metrics.counter, "parley_cases_merged", (), "_total"),
        (metrics.counter, "cases_merged_total", (), "parley_"),
        (metrics.counter, "parley_Cases_total", (), "lower case"),
        (metrics.gauge, "parley_open_cases_total", (), "_total"),
        (metrics.histogram, "parley_wait_total", (), "parley_<what>_<unit>"),
        (metrics.counter, "parley_unit_cases_total", ("case_id",), "per case"),
        (metrics.gauge, "parley_unit_customers", ("customer_ref",), "per case"),
        (metrics.counter, "parley_unit_bad_label_total", ("Queue",), "lower-case"),
    ],
)
def test_metric_api_refuses_bad_names_and_per_case_labels(
    make: Any, name: str, labels: tuple[str, ...], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        make(name, "help", labels)


def test_every_shared_metric_is_exposed_with_prometheus_names() -> None:
    names = metrics.exposed_names()
    for name in (
        "parley_events_in_total",
        "parley_events_out_total",
        "parley_events_failed_total",
        "parley_dead_letters_total",
        "parley_retries_total",
        "parley_processing_seconds_bucket",
        "parley_batch_records_count",
        "parley_consumer_lag",
        "parley_assigned_partitions",
        "parley_oldest_batch_age_seconds",
        "parley_outbox_backlog",
        "parley_outbox_oldest_age_seconds",
        "parley_worker_ready",
        "parley_sla_clocks_armed_total",
        "parley_sla_clocks_met_total",
        "parley_sla_warnings_total",
        "parley_sla_breaches_total",
        "parley_sla_escalations_total",
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
    ):
        assert name in names, name
    for name in names:
        if name.startswith("parley_") and name.endswith("_total"):
            assert name.count("_total") == 1, name


def test_topic_and_reason_labels() -> None:
    assert metrics.topic_label("t7-ab12.case.triaged", "t7-ab12.") == "case.triaged"
    assert metrics.topic_label("case.triaged", "") == "case.triaged"
    assert metrics.topic_label("other.case.triaged", "t7.") == "other.case.triaged"
    assert metrics.reason_label(RejectReason.SCHEMA_VIOLATION) == "schema_violation"
    assert len(metrics.reason_label("x" * 500)) == 64


# ---- the worker loop counts what it does ----


def unit_app(tmp_path: Path, processor: str) -> ProcessorApp:
    settings = Settings(
        data_dir=tmp_path,
        kafka_bootstrap_servers="127.0.0.1:9",
        kafka_topic_prefix="u1.",
        retry_initial_backoff_seconds=0.001,
    )
    return ProcessorApp(
        processor, settings, Connections("127.0.0.1:9", "postgresql://nobody@127.0.0.1:9/none"), relays_outbox=False
    )


def message(topic: str, offset: int) -> InboundMessage:
    return InboundMessage(topic=topic, partition=0, offset=offset, key=b"k", value=b"{}", headers=[])


async def test_process_counts_records_in_retries_batches_and_dead_letters(tmp_path: Path) -> None:
    processor = "unit-process"
    app = unit_app(tmp_path, processor)
    published: list[Record] = []

    async def publish_now(record: Record) -> None:  # the broker is not the subject here
        published.append(record)

    app.publish_now = publish_now  # type: ignore[method-assign]
    attempts = 0

    async def handler(batch: list[InboundMessage]) -> None:
        nonlocal attempts
        attempts += 1
        if attempts == 1:
            raise RetryableError("database restarting")
        if len(batch) > 1 and any(m.offset == 2 for m in batch):
            raise PermanentError("schema_violation", "data.text: field required")
        if batch[0].offset == 2:
            raise PermanentError("schema_violation", "data.text: field required")

    batch = [message("u1.case.triaged", 1), message("u1.case.triaged", 2), message("u1.agent.actions", 3)]
    await app.process(batch, handler)

    assert sample("parley_events_in_total", processor=processor, topic="case.triaged") == 2
    assert sample("parley_events_in_total", processor=processor, topic="agent.actions") == 1
    assert sample("parley_retries_total", processor=processor, operation="handle") == 1
    assert sample("parley_events_failed_total", processor=processor, topic="case.triaged") == 1
    assert sample("parley_dead_letters_total", processor=processor, reason="schema_violation") == 1
    assert sample("parley_batch_records_count", processor=processor) == 1, "one batch, however it was split"
    assert sample("parley_batch_records_sum", processor=processor) == 3
    assert sample("parley_processing_seconds_count", processor=processor) == 1
    assert [r.topic for r in published] == ["u1.deadletter.unit-process"]
    assert app.oldest_batch_age_seconds() == 0.0, "no batch is in the handler any more"


async def test_a_batch_in_the_handler_ages(tmp_path: Path) -> None:
    app = unit_app(tmp_path, "unit-age")
    seen: list[float] = []

    async def handler(_batch: list[InboundMessage]) -> None:
        seen.append(app.oldest_batch_age_seconds())

    await app.process([message("u1.case.tracking", 1)], handler)
    assert len(seen) == 1
    assert 0 <= seen[0] < 5
    assert app.oldest_batch_age_seconds() == 0.0


async def test_unstarted_worker_is_alive_but_not_ready(tmp_path: Path) -> None:
    app = unit_app(tmp_path, "unit-ready")
    live = await app.liveness()
    ready = await app.readiness()
    assert live.ok
    assert not ready.ok
    assert ready.checks == {
        "started": False,
        "assignment": False,
        "partitions": 0,
        "database": False,
        "producer": False,
    }
    assert app.partition_lags() == []
    assert app.http_port is None


# ---- the HTTP server ----


async def test_health_server_answers_probes_and_metrics() -> None:
    ready = False
    refreshed = 0

    async def live() -> Status:
        return Status(ok=True, checks={"crashed": False})

    async def readiness() -> Status:
        return Status(ok=ready, checks={"database": ready})

    async def before_scrape() -> None:
        nonlocal refreshed
        refreshed += 1
        metrics.WORKER_READY.labels("unit-http").set(1 if ready else 0)

    server = HealthServer("127.0.0.1", 0, live=live, ready=readiness, before_scrape=before_scrape)
    port = await server.start()
    assert port > 0
    assert server.port == port
    try:
        async with aiohttp.ClientSession() as session:
            base = f"http://127.0.0.1:{port}"
            async with session.get(base + "/healthz") as response:
                assert response.status == 200
                assert await response.json() == {"status": "ok", "checks": {"crashed": False}}
            async with session.get(base + "/readyz") as response:
                assert response.status == 503
                assert await response.json() == {"status": "unavailable", "checks": {"database": False}}
            ready = True
            async with session.get(base + "/readyz") as response:
                assert response.status == 200
            async with session.get(base + "/metrics") as response:
                assert response.status == 200
                assert response.headers["Content-Type"] == metrics.CONTENT_TYPE
                values = parse(await response.text())
            assert values[("parley_worker_ready", frozenset({("processor", "unit-http")}))] == 1
            assert refreshed == 1
            async with session.get(base + "/nothing") as response:
                assert response.status == 404
    finally:
        await server.stop()


async def test_metrics_still_answer_when_the_refresh_fails(caplog: pytest.LogCaptureFixture) -> None:
    async def probe() -> Status:
        return Status(ok=True)

    async def broken_refresh() -> None:
        raise ConnectionRefusedError("database down")

    server = HealthServer("127.0.0.1", 0, live=probe, ready=probe, before_scrape=broken_refresh)
    port = await server.start()
    try:
        async with aiohttp.ClientSession() as session, session.get(f"http://127.0.0.1:{port}/metrics") as response:
            assert response.status == 200
            assert "parley_events_in_total" in await response.text()
    finally:
        await server.stop()
    assert any(r.getMessage() == "metrics refresh failed" for r in caplog.records)


async def test_two_servers_cannot_share_a_port() -> None:
    async def probe() -> Status:
        return Status(ok=True)

    first = HealthServer("127.0.0.1", 0, live=probe, ready=probe)
    port = await first.start()
    try:
        with pytest.raises(OSError, match="address already in use"):
            await HealthServer("127.0.0.1", port, live=probe, ready=probe).start()
    finally:
        await first.stop()


# ---- logs carry no message text or personal data ----

PERSONAL = "我叫张三 13800138000 zhang@mail.example"


def record_with(exc: BaseException, message: str = "failed", args: tuple[Any, ...] = ()) -> logging.LogRecord:
    try:
        raise exc
    except BaseException:
        return logging.getLogger("parley.unit").makeRecord(
            "parley.unit", logging.ERROR, __file__, 1, message, args, sys.exc_info()
        )


@pytest.mark.parametrize("formatter", [JsonFormatter(), TextFormatter()], ids=["json", "text"])
def test_exception_messages_that_may_quote_data_are_withheld(formatter: logging.Formatter) -> None:
    for exc in (ValueError(PERSONAL), KeyError(PERSONAL), UnicodeDecodeError("utf-8", PERSONAL.encode(), 0, 1, "x")):
        line = formatter.format(record_with(exc))
        assert "13800138000" not in line
        assert "张三" not in line
        assert type(exc).__name__ in line
        assert "message withheld" in line


def test_exception_arguments_of_a_library_log_line_are_withheld() -> None:
    record = logging.getLogger("mode").makeRecord(
        "mode", logging.ERROR, __file__, 1, "Crashed reason=%r", (ValueError(PERSONAL),), None
    )
    entry = json.loads(JsonFormatter().format(record))
    assert "13800138000" not in entry["msg"]
    assert entry["msg"].startswith("Crashed reason='builtins.ValueError (message withheld")


def test_safe_exception_messages_and_causes_are_kept() -> None:
    try:
        try:
            raise ConnectionRefusedError(111, "Connect call failed ('10.0.0.5', 5432)")
        except OSError as exc:
            raise RetryableError("no database connection: ConnectionRefusedError") from exc
    except RetryableError:
        text = format_exception_safely(sys.exc_info())
    assert "Connect call failed ('10.0.0.5', 5432)" in text
    assert "services.runtime.errors.RetryableError: no database connection: ConnectionRefusedError" in text
    assert "The above exception was the direct cause of the following exception:" in text
    assert text.index("ConnectionRefusedError: [Errno 111]") < text.index("RetryableError:")
    assert "test_metrics.py" in text, "frames stay: they say where, not what"
    assert describe_exception(ConfigurationError("routing.yaml: queues.fraud: unknown")).endswith(
        "ConfigurationError: routing.yaml: queues.fraud: unknown"
    )
    assert describe_exception(PermanentError("schema_violation", f"text: {PERSONAL}")).endswith(
        "PermanentError: schema_violation"
    )


def test_a_worker_log_line_holds_no_message_text() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("parley.unit.worker")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        try:
            json.loads('{"text": "' + PERSONAL + '"')
        except ValueError:
            logger.exception("unhandled error; record dead-lettered", extra={"processor": "triage", "offset": 4})
    finally:
        logger.removeHandler(handler)
    entry = json.loads(stream.getvalue())
    assert entry["processor"] == "triage"
    assert "JSONDecodeError (message withheld" in entry["exc"]
    assert "13800138000" not in stream.getvalue()
