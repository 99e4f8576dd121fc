"""Resolve where the broker and database are: configured ones, or embedded ones started here."""

from __future__ import annotations

import cProfile
import logging
import os
import tempfile
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import ExitStack, asynccontextmanager, contextmanager
from pathlib import Path

from services.runtime.db import scratch_database
from services.runtime.embedded import start_embedded_broker, start_embedded_database
from services.runtime.logs import configure_logging
from services.runtime.settings import Settings
from services.runtime.worker import Connections, ProcessorApp, run_worker

log = logging.getLogger(__name__)


@contextmanager
def provide_connections(settings: Settings) -> Iterator[Connections]:
    """Yield connections; embedded parts started here stop when the block ends."""
    with ExitStack() as stack:
        if settings.kafka_bootstrap_servers:
            bootstrap = settings.kafka_bootstrap_servers
        else:
            broker = start_embedded_broker(settings.data_dir / "logs" / "broker.log")
            stack.callback(broker.stop)
            bootstrap = broker.bootstrap_servers
        if settings.database_url is not None:
            database_url = settings.database_url.get_secret_value()
        else:
            # The in-memory broker forgets every record when it stops; a database that remembered
            # what it did with them would disagree with the next broker. Start both afresh.
            fresh = settings.uses_embedded_broker
            database = start_embedded_database(settings.data_dir / "pgdata", fresh=fresh)
            stack.callback(database.stop)
            database_url = database.url
        yield Connections(bootstrap_servers=bootstrap, database_url=database_url)


@asynccontextmanager
async def bench_database(label: str) -> AsyncIterator[str]:
    """A database of a benchmark's own, dropped afterwards: on the configured server, else on an embedded one
    started for it and removed with it. Yields its URL."""
    configured = Settings().database_url
    if configured is not None:
        async with scratch_database(configured.get_secret_value(), label) as url:
            yield url
        return
    with tempfile.TemporaryDirectory(prefix="parley-bench-") as directory:
        database = start_embedded_database(Path(directory) / "pg", delete_on_stop=True)
        try:
            async with scratch_database(database.url, label) as url:
                yield url
        finally:
            database.stop()


def serve(create_app: Callable[[Settings, Connections], ProcessorApp]) -> None:
    """Entry point of every ``python -m services.<processor>``: settings, logging, connections, worker."""
    settings = Settings()
    configure_logging(settings)
    with provide_connections(settings) as connections:
        app = create_app(settings, connections)
        if settings.profile_dir is None:
            run_worker(app)
            return
        settings.profile_dir.mkdir(parents=True, exist_ok=True)
        profiler = cProfile.Profile()
        profiler.enable()
        try:
            run_worker(app)
        finally:
            profiler.disable()
            profiler.dump_stats(settings.profile_dir / f"{app.processor}-{os.getpid()}.prof")
