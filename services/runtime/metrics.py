"""Prometheus metrics of every processor: one registry, the shared metric objects, and a small API.

The worker loop, the dead-letter path and the outbox relay count what every processor does
(``services.runtime.worker``); a processor counts its own business with the objects below or with
``counter``/``gauge``/``histogram``. ``services.runtime.health`` serves the registry on ``/metrics``.

Label values are bounded sets: processors, topics (without the deployment's topic prefix),
partitions, reasons, operations, clocks, priorities. Never a case, customer, feedback or event
id: each would be a time series of its own, and some are personal data.
"""

from __future__ import annotations

import collections
import re
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol, TypeVar

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector

CONTENT_TYPE = CONTENT_TYPE_LATEST

REGISTRY = CollectorRegistry(auto_describe=True)
"""Ours alone (not prometheus_client's global one), so that nothing a library registers leaks in."""

# CPU, memory, open files, GC and the interpreter version of this process, as every Python exporter has them.
ProcessCollector(registry=REGISTRY)
PlatformCollector(registry=REGISTRY)
GCCollector(registry=REGISTRY)

NAME_PATTERN = re.compile(r"^parley_[a-z][a-z0-9_]*[a-z0-9]$")
LABEL_PATTERN = re.compile(r"^[a-z][a-z0-9_]*$")
# Labels that would make one series per case, customer or message (unbounded, and some personal).
FORBIDDEN_LABELS = frozenset(
    {
        "case_id",
        "customer_ref",
        "customer_id",
        "feedback_id",
        "event_id",
        "message_id",
        "agent_id",
        "post_id",
        "source_reference",
        "key",
        "offset",
        "text",
    }
)
SECONDS_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
RECORDS_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000)

MetricT = TypeVar("MetricT", Counter, Gauge, Histogram)

_defined: dict[str, tuple[type, tuple[str, ...], Counter | Gauge | Histogram]] = {}
_define_lock = threading.Lock()


def _check_labels(name: str, labelnames: Sequence[str]) -> tuple[str, ...]:
    labels = tuple(labelnames)
    for label in labels:
        if not LABEL_PATTERN.match(label):
            raise ValueError(f"metric {name}: label {label!r} is not a lower-case Prometheus label name")
        if label in FORBIDDEN_LABELS:
            raise ValueError(f"metric {name}: label {label!r} would make a series per case or message; aggregate")
    return labels


def _define(kind: type[MetricT], name: str, labels: tuple[str, ...], make: Callable[[], MetricT]) -> MetricT:
    """Register once; asking again for the same definition returns the same object (module reloads, tests)."""
    with _define_lock:
        known = _defined.get(name)
        if known is not None:
            known_kind, known_labels, metric = known
            if known_kind is not kind or known_labels != labels:
                raise ValueError(f"metric {name} is already a {known_kind.__name__} with labels {known_labels}")
            assert isinstance(metric, kind)
            return metric
        metric = make()
        _defined[name] = (kind, labels, metric)
        return metric


def counter(name: str, documentation: str, labelnames: Sequence[str] = ()) -> Counter:
    """A counter in our registry. ``name`` is ``parley_<what>_total``, e.g. ``parley_cases_merged_total``."""
    if not NAME_PATTERN.match(name) or not name.endswith("_total"):
        raise ValueError(f"counter {name!r}: name it parley_<what>_total, lower case")
    labels = _check_labels(name, labelnames)
    return _define(Counter, name, labels, lambda: Counter(name, documentation, labels, registry=REGISTRY))


def gauge(name: str, documentation: str, labelnames: Sequence[str] = ()) -> Gauge:
    """A gauge in our registry: ``parley_<what>[_<unit>]``, never ending in ``_total``."""
    if not NAME_PATTERN.match(name) or name.endswith("_total"):
        raise ValueError(f"gauge {name!r}: name it parley_<what>[_<unit>], lower case, not ending in _total")
    labels = _check_labels(name, labelnames)
    return _define(Gauge, name, labels, lambda: Gauge(name, documentation, labels, registry=REGISTRY))


def histogram(
    name: str, documentation: str, labelnames: Sequence[str] = (), buckets: Sequence[float] = SECONDS_BUCKETS
) -> Histogram:
    """A histogram in our registry: ``parley_<what>_<unit>`` (``_seconds`` for durations, in seconds)."""
    if not NAME_PATTERN.match(name) or name.endswith("_total"):
        raise ValueError(f"histogram {name!r}: name it parley_<what>_<unit>, lower case")
    labels = _check_labels(name, labelnames)
    return _define(
        Histogram, name, labels, lambda: Histogram(name, documentation, labels, registry=REGISTRY, buckets=buckets)
    )


# ---- every processor, counted by the shared runtime ----

EVENTS_IN = counter(
    "parley_events_in_total", "Records a processor took from a topic to handle.", ("processor", "topic")
)
EVENTS_OUT = counter(
    "parley_events_out_total",
    "Records a processor published and the broker acknowledged (directly or through its outbox), by topic.",
    ("processor", "topic"),
)
EVENTS_FAILED = counter(
    "parley_events_failed_total",
    "Records a processor could not handle and parked on its dead-letter (or rejected) topic, by source topic.",
    ("processor", "topic"),
)
DEAD_LETTERS = counter(
    "parley_dead_letters_total",
    "Dead letters published (intake: rejected records), by reason; unhandled_error means a bug.",
    ("processor", "reason"),
)
RETRIES = counter(
    "parley_retries_total",
    "Transient failures retried, by operation: handle (a batch), publish (a record), outbox (a relay batch).",
    ("processor", "operation"),
)
PROCESSING_SECONDS = histogram(
    "parley_processing_seconds",
    "Time from taking a batch to being done with it, retries and splits included.",
    ("processor",),
)
BATCH_RECORDS = histogram(
    "parley_batch_records", "Records per batch a processor handled.", ("processor",), buckets=RECORDS_BUCKETS
)
OUTBOX_BACKLOG = gauge(
    "parley_outbox_backlog",
    "Rows waiting in the outbox of a source processor, read at scrape time (every worker of it reports the same).",
    ("source",),
)
OUTBOX_OLDEST_AGE_SECONDS = gauge(
    "parley_outbox_oldest_age_seconds",
    "Age of the oldest row waiting in the outbox of a source processor (0 when empty), read at scrape time.",
    ("source",),
)
WORKER_READY = gauge(
    "parley_worker_ready",
    "1 when the worker is ready (partitions assigned, database reachable, producer started), else 0.",
    ("processor",),
)

# ---- the SLA engine's business (services.sla counts these; label values are bounded enums) ----

SLA_CLOCKS_ARMED = counter(
    "parley_sla_clocks_armed_total", "SLA clocks started, by clock (schemas.values.ClockName).", ("clock",)
)
SLA_CLOCKS_MET = counter("parley_sla_clocks_met_total", "SLA clocks whose goal was met in time, by clock.", ("clock",))
SLA_WARNINGS = counter(
    "parley_sla_warnings_total",
    "SLA warnings fired (deadline near), by clock and case priority (P1-P4).",
    ("clock", "priority"),
)
SLA_BREACHES = counter(
    "parley_sla_breaches_total",
    "SLA breaches fired (deadline passed, goal unmet), by clock and case priority (P1-P4).",
    ("clock", "priority"),
)
SLA_ESCALATIONS = counter("parley_sla_escalations_total", "SLA escalations fired, by clock.", ("clock",))


# ---- consumer lag, read from the consumer when scraped ----


@dataclass(frozen=True)
class PartitionLag:
    topic: str
    partition: int
    lag: int | None
    """None until the partition's first fetch brings a high watermark."""


class WorkerSource(Protocol):
    """What a worker tells the collector: processor, how far behind each assigned partition is, age of its batch."""

    processor: str

    def partition_lags(self) -> list[PartitionLag]: ...

    def oldest_batch_age_seconds(self) -> float: ...


def partition_lag(highwater: int | None, committed: int | None, last_read: int | None) -> int | None:
    """Records in a partition not yet done: the fetch high watermark minus the committed offset.

    The committed offset is the next record to read, as Kafka tools and KEDA count it. Before the
    first commit, the record after the last one read stands in, else the start of the log. None
    before the first fetch of the partition (no high watermark yet).
    """
    if highwater is None:
        return None
    if committed is not None:
        done = committed
    elif last_read is not None:
        done = last_read + 1
    else:
        done = 0
    return max(highwater - done, 0)


class WorkerCollector:
    """Consumer lag, assigned partitions and the age of the batch in hand, read from the workers on each scrape.

    Read when scraped rather than kept in gauges, so that a partition handed to another worker
    disappears from this one's series instead of freezing at its last value.

    The lag is what the worker knows from its own fetches. A worker whose handler is stuck stops
    fetching the partitions it holds records of (aiokafka fetches a partition again only once its
    buffered records are taken), so its lag stops growing at what it fetched:
    ``parley_oldest_batch_age_seconds`` and retries show that case, and the broker-side lag (KEDA,
    kafka-consumer-groups) keeps counting.
    """

    def __init__(self) -> None:
        self._sources: list[WorkerSource] = []

    def attach(self, source: WorkerSource) -> None:
        if source not in self._sources:
            self._sources.append(source)

    def detach(self, source: WorkerSource) -> None:
        if source in self._sources:
            self._sources.remove(source)

    def _families(self) -> tuple[GaugeMetricFamily, GaugeMetricFamily, GaugeMetricFamily]:
        return (
            GaugeMetricFamily(
                "parley_consumer_lag",
                "Records not yet committed by this worker, per assigned partition (fetch high watermark - committed).",
                labels=["processor", "topic", "partition"],
            ),
            GaugeMetricFamily(
                "parley_assigned_partitions",
                "Partitions the consumer group gave this worker (a worker beyond the partition count has 0).",
                labels=["processor"],
            ),
            GaugeMetricFamily(
                "parley_oldest_batch_age_seconds",
                "How long the oldest batch still in the handler has been there (0 when idle): a stuck worker grows it.",
                labels=["processor"],
            ),
        )

    def describe(self) -> Iterable[Metric]:
        return self._families()

    def collect(self) -> Iterable[Metric]:
        lag_family, assigned_family, batch_age_family = self._families()
        for source in list(self._sources):
            lags = source.partition_lags()
            assigned_family.add_metric([source.processor], len(lags))
            for item in lags:
                if item.lag is not None:
                    lag_family.add_metric([source.processor, item.topic, str(item.partition)], item.lag)
            batch_age_family.add_metric([source.processor], source.oldest_batch_age_seconds())
        return [lag_family, assigned_family, batch_age_family]


WORKERS = WorkerCollector()
REGISTRY.register(WORKERS)


# ---- helpers ----


def count_events_out(source: str, published_topics: Iterable[str], prefix: str) -> None:
    """Count published records in ``parley_events_out_total``, one increment per topic."""
    for topic, count in collections.Counter(published_topics).items():
        EVENTS_OUT.labels(source, topic_label(topic, prefix)).inc(count)


def topic_label(topic: str, prefix: str) -> str:
    """A topic's logical name (``schemas.topics``), so one dashboard serves every prefixed deployment."""
    return topic[len(prefix) :] if prefix and topic.startswith(prefix) else topic


def reason_label(reason: object) -> str:
    """A dead letter's reason as a label: its code (RejectReason values, unhandled_error), bounded in length."""
    return str(reason)[:64]


def render() -> bytes:
    """The registry in the Prometheus text format."""
    return generate_latest(REGISTRY)


def exposed_names() -> frozenset[str]:
    """Every sample name this process can expose (``parley_events_in_total``, ``…_bucket``, ``process_…``)."""
    suffixes = {
        "counter": ("_total", "_created"),
        "histogram": ("_bucket", "_count", "_sum", "_created"),
        "summary": ("", "_count", "_sum", "_created"),
        "info": ("_info",),
        "gaugehistogram": ("_bucket", "_gcount", "_gsum"),
    }
    names: set[str] = set()
    for family in REGISTRY.collect():
        for suffix in suffixes.get(family.type, ("",)):
            names.add(family.name + suffix)
    return frozenset(names)
