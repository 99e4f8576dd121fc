"""Broker connections shared by every processor: client options, topic creation, producers."""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError
from aiokafka.helpers import create_ssl_context

from schemas import topics
from schemas.envelope import CONTENT_TYPE_HEADER, STRUCTURED_CONTENT_TYPE, CloudEvent
from services.runtime.errors import ConfigurationError
from services.runtime.settings import SecurityProtocol, Settings

log = logging.getLogger(__name__)

TOPIC_ALREADY_EXISTS = 36

Headers = list[tuple[str, bytes]]


@dataclass(frozen=True)
class Record:
    """One record to publish: what the outbox stores and the relay sends."""

    topic: str
    key: bytes | None
    value: bytes
    headers: Headers = field(default_factory=list)


def event_record(topic: str, key: str, event: CloudEvent[Any]) -> Record:
    """A CloudEvent in structured mode, keyed so that one case's events stay in order."""
    return Record(topic, key.encode(), event.to_json_bytes(), [(CONTENT_TYPE_HEADER, STRUCTURED_CONTENT_TYPE.encode())])


async def send_all(producer: AIOKafkaProducer, records: list[Record]) -> list[BaseException | None]:
    """Queue every record, then wait for every ack: a batch costs a few produce requests, not one per record.

    One outcome per record, in order: None when the broker acknowledged it, else what went wrong.
    """
    try:
        deliveries = [
            await producer.send(record.topic, value=record.value, key=record.key, headers=record.headers)
            for record in records
        ]
    except KafkaError as exc:  # queueing failed (no metadata in time): none of them is known to be sent
        return [exc] * len(records)
    outcomes = await asyncio.gather(*deliveries, return_exceptions=True)
    return [outcome if isinstance(outcome, BaseException) else None for outcome in outcomes]


def ssl_context(settings: Settings) -> ssl.SSLContext | None:
    if settings.kafka_security_protocol not in (SecurityProtocol.SSL, SecurityProtocol.SASL_SSL):
        return None
    context: ssl.SSLContext = create_ssl_context(
        cafile=settings.kafka_ssl_cafile,
        certfile=settings.kafka_ssl_certfile,
        keyfile=settings.kafka_ssl_keyfile,
    )
    return context


def client_options(settings: Settings, bootstrap_servers: str) -> dict[str, Any]:
    """aiokafka keyword arguments for connection and security, shared by every client we build."""
    options: dict[str, Any] = {
        "bootstrap_servers": bootstrap_servers,
        "security_protocol": settings.kafka_security_protocol.value,
    }
    context = ssl_context(settings)
    if context is not None:
        options["ssl_context"] = context
    if settings.kafka_security_protocol in (SecurityProtocol.SASL_PLAINTEXT, SecurityProtocol.SASL_SSL):
        if not settings.kafka_sasl_username or settings.kafka_sasl_password is None:
            raise ConfigurationError("SASL needs PARLEY_KAFKA_SASL_USERNAME and PARLEY_KAFKA_SASL_PASSWORD")
        options["sasl_mechanism"] = settings.kafka_sasl_mechanism.value
        options["sasl_plain_username"] = settings.kafka_sasl_username
        options["sasl_plain_password"] = settings.kafka_sasl_password.get_secret_value()
    return options


def topic_configs(settings: Settings, name: str) -> dict[str, str]:
    if name in topics.LARGE_RECORD_TOPICS:
        return {"max.message.bytes": str(settings.kafka_max_message_bytes)}
    return {}


async def ensure_topics(settings: Settings, bootstrap_servers: str, names: Iterable[str]) -> None:
    """Create the named topics (logical names) with the configured partitions; existing ones are kept."""
    admin = AIOKafkaAdminClient(**client_options(settings, bootstrap_servers))
    await admin.start()
    try:
        new_topics = [
            NewTopic(
                name=settings.topic(name),
                num_partitions=settings.kafka_partitions,
                replication_factor=settings.kafka_replication_factor,
                topic_configs=topic_configs(settings, name),
            )
            for name in names
        ]
        response = await admin.create_topics(new_topics)
        for topic_name, error_code, *_ in response.topic_errors:
            if error_code not in (0, TOPIC_ALREADY_EXISTS):
                raise ConfigurationError(f"cannot create topic {topic_name}: error code {error_code}")
    finally:
        await admin.close()
    log.info("topics ready", extra={"count": len(new_topics)})


def new_producer(settings: Settings, bootstrap_servers: str, **overrides: Any) -> AIOKafkaProducer:
    """A producer that suits both brokers: acks=all, no idempotence (the embedded broker lacks it).

    Consumers are idempotent on event ids, so a retried send that lands twice costs nothing.
    """
    options: dict[str, Any] = {
        **client_options(settings, bootstrap_servers),
        "acks": "all",
        "enable_idempotence": False,
        "linger_ms": 5,
        # The client's default (16 KiB) fills after a dozen events; a full batch makes every further send wait
        # for a round trip. Half of Kafka's default max.message.bytes (1 MB) holds a processor's whole batch.
        "max_batch_size": 512 * 1024,
        "max_request_size": settings.kafka_max_message_bytes + 64 * 1024,
    }
    options.update(overrides)
    return AIOKafkaProducer(**options)
