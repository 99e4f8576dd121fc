"""Shared runtime: settings, Kafka client options and records, dead letters, migrations, errors, logs."""

from __future__ import annotations

import json
import logging
import os
import sys
from datetime import datetime
from typing import Any

import pytest
from pydantic import BaseModel, SecretStr, ValidationError

from schemas import topics
from schemas.channels import Channel
from schemas.envelope import CONTENT_TYPE_HEADER, STRUCTURED_CONTENT_TYPE
from schemas.tracking import CaseOpened, CaseOpenedEvent
from services.intake.logic import Accepted, normalise
from services.runtime.db import Migration, load_migrations
from services.runtime.deadletter import InboundMessage, dead_letter_record
from services.runtime.errors import ConfigurationError, describe_validation_error
from services.runtime.kafka import Record, client_options, event_record, topic_configs
from services.runtime.logs import JsonFormatter
from services.runtime.settings import SaslMechanism, SecurityProtocol, Settings
from tests.samples import encode, raw_message

UNPREFIXED = ("KAFKA_BOOTSTRAP_SERVERS", "DATABASE_URL")


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No PARLEY_* (any case) nor the two unprefixed connection variables from the real environment."""
    for name in list(os.environ):
        if name.upper().startswith("PARLEY_") or name.upper() in UNPREFIXED:
            monkeypatch.delenv(name)
    for name in UNPREFIXED:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(f"PARLEY_{name}", raising=False)
    return monkeypatch


def settings(**values: Any) -> Settings:
    return Settings(**values)


# ---- settings ----


def test_defaults_without_environment(clean_env: pytest.MonkeyPatch) -> None:
    s = Settings()
    assert s.kafka_bootstrap_servers is None
    assert s.database_url is None
    assert s.uses_embedded_broker is True
    assert s.intake_max_body_bytes == 256 * 1024
    assert s.kafka_max_message_bytes == 10 * 1024 * 1024


@pytest.mark.parametrize("name", ["KAFKA_BOOTSTRAP_SERVERS", "PARLEY_KAFKA_BOOTSTRAP_SERVERS"])
def test_bootstrap_servers_from_either_variable(name: str, clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv(name, "broker-1:9092,broker-2:9092")
    s = Settings()
    assert s.kafka_bootstrap_servers == "broker-1:9092,broker-2:9092"
    assert s.uses_embedded_broker is False


@pytest.mark.parametrize("name", ["DATABASE_URL", "PARLEY_DATABASE_URL"])
def test_database_url_from_either_variable_and_secret(name: str, clean_env: pytest.MonkeyPatch) -> None:
    url = "postgresql://parley:s3cr3t-pw@db.internal:5432/parley"
    clean_env.setenv(name, url)
    s = Settings()
    assert isinstance(s.database_url, SecretStr)
    assert s.database_url.get_secret_value() == url
    assert "s3cr3t-pw" not in str(s.database_url)
    assert "s3cr3t-pw" not in repr(s)
    assert "s3cr3t-pw" not in str(s)


def test_prefixed_variable_wins_over_unprefixed(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("KAFKA_BOOTSTRAP_SERVERS", "plain:9092")
    clean_env.setenv("PARLEY_KAFKA_BOOTSTRAP_SERVERS", "prefixed:9092")
    assert Settings().kafka_bootstrap_servers == "prefixed:9092"


def test_other_settings_read_prefixed_variables(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("PARLEY_KAFKA_PARTITIONS", "12")
    clean_env.setenv("PARLEY_KAFKA_TOPIC_PREFIX", "team-a.")
    clean_env.setenv("PARLEY_KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    clean_env.setenv("KAFKA_PARTITIONS", "99")  # unprefixed only for the two connection settings
    s = Settings()
    assert s.kafka_partitions == 12
    assert s.kafka_topic_prefix == "team-a."
    assert s.kafka_security_protocol is SecurityProtocol.SASL_SSL


def test_invalid_environment_value_is_an_error(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("PARLEY_KAFKA_PARTITIONS", "0")
    with pytest.raises(ValidationError):
        Settings()


def test_session_timeout_embedded_and_external(clean_env: pytest.MonkeyPatch) -> None:
    assert Settings().session_timeout_seconds() == 2.0
    assert settings(kafka_bootstrap_servers="broker:9092").session_timeout_seconds() == 10.0
    assert settings(kafka_session_timeout_seconds=7.5).session_timeout_seconds() == 7.5
    explicit = settings(kafka_bootstrap_servers="broker:9092", kafka_session_timeout_seconds=45.0)
    assert explicit.session_timeout_seconds() == 45.0


def test_heartbeat_defaults_to_a_quarter_of_session_capped_at_three(clean_env: pytest.MonkeyPatch) -> None:
    assert Settings().heartbeat_interval_seconds() == 0.5
    assert settings(kafka_bootstrap_servers="broker:9092").heartbeat_interval_seconds() == 2.5
    assert settings(kafka_session_timeout_seconds=30.0).heartbeat_interval_seconds() == 3.0
    assert settings(kafka_heartbeat_interval_seconds=1.25).heartbeat_interval_seconds() == 1.25


def test_topic_applies_prefix(clean_env: pytest.MonkeyPatch) -> None:
    assert Settings().topic("feedback.received") == "feedback.received"
    assert settings(kafka_topic_prefix="uat.").topic("feedback.received") == "uat.feedback.received"


# ---- kafka ----


@pytest.mark.parametrize("protocol", [SecurityProtocol.SASL_SSL, SecurityProtocol.SASL_PLAINTEXT])
def test_sasl_without_credentials_is_a_configuration_error(
    protocol: SecurityProtocol, clean_env: pytest.MonkeyPatch
) -> None:
    with pytest.raises(ConfigurationError, match="SASL"):
        client_options(settings(kafka_security_protocol=protocol), "broker:9093")
    with pytest.raises(ConfigurationError):
        client_options(settings(kafka_security_protocol=protocol, kafka_sasl_username="u"), "broker:9093")
    with pytest.raises(ConfigurationError):
        client_options(settings(kafka_security_protocol=protocol, kafka_sasl_password="p"), "broker:9093")


def test_sasl_ssl_options(clean_env: pytest.MonkeyPatch) -> None:
    s = settings(
        kafka_security_protocol=SecurityProtocol.SASL_SSL,
        kafka_sasl_mechanism=SaslMechanism.SCRAM_SHA_256,
        kafka_sasl_username="parley-svc",
        kafka_sasl_password="hunter2",
    )
    options = client_options(s, "broker:9093")
    assert options["bootstrap_servers"] == "broker:9093"
    assert options["security_protocol"] == "SASL_SSL"
    assert options["sasl_mechanism"] == "SCRAM-SHA-256"
    assert options["sasl_plain_username"] == "parley-svc"
    assert options["sasl_plain_password"] == "hunter2"
    assert options["ssl_context"] is not None


def test_sasl_plaintext_has_no_ssl_context(clean_env: pytest.MonkeyPatch) -> None:
    s = settings(
        kafka_security_protocol=SecurityProtocol.SASL_PLAINTEXT,
        kafka_sasl_username="u",
        kafka_sasl_password="p",
    )
    options = client_options(s, "broker:9092")
    assert "ssl_context" not in options
    assert options["sasl_mechanism"] == "SCRAM-SHA-512"


def test_plaintext_options(clean_env: pytest.MonkeyPatch) -> None:
    options = client_options(Settings(), "localhost:9092")
    assert options == {"bootstrap_servers": "localhost:9092", "security_protocol": "PLAINTEXT"}


def test_topic_configs_only_for_large_record_topics(clean_env: pytest.MonkeyPatch) -> None:
    s = settings(kafka_max_message_bytes=5_000_000)
    for channel in Channel:
        assert topic_configs(s, topics.raw_topic(channel)) == {"max.message.bytes": "5000000"}
    assert topic_configs(s, topics.FEEDBACK_REJECTED) == {"max.message.bytes": "5000000"}
    assert topic_configs(s, topics.FEEDBACK_RECEIVED) == {}
    assert topic_configs(s, topics.CASE_TRACKING) == {}


def test_event_record_is_structured_mode(now: datetime) -> None:
    result = normalise(
        Channel.APP, encode(raw_message(Channel.APP, "K-1")), received_at=now, max_body_bytes=65536, pii_key=b"test-key"
    )
    assert isinstance(result, Accepted)
    record = event_record("feedback.received", result.key, result.event)
    assert record.topic == "feedback.received"
    assert record.key == b"C-K-1"
    assert record.headers == [(CONTENT_TYPE_HEADER, STRUCTURED_CONTENT_TYPE.encode())]
    assert record.headers[0] == ("content-type", b"application/cloudevents+json; charset=utf-8")
    document = json.loads(record.value)
    assert document["specversion"] == "1.0"
    assert document["id"] == str(result.event.id)
    assert document["type"] == "com.parley.feedback.received.v1"
    assert document["data"]["channel_message_id"] == "K-1"


def test_event_record_key_is_utf8() -> None:
    event = CaseOpenedEvent(
        id="00000000-0000-4000-8000-000000000001",
        source="/t",
        time="2026-11-22T09:30:00Z",
        data=CaseOpened(
            case_id="00000000-0000-4000-8000-000000000002",
            status="opened",
            channel=Channel.APP,
            feedback_id="00000000-0000-4000-8000-000000000003",
            opened_at="2026-11-22T09:30:00Z",
        ),
    )
    assert event_record("case.tracking", "客户-1", event).key == "客户-1".encode()


# ---- dead letters ----


def inbound(headers: list[tuple[str, bytes]]) -> InboundMessage:
    return InboundMessage(
        topic="feedback.raw.app", partition=3, offset=1234, key=b"C-1", value=b"\xff\xfe raw", headers=headers
    )


def test_dead_letter_record(now: datetime) -> None:
    original = [("trace-id", b"abc"), ("parley-reason", b"old"), ("x-channel", b"app"), ("parley-detail", b"old")]
    record = dead_letter_record(
        inbound(original),
        target_topic="feedback.rejected",
        reason="invalid_json",
        detail="Expecting value at line 1 column 1",
        processor="intake",
        now=now,
    )
    assert isinstance(record, Record)
    assert record.topic == "feedback.rejected"
    assert record.key == b"C-1"
    assert record.value == b"\xff\xfe raw"
    assert record.headers == [
        ("parley-reason", b"invalid_json"),
        ("parley-detail", b"Expecting value at line 1 column 1"),
        ("parley-source-topic", b"feedback.raw.app"),
        ("parley-source-partition", b"3"),
        ("parley-source-offset", b"1234"),
        ("parley-rejected-at", b"2026-11-22T09:30:00Z"),
        ("parley-processor", b"intake"),
        ("parley-masked", b"false"),
        ("trace-id", b"abc"),
        ("x-channel", b"app"),
    ]


def test_dead_letter_detail_is_truncated(now: datetime) -> None:
    record = dead_letter_record(
        inbound([]), target_topic="deadletter.tracker", reason="boom", detail="é" * 1500, processor="tracker", now=now
    )
    detail = dict(record.headers)["parley-detail"].decode()
    assert detail == "é" * 1000


def test_dead_letter_reason_must_be_a_code(now: datetime) -> None:
    with pytest.raises(ValidationError):
        dead_letter_record(
            inbound([]), target_topic="deadletter.tracker", reason="Bad Reason", detail="", processor="t", now=now
        )


# ---- migrations ----


def test_migrations_are_ordered_unique_and_non_empty() -> None:
    migrations = load_migrations()
    versions = [m.version for m in migrations]
    assert versions == sorted(versions)
    assert len(set(versions)) == len(versions)
    assert versions[:2] == [1, 2]
    assert [m.name for m in migrations[:2]] == ["runtime", "tracker"]
    for migration in migrations:
        assert migration.name
        assert not migration.name.endswith(".sql")
        assert migration.sql.strip()


def test_migration_checksum_is_stable() -> None:
    first = load_migrations()
    again = load_migrations()
    assert [m.checksum for m in first] == [m.checksum for m in again]
    assert Migration(1, "a", "SELECT 1;").checksum == Migration(9, "b", "SELECT 1;").checksum
    assert Migration(1, "a", "SELECT 1;").checksum != Migration(1, "a", "SELECT 2;").checksum
    assert Migration(1, "a", "").checksum == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


# ---- errors ----


class _Many(BaseModel):
    a: int
    b: int
    c: int
    d: int
    e: int
    f: int
    g: int


class _Nested(BaseModel):
    inner: _Many


def test_describe_validation_error_lists_paths() -> None:
    with pytest.raises(ValidationError) as info:
        _Many.model_validate({"a": "x", "b": 1, "c": 1, "d": 1, "e": 1, "f": 1})
    assert (
        describe_validation_error(info.value)
        == "a: Input should be a valid integer, unable to parse string as an integer; g: Field required"
    )


def test_describe_validation_error_caps_at_five() -> None:
    with pytest.raises(ValidationError) as info:
        _Nested.model_validate({"inner": {}})
    description = describe_validation_error(info.value)
    parts = description.split("; ")
    assert parts[:5] == [f"inner.{name}: Field required" for name in "abcde"]
    assert parts[5] == "and 2 more"
    assert len(parts) == 6
    assert describe_validation_error(info.value, limit=7).count("Field required") == 7
    assert "more" not in describe_validation_error(info.value, limit=7)


def test_describe_validation_error_never_shows_values() -> None:
    with pytest.raises(ValidationError) as info:
        _Many.model_validate(dict.fromkeys("abcdefg", "13800138000 Zhang San"))
    assert "13800138000" not in describe_validation_error(info.value)
    assert "Zhang" not in describe_validation_error(info.value)


def test_describe_validation_error_on_root_value() -> None:
    with pytest.raises(ValidationError) as info:
        _Many.model_validate([1, 2])
    assert describe_validation_error(info.value).startswith("(body): ")


# ---- logs ----


def test_json_formatter_one_line_with_extra_fields() -> None:
    logger = logging.getLogger("parley.unit")
    record = logger.makeRecord(
        "parley.unit", logging.WARNING, __file__, 1, "case %s opened", ("x",), None, extra={"case_id": "x", "n": 2}
    )
    line = JsonFormatter().format(record)
    assert "\n" not in line
    entry = json.loads(line)
    assert entry["msg"] == "case x opened"
    assert entry["level"] == "warning"
    assert entry["logger"] == "parley.unit"
    assert entry["case_id"] == "x"
    assert entry["n"] == 2
    assert "args" not in entry
    assert "exc" not in entry


def test_json_formatter_includes_exception() -> None:
    try:
        raise ValueError("bad\nthing")
    except ValueError:
        record = logging.getLogger("parley.unit").makeRecord(
            "parley.unit", logging.ERROR, __file__, 1, "failed", (), sys.exc_info()
        )
    line = JsonFormatter().format(record)
    assert "\n" not in line
    entry = json.loads(line)
    assert "builtins.ValueError" in entry["exc"]
    # The message may quote the data, so it is withheld (services.runtime.logs); the frames' source lines stay.
    assert "ValueError: bad" not in entry["exc"]
    assert entry["exc"].endswith("builtins.ValueError (message withheld: it may quote the data)")
    assert entry["level"] == "error"
