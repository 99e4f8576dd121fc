"""Every event type on every topic: its model, topic, key, who publishes it and who reads it.

The JSON Schemas, the AsyncAPI document, the examples' tests and ``parley schemas validate`` are
all generated from or checked against this one list.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from pydantic import BaseModel

from schemas import agent, reputation, sla, topics, tracking
from schemas.base import ConsumedModel
from schemas.channels import RAW_MODELS, Channel
from schemas.envelope import CloudEventAttributes
from schemas.feedback import DeadLetterHeaders, FeedbackReceivedEvent
from schemas.plans import PlanProposedEvent, PlanRequestedEvent
from schemas.routing import CaseRoutedEvent
from schemas.triage import CaseTriagedEvent
from schemas.values import Queue

TYPE_NAMESPACE = "com.parley."
CHANNEL_SYSTEM = "{channel} channel system"


@dataclass(frozen=True)
class TopicSpec:
    address: str
    """The topic name; ``{queue}`` or ``{processor}`` stand for one topic per value."""
    description: str
    key: str
    publishers: tuple[str, ...]
    consumers: tuple[str, ...]
    value: Literal["cloudevent", "raw_json", "original_bytes"]
    parameters: dict[str, tuple[str, ...]] = field(default_factory=dict)


@dataclass(frozen=True)
class EventSpec:
    name: str
    """The event type (the CloudEvents ``type``) and the name of its schema and example files."""
    model: type[BaseModel]
    topics: tuple[str, ...]
    """Topic addresses (as in TopicSpec) that carry it."""
    summary: str

    @property
    def consumed(self) -> bool:
        """Published by others, read tolerantly: unknown fields are ignored, not errors."""
        return issubclass(self.model, ConsumedModel)

    @property
    def is_cloudevent(self) -> bool:
        return issubclass(self.model, CloudEventAttributes)


CASE_KEY = "The case id (UUID text), so one case's events stay on one partition, in order."

TOPICS: tuple[TopicSpec, ...] = (
    *(
        TopicSpec(
            address=topics.raw_topic(channel),
            description=f"Raw feedback from the {channel.value} channel, as its system sends it.",
            key="The channel's choice; the customer id is best (one customer's messages stay in order).",
            publishers=(CHANNEL_SYSTEM.format(channel=channel.value),),
            consumers=("intake",),
            value="raw_json",
        )
        for channel in Channel
    ),
    TopicSpec(
        address=topics.FEEDBACK_RECEIVED,
        description="Every accepted message, normalised into one canonical event, once per channel message id.",
        key="The customer reference, else '<channel>:<message_id>' for an anonymous message.",
        publishers=("intake",),
        consumers=("triage",),
        value="cloudevent",
    ),
    TopicSpec(
        address=topics.FEEDBACK_REJECTED,
        description="Every raw message intake could not accept: the original key, value and headers, with the reason "
        "and the source topic, partition and offset in parley-* headers. Personal data in the value is masked "
        "(parley-masked: true); the exact original is kept in the vault under parley-original-ref.",
        key="The original record's key.",
        publishers=("intake",),
        consumers=("channel teams", "on-call"),
        value="original_bytes",
    ),
    TopicSpec(
        address=topics.CASE_TRIAGED,
        description="Category, priority, risk flags and sentiment of each feedback, with the reasons.",
        key="The customer reference, else the feedback's key (the case may not exist yet).",
        publishers=("triage",),
        consumers=("routing",),
        value="cloudevent",
    ),
    TopicSpec(
        address=topics.ROUTED_PREFIX + "{queue}",
        description="Cases for one agent queue, with the personal data that queue may see and the routing reasons.",
        key=CASE_KEY,
        publishers=("routing",),
        consumers=("agent desktops", "tracker"),
        value="cloudevent",
        parameters={"queue": tuple(queue.value for queue in Queue)},
    ),
    TopicSpec(
        address=topics.AGENT_ACTIONS,
        description="What agents did on a case (contact, offers, the customer's answers, resolution, follow-up, "
        "escalation, clock pauses and extensions); payments are reported here by the collections system.",
        key=CASE_KEY,
        publishers=("agent desktops", "collections system"),
        consumers=("tracker", "routing", "sla"),
        value="cloudevent",
    ),
    TopicSpec(
        address=topics.PLAN_REQUESTED,
        description="A request for repayment or settlement proposals, with the debt and the customer's means.",
        key=CASE_KEY,
        publishers=("tracker",),
        consumers=("planner",),
        value="cloudevent",
    ),
    TopicSpec(
        address=topics.PLAN_PROPOSED,
        description="Ranked proposals with their schedules, affordability, the bank's view and the approval tier.",
        key=CASE_KEY,
        publishers=("planner",),
        consumers=("agent desktops", "tracker"),
        value="cloudevent",
    ),
    TopicSpec(
        address=topics.CASE_TRACKING,
        description="The life of each case, one event per step, each with the status after it.",
        key=CASE_KEY,
        publishers=("tracker",),
        consumers=("sla", "agent desktops", "reporting"),
        value="cloudevent",
    ),
    TopicSpec(
        address=topics.SLA_ALERTS,
        description="SLA clocks (started, paused, resumed, met) and the alerts on-call acts on (warning, breach, "
        "escalation).",
        key=CASE_KEY,
        publishers=("sla",),
        consumers=("on-call alerting", "supervisors"),
        value="cloudevent",
    ),
    TopicSpec(
        address=topics.REPUTATION_ALERTS,
        description="Public-opinion alerts: a social post about a case is spreading (virality score over a "
        "threshold, from reach, repost velocity against the account's or topic's baseline, sentiment and threats).",
        key=CASE_KEY,
        publishers=("routing",),
        consumers=("on-call alerting", "PR desk", "supervisors"),
        value="cloudevent",
    ),
    TopicSpec(
        address=topics.DEAD_LETTER_PREFIX + "{processor}",
        description="Records a processor could not handle: the original, unchanged, with the reason in parley-* "
        "headers.",
        key="The original record's key.",
        publishers=topics.DEAD_LETTERING_PROCESSORS,
        consumers=("on-call",),
        value="original_bytes",
        parameters={"processor": topics.DEAD_LETTERING_PROCESSORS},
    ),
)


def _type_of(model: type[BaseModel]) -> str:
    default = model.model_fields["type"].default
    assert isinstance(default, str)
    return default


def _summary(model: type[BaseModel]) -> str:
    """The first line of the data model's docstring, else its name in words."""
    data = model.model_fields["data"].annotation
    doc = getattr(data, "__doc__", None) or ""
    if doc.strip():
        return doc.strip().splitlines()[0]
    name = getattr(data, "__name__", "event")
    return "".join(f" {c.lower()}" if c.isupper() else c for c in name).strip().capitalize()


def _cloudevents(models: list[type[BaseModel]], topic: str) -> list[EventSpec]:
    return [EventSpec(_type_of(m), m, (topic,), _summary(m)) for m in models]


def _event_models(module: object) -> list[type[BaseModel]]:
    """The module's event classes, in definition order (pydantic's parametrised generics excluded)."""
    return [
        value
        for value in vars(module).values()
        if isinstance(value, type)
        and issubclass(value, CloudEventAttributes)
        and isinstance(value.model_fields.get("type") and value.model_fields["type"].default, str)
        and "[" not in value.__name__
    ]


EVENTS: tuple[EventSpec, ...] = (
    *(
        EventSpec(
            f"{TYPE_NAMESPACE}raw.{channel.value}.v1",
            model,
            (topics.raw_topic(channel),),
            f"A raw {channel.value} message",
        )
        for channel, model in RAW_MODELS.items()
    ),
    EventSpec(
        _type_of(FeedbackReceivedEvent),
        FeedbackReceivedEvent,
        (topics.FEEDBACK_RECEIVED,),
        "Canonical feedback from any channel",
    ),
    EventSpec(
        f"{TYPE_NAMESPACE}dead_letter.headers.v1",
        DeadLetterHeaders,
        (topics.FEEDBACK_REJECTED, topics.DEAD_LETTER_PREFIX + "{processor}"),
        "The parley-* headers of a rejected or dead-lettered record (the value is the original bytes)",
    ),
    EventSpec(_type_of(CaseTriagedEvent), CaseTriagedEvent, (topics.CASE_TRIAGED,), "A feedback, triaged"),
    EventSpec(_type_of(CaseRoutedEvent), CaseRoutedEvent, (topics.ROUTED_PREFIX + "{queue}",), "A case for a queue"),
    *_cloudevents(_event_models(agent), topics.AGENT_ACTIONS),
    EventSpec(_type_of(PlanRequestedEvent), PlanRequestedEvent, (topics.PLAN_REQUESTED,), "Proposals wanted"),
    EventSpec(_type_of(PlanProposedEvent), PlanProposedEvent, (topics.PLAN_PROPOSED,), "Ranked proposals"),
    *_cloudevents(_event_models(tracking), topics.CASE_TRACKING),
    *_cloudevents(_event_models(sla), topics.SLA_ALERTS),
    *_cloudevents(_event_models(reputation), topics.REPUTATION_ALERTS),
)

EVENTS_BY_NAME: dict[str, EventSpec] = {spec.name: spec for spec in EVENTS}
TOPICS_BY_ADDRESS: dict[str, TopicSpec] = {topic.address: topic for topic in TOPICS}


def events_on(topic: TopicSpec) -> list[EventSpec]:
    return [spec for spec in EVENTS if topic.address in spec.topics]
