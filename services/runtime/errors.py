"""The one error hierarchy. A handler's exception decides the message's fate:

- ``PermanentError``: the message can never succeed (bad input, a rule it breaks). It goes to
  the dead-letter topic with the reason in headers, and processing moves on.
- ``RetryableError``: the world is briefly wrong (database down, broker timeout). The same
  message is retried with capped exponential backoff, in place, so the partition keeps order;
  it is never acknowledged until it succeeds or turns out permanent.

Exceptions that are neither (a bug) are treated as permanent for the message, dead-lettered with
the exception type as reason, and logged with a traceback: one poison message must not stall a
partition forever, and nothing is dropped silently.
"""

from __future__ import annotations

from pydantic import ValidationError


class ParleyError(Exception):
    """Base of every error this project raises on purpose."""


class ConfigurationError(ParleyError):
    """Settings or data files are wrong; the process stops with this message at start."""


class PermanentError(ParleyError):
    """Retrying cannot help; dead-letter the message with ``reason``."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class RetryableError(ParleyError):
    """A transient failure; retry the same message after a backoff."""


def describe_validation_error(error: ValidationError, limit: int = 5) -> str:
    """Field paths and what is wrong with them; never the offending values (they may be personal)."""
    parts = []
    for item in error.errors(include_input=False, include_url=False)[:limit]:
        location = ".".join(str(part) for part in item["loc"]) or "(body)"
        parts.append(f"{location}: {item['msg']}")
    more = error.error_count() - limit
    if more > 0:
        parts.append(f"and {more} more")
    return "; ".join(parts)
