"""All configuration, read from the environment (prefix ``PARLEY_``) through pydantic-settings.

The two connection settings also answer to their conventional unprefixed names,
``KAFKA_BOOTSTRAP_SERVERS`` and ``DATABASE_URL``. Leave them unset and the embedded broker and
database start instead.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path

from pydantic import AliasChoices, Field, PositiveFloat, PositiveInt, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from schemas.values import Jurisdiction


class SecurityProtocol(StrEnum):
    PLAINTEXT = "PLAINTEXT"
    SSL = "SSL"
    SASL_PLAINTEXT = "SASL_PLAINTEXT"
    SASL_SSL = "SASL_SSL"


class SaslMechanism(StrEnum):
    PLAIN = "PLAIN"
    SCRAM_SHA_256 = "SCRAM-SHA-256"
    SCRAM_SHA_512 = "SCRAM-SHA-512"


class LogFormat(StrEnum):
    JSON = "json"
    TEXT = "text"


# Only for the embedded development setup: tokens made with it are not secret.
DEVELOPMENT_PII_KEY = "parley-development-key-not-for-production"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PARLEY_", extra="ignore", frozen=True)

    # ---- broker ----
    kafka_bootstrap_servers: str | None = Field(
        default=None,
        validation_alias=AliasChoices("PARLEY_KAFKA_BOOTSTRAP_SERVERS", "KAFKA_BOOTSTRAP_SERVERS"),
        description="host:port[,host:port]; unset starts the embedded broker.",
    )
    kafka_security_protocol: SecurityProtocol = SecurityProtocol.PLAINTEXT
    kafka_sasl_mechanism: SaslMechanism = SaslMechanism.SCRAM_SHA_512
    kafka_sasl_username: str | None = None
    kafka_sasl_password: SecretStr | None = None
    kafka_ssl_cafile: Path | None = None
    kafka_ssl_certfile: Path | None = None
    kafka_ssl_keyfile: Path | None = None
    kafka_partitions: PositiveInt = Field(default=6, description="Partitions of every topic we create.")
    kafka_replication_factor: PositiveInt = 1
    kafka_session_timeout_seconds: PositiveFloat | None = Field(
        default=None, description="Consumer-group session timeout; unset: 2 s embedded, 10 s on Kafka."
    )
    kafka_heartbeat_interval_seconds: PositiveFloat | None = Field(
        default=None, description="Unset: a quarter of the session timeout, at most 3 s."
    )
    kafka_fetch_max_wait_ms: PositiveInt | None = Field(
        default=None,
        description="Longest the broker holds a fetch that finds nothing; unset: 100 ms embedded (it answers a "
        "waiting fetch only when the wait ends, so this is the latency of an idle hop), 500 ms on Kafka.",
    )
    kafka_max_message_bytes: PositiveInt = Field(
        default=10 * 1024 * 1024, description="Largest record on raw and rejected topics."
    )
    kafka_topic_prefix: str = Field(default="", description="Prepended to every topic name (shared clusters).")

    # ---- database ----
    database_url: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices("PARLEY_DATABASE_URL", "DATABASE_URL"),
        description="postgresql://…; unset starts the embedded PostgreSQL.",
    )
    database_pool_min: PositiveInt = 1
    database_pool_max: PositiveInt = 5

    # ---- local state ----
    data_dir: Path = Field(default=Path(".parley"), description="Embedded database files and run logs.")

    # ---- personal data ----
    pii_token_key: SecretStr = Field(
        default=SecretStr(DEVELOPMENT_PII_KEY),
        description="Key of the keyed hash that makes personal-data tokens; set a long random secret in production.",
    )

    # ---- processing ----
    intake_max_body_bytes: PositiveInt = Field(
        default=256 * 1024, description="Raw messages larger than this are rejected as too_large."
    )
    batch_max_records: PositiveInt = Field(
        default=500, description="Most records a processor handles in one database transaction."
    )
    batch_max_wait_seconds: PositiveFloat = Field(
        default=0.05, description="Longest a processor waits to fill a batch before handling what it has."
    )
    retry_initial_backoff_seconds: PositiveFloat = 0.2
    retry_max_backoff_seconds: PositiveFloat = 30.0
    outbox_batch_size: PositiveInt = 500
    outbox_poll_interval_seconds: PositiveFloat = 0.5

    # ---- tracker ----
    tracker_jurisdiction: Jurisdiction = Field(
        default=Jurisdiction.CN, description="Whose complaint rules apply to the cases this tracker opens."
    )
    tracker_follow_up_after_seconds: PositiveFloat = Field(
        default=7 * 24 * 3600, description="How long after resolution the customer is asked how it went."
    )
    tracker_close_after_seconds: PositiveFloat = Field(
        default=14 * 24 * 3600,
        description="How long after the follow-up request (or its answer) a resolved case closes by itself.",
    )
    tracker_plan_broken_after_missed: PositiveInt = Field(
        default=3, description="Missed, unpaid instalments after which an active plan is broken."
    )
    tracker_timer_poll_seconds: PositiveFloat = Field(
        default=1.0, description="How often due tracker timers are polled."
    )
    tracker_timer_batch: PositiveInt = Field(default=500, description="Most due timers fired in one transaction.")

    # ---- routing ----
    routing_rules_path: Path = Field(
        default=Path("deploy/config/routing.yaml"),
        description="Queues, filters and targets, overflow, merge and public-opinion rules (relative: from the "
        "working directory, else the project root).",
    )
    routing_timer_poll_seconds: PositiveFloat = Field(
        default=1.0, description="How often routing looks for cases nobody accepted in time (escalation)."
    )
    routing_timer_batch: PositiveInt = Field(default=200, description="Most escalations made in one transaction.")

    # ---- planner ----
    plan_policy_path: Path = Field(
        default=Path("deploy/config/plan-policy.yaml"),
        description="Plan caps per product and jurisdiction, approval tiers, affordability and the bank's view "
        "(relative: from the working directory, else the project root).",
    )

    # ---- sla ----
    sla_policies_path: Path = Field(
        default=Path("deploy/config/sla-policies.yaml"),
        description="SLA policies, their clocks and business calendars (relative: from the working directory, "
        "else the project root).",
    )
    sla_poll_interval_seconds: PositiveFloat = Field(
        default=0.25, description="Longest the SLA poller waits between looks for due warnings, breaches, escalations."
    )
    sla_poll_batch: PositiveInt = Field(default=500, description="Most due SLA clocks fired in one transaction.")
    sla_alertmanager_url: str | None = Field(
        default=None,
        description="Alertmanager base URL, e.g. http://alertmanager:9093: SLA warnings, breaches and escalations "
        "are posted to its /api/v2/alerts. Unset: no webhook.",
    )

    # ---- observability ----
    log_level: str = "INFO"
    profile_dir: Path | None = Field(
        default=None,
        description="When set, each worker runs under cProfile and writes <processor>-<pid>.prof here as it stops "
        "(to see where a processor's time goes under load; costs some speed).",
    )
    log_format: LogFormat = LogFormat.JSON
    http_port: int | None = Field(
        default=None,
        ge=0,
        le=65535,
        description="Port of a worker's /healthz, /readyz and /metrics; unset: no HTTP server; 0: any free port "
        "(logged). `parley run` treats it as a base port: each worker it starts takes the next one.",
    )
    http_host: str = Field(
        default="127.0.0.1", description="Address the health and metrics server binds; 0.0.0.0 in a container."
    )

    @property
    def uses_embedded_broker(self) -> bool:
        return not self.kafka_bootstrap_servers

    def session_timeout_seconds(self) -> float:
        if self.kafka_session_timeout_seconds is not None:
            return self.kafka_session_timeout_seconds
        # The embedded broker accepts short sessions, which make workers ready in seconds;
        # Kafka's default group.min.session.timeout.ms rejects anything under 6 s.
        return 2.0 if self.uses_embedded_broker else 10.0

    def heartbeat_interval_seconds(self) -> float:
        if self.kafka_heartbeat_interval_seconds is not None:
            return self.kafka_heartbeat_interval_seconds
        return min(self.session_timeout_seconds() / 4, 3.0)

    def fetch_max_wait_ms(self) -> int:
        if self.kafka_fetch_max_wait_ms is not None:
            return self.kafka_fetch_max_wait_ms
        return 100 if self.uses_embedded_broker else 500

    def pii_key(self) -> bytes:
        return self.pii_token_key.get_secret_value().encode()

    @property
    def uses_development_pii_key(self) -> bool:
        return self.pii_token_key.get_secret_value() == DEVELOPMENT_PII_KEY

    def topic(self, name: str) -> str:
        return f"{self.kafka_topic_prefix}{name}"
