"""Topic names: the one place that spells them."""

from __future__ import annotations

from schemas.channels import Channel

RAW_PREFIX = "feedback.raw."
FEEDBACK_RECEIVED = "feedback.received"
FEEDBACK_REJECTED = "feedback.rejected"
CASE_TRACKING = "case.tracking"
DEAD_LETTER_PREFIX = "deadletter."


def dead_letter_topic(processor: str) -> str:
    """Where a processor other than intake parks records it cannot handle (intake uses feedback.rejected)."""
    return f"{DEAD_LETTER_PREFIX}{processor}"


def raw_topic(channel: Channel) -> str:
    return f"{RAW_PREFIX}{channel.value}"


RAW_TOPICS: tuple[str, ...] = tuple(raw_topic(channel) for channel in Channel)

# Topics whose records can be as large as a channel may send (the rejected topic keeps originals).
LARGE_RECORD_TOPICS: frozenset[str] = frozenset({*RAW_TOPICS, FEEDBACK_REJECTED, dead_letter_topic("tracker")})

ALL_TOPICS: tuple[str, ...] = (
    *RAW_TOPICS,
    FEEDBACK_RECEIVED,
    FEEDBACK_REJECTED,
    CASE_TRACKING,
    dead_letter_topic("tracker"),
)
