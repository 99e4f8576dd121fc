"""The one-shot step before workers start: create the topics of deploy/topics.yaml, apply the migrations.

    python deploy/prepare.py [--topics FILE] [--max-replication-factor N] [--skip-database] [--dry-run]

Reads the same settings as the workers (PARLEY_* and the two unprefixed connection variables),
and needs a real broker and database: it starts no embedded part. Safe to run again and by
several pods at once: an existing topic is kept (a differing partition count is reported, not
changed) and migrations run once each under an advisory lock. Exit 0 when everything is in
place, 1 when a topic differs from the file, 2 on a configuration error.
"""

# ruff: noqa: T201 - a command-line step: it reports on stdout

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from schemas import topics
from services.runtime.db import connect_pool
from services.runtime.errors import ConfigurationError
from services.runtime.kafka import TOPIC_ALREADY_EXISTS, client_options
from services.runtime.settings import Settings

DEFAULT_TOPICS_FILE = Path(__file__).with_name("topics.yaml")
PROCESSORS = ("intake", "triage", "routing", "planner", "tracker", "sla")


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    replication_factor: int
    configs: dict[str, str] = field(default_factory=dict)
    read_by: tuple[str, ...] = ()


def _positive(value: Any, where: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ConfigurationError(f"{where}: expected a whole number >= 1; got {value!r}")
    return value


def _configs(value: Any, where: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise ConfigurationError(f"{where}: expected a mapping of config names to quoted strings; got {value!r}")
    return dict(value)


def load_topic_plan(path: Path = DEFAULT_TOPICS_FILE) -> list[TopicSpec]:
    """Every topic of the file, defaults applied, checked against schemas.topics.ALL_TOPICS (both ways)."""
    document = yaml.safe_load(path.read_text(encoding="utf-8"))
    if not isinstance(document, dict) or not isinstance(document.get("topics"), dict):
        raise ConfigurationError(f"{path}: expected `defaults:` and `topics:` mappings")
    defaults = document.get("defaults") or {}
    default_partitions = _positive(defaults.get("partitions"), f"{path}: defaults.partitions")
    default_replication = _positive(defaults.get("replication_factor"), f"{path}: defaults.replication_factor")
    default_configs = _configs(defaults.get("configs"), f"{path}: defaults.configs")
    specs = []
    for name, entry in document["topics"].items():
        where = f"{path}: topics.{name}"
        entry = entry or {}
        if not isinstance(entry, dict):
            raise ConfigurationError(f"{where}: expected a mapping")
        unknown = set(entry) - {"partitions", "replication_factor", "configs", "read_by"}
        if unknown:
            raise ConfigurationError(f"{where}: unknown keys {sorted(unknown)}")
        read_by = tuple(entry.get("read_by") or ())
        strangers = [p for p in read_by if p not in PROCESSORS]
        if strangers:
            raise ConfigurationError(f"{where}.read_by: unknown processors {strangers}; known: {list(PROCESSORS)}")
        specs.append(
            TopicSpec(
                name=name,
                partitions=_positive(entry.get("partitions", default_partitions), f"{where}.partitions"),
                replication_factor=_positive(
                    entry.get("replication_factor", default_replication), f"{where}.replication_factor"
                ),
                configs={**default_configs, **_configs(entry.get("configs"), f"{where}.configs")},
                read_by=read_by,
            )
        )
    named = {spec.name for spec in specs}
    missing = [name for name in topics.ALL_TOPICS if name not in named]
    extra = sorted(named - set(topics.ALL_TOPICS))
    if missing or extra:
        raise ConfigurationError(
            f"{path} must list exactly schemas.topics.ALL_TOPICS; missing {missing}, not a topic of ours {extra}"
        )
    return specs


def cap_replication(specs: Sequence[TopicSpec], most: int) -> list[TopicSpec]:
    """For a cluster of ``most`` brokers (a laptop has one): replication and min.insync.replicas fit in it."""
    capped = []
    for spec in specs:
        replication = min(spec.replication_factor, most)
        configs = dict(spec.configs)
        if "min.insync.replicas" in configs:
            configs["min.insync.replicas"] = str(min(int(configs["min.insync.replicas"]), max(replication - 1, 1)))
        capped.append(TopicSpec(spec.name, spec.partitions, replication, configs, spec.read_by))
    return capped


async def create_topics(settings: Settings, bootstrap_servers: str, specs: Sequence[TopicSpec]) -> list[str]:
    """Create what is missing; returns problems with what exists (a partition count that differs)."""
    admin = AIOKafkaAdminClient(**client_options(settings, bootstrap_servers))
    await admin.start()
    problems: list[str] = []
    try:
        response = await admin.create_topics(
            [
                NewTopic(
                    name=settings.topic(spec.name),
                    num_partitions=spec.partitions,
                    replication_factor=spec.replication_factor,
                    topic_configs=spec.configs,
                )
                for spec in specs
            ]
        )
        created = existing = 0
        for topic_name, error_code, *_ in response.topic_errors:
            if error_code == 0:
                created += 1
            elif error_code == TOPIC_ALREADY_EXISTS:
                existing += 1
            else:
                raise ConfigurationError(f"cannot create topic {topic_name}: error code {error_code}")
        wanted = {settings.topic(spec.name): spec.partitions for spec in specs}
        for entry in await admin.describe_topics(list(wanted)):
            name = entry.get("topic") or entry.get("name")
            if name in wanted and len(entry.get("partitions") or []) != wanted[name]:
                problems.append(
                    f"topic {name} has {len(entry['partitions'])} partitions; {wanted[name]} in the topics file"
                )
        print(f"Topics: {created} created, {existing} already there, {len(problems)} differing.")
    finally:
        await admin.close()
    return problems


async def migrate(database_url: str) -> None:
    pool = await connect_pool(database_url, min_size=1, max_size=1)  # applies what is missing, under a lock
    await pool.close()
    print("Database: migrations applied.")


async def prepare(args: argparse.Namespace, settings: Settings) -> int:
    specs = load_topic_plan(args.topics)
    if args.max_replication_factor:
        specs = cap_replication(specs, args.max_replication_factor)
    if args.dry_run:
        for spec in specs:
            configs = ", ".join(f"{k}={v}" for k, v in sorted(spec.configs.items()))
            print(f"{settings.topic(spec.name)}: {spec.partitions} partitions x{spec.replication_factor} ({configs})")
        return 0
    if settings.kafka_bootstrap_servers is None:
        raise ConfigurationError("set KAFKA_BOOTSTRAP_SERVERS: prepare works on a real broker only")
    problems = await create_topics(settings, settings.kafka_bootstrap_servers, specs)
    for problem in problems:
        print(f"  {problem}")
    if not args.skip_database:
        if settings.database_url is None:
            raise ConfigurationError("set DATABASE_URL (or pass --skip-database)")
        await migrate(settings.database_url.get_secret_value())
    return 1 if problems else 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--topics", type=Path, default=DEFAULT_TOPICS_FILE, help="the topic definitions")
    parser.add_argument(
        "--max-replication-factor", type=int, default=None, help="cap replication (a one-broker laptop: 1)"
    )
    parser.add_argument("--skip-database", action="store_true", help="topics only")
    parser.add_argument("--dry-run", action="store_true", help="print what would be created and stop")
    args = parser.parse_args(argv)
    try:
        return asyncio.run(prepare(args, Settings()))
    except ConfigurationError as exc:
        print(f"prepare: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
