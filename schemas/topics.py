"""Topic names: the one place that spells them."""

from __future__ import annotations

from schemas.channels import Channel
from schemas.values import Queue

RAW_PREFIX = "feedback.raw."
FEEDBACK_RECEIVED = "feedback.received"
FEEDBACK_REJECTED = "feedback.rejected"
CASE_TRIAGED = "case.triaged"
ROUTED_PREFIX = "case.routed."
AGENT_ACTIONS = "agent.actions"
PLAN_REQUESTED = "plan.requested"
PLAN_PROPOSED = "plan.proposed"
CASE_TRACKING = "case.tracking"
SLA_ALERTS = "sla.alerts"
REPUTATION_ALERTS = "reputation.alerts"
DEAD_LETTER_PREFIX = "deadletter."

# Processors that dead-letter to a topic of their own (intake rejects to feedback.rejected).
DEAD_LETTERING_PROCESSORS = ("triage", "routing", "planner", "tracker", "sla")


def raw_topic(channel: Channel) -> str:
    return f"{RAW_PREFIX}{channel.value}"


def routed_topic(queue: Queue) -> str:
    return f"{ROUTED_PREFIX}{queue.value}"


def dead_letter_topic(processor: str) -> str:
    """Where a processor other than intake parks records it cannot handle."""
    return f"{DEAD_LETTER_PREFIX}{processor}"


RAW_TOPICS: tuple[str, ...] = tuple(raw_topic(channel) for channel in Channel)
ROUTED_TOPICS: tuple[str, ...] = tuple(routed_topic(queue) for queue in Queue)
DEAD_LETTER_TOPICS: tuple[str, ...] = tuple(dead_letter_topic(p) for p in DEAD_LETTERING_PROCESSORS)

# Topics whose records can be as large as a channel may send (rejected and dead letters keep originals).
LARGE_RECORD_TOPICS: frozenset[str] = frozenset({*RAW_TOPICS, FEEDBACK_REJECTED, *DEAD_LETTER_TOPICS})

ALL_TOPICS: tuple[str, ...] = (
    *RAW_TOPICS,
    FEEDBACK_RECEIVED,
    FEEDBACK_REJECTED,
    CASE_TRIAGED,
    *ROUTED_TOPICS,
    AGENT_ACTIONS,
    PLAN_REQUESTED,
    PLAN_PROPOSED,
    CASE_TRACKING,
    SLA_ALERTS,
    REPUTATION_ALERTS,
    *DEAD_LETTER_TOPICS,
)
