"""Routing rules as data (deploy/config/routing.yaml): queues, filters with targets, overflow, merge, public opinion.

The shape follows Twilio TaskRouter workflows: ordered ``filters``, the first whose ``match`` holds
wins; each has ``targets`` ``[{queue, priority, timeout}]``: the case goes to the first target and,
when nobody accepts it within that target's timeout, to the next one; ``default_filter`` takes what
no filter matched. A mistake stops the processor at start with the file, the line and the field.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, PositiveFloat, PositiveInt, ValidationError

from schemas.channels import Channel
from schemas.feedback import Language
from schemas.triage import SentimentLabel
from schemas.values import Category, Flag, PiiKind, Priority, Queue
from services.runtime.errors import ConfigurationError

PROJECT_ROOT = Path(__file__).resolve().parents[2]

_DURATION = re.compile(r"(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?")


def _seconds(value: object) -> object:
    """A duration as seconds: a whole number, or text such as 90s, 15m, 4h, 1h30m, 2d."""
    if isinstance(value, bool):
        raise ValueError("a duration is a number of seconds or text such as 15m, 4h, 1h30m")
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        match = _DURATION.fullmatch(value.strip())
        if match and any(match.groups()):
            days, hours, minutes, seconds = (int(part or 0) for part in match.groups())
            return ((days * 24 + hours) * 60 + minutes) * 60 + seconds
    raise ValueError(f"a duration is a number of seconds or text such as 15m, 4h, 1h30m; got {value!r}")


Seconds = Annotated[PositiveInt, BeforeValidator(_seconds)]


def _as_list(value: object) -> object:
    return [value] if isinstance(value, str) else value


def _no_repeats(value: object) -> object:
    if isinstance(value, list) and len({str(item) for item in value}) != len(value):
        raise ValueError("each value may appear only once")
    return value


def _listing(value: object) -> object:
    return _no_repeats(_as_list(value))


Listed = BeforeValidator(_listing)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CaseView(_Strict):
    """What a rule sees of a triaged feedback (or of a case, for the AI lane's conditions)."""

    category: Category
    channel: Channel
    priority: Priority
    sentiment: SentimentLabel
    language: Language
    flags: frozenset[Flag]
    human_required: bool


class Match(_Strict):
    """Conditions that must all hold; a list means "any of these"; an empty match holds for every case."""

    category: Annotated[list[Category], Listed] | None = None
    channel: Annotated[list[Channel], Listed] | None = None
    priority: Annotated[list[Priority], Listed] | None = None
    sentiment: Annotated[list[SentimentLabel], Listed] | None = None
    language: Annotated[list[Language], Listed] | None = None
    flags_any: Annotated[list[Flag], Listed] | None = Field(default=None, description="At least one of these flags")
    flags_none: Annotated[list[Flag], Listed] | None = Field(default=None, description="None of these flags")
    no_flags: bool | None = Field(default=None, description="true: no flag at all; false: at least one")
    human_required: bool | None = None

    def holds(self, case: CaseView) -> bool:
        return (
            (self.category is None or case.category in self.category)
            and (self.channel is None or case.channel in self.channel)
            and (self.priority is None or case.priority in self.priority)
            and (self.sentiment is None or case.sentiment in self.sentiment)
            and (self.language is None or case.language in self.language)
            and (self.flags_any is None or not case.flags.isdisjoint(self.flags_any))
            and (self.flags_none is None or case.flags.isdisjoint(self.flags_none))
            and (self.no_flags is None or self.no_flags == (not case.flags))
            and (self.human_required is None or self.human_required == case.human_required)
        )

    def describe(self) -> str:
        parts = []
        for name, value in self.model_dump(exclude_none=True, mode="json").items():
            shown = ", ".join(value) if isinstance(value, list) else str(value).lower()
            parts.append(f"{name} {shown}")
        return "; ".join(parts) or "every case"


class Target(_Strict):
    queue: Queue
    priority: Priority | None = Field(
        default=None, description="The case has at least this priority in this queue (never lowered)"
    )
    timeout: Seconds = Field(description="Accept within this, else the next target (seconds, or 15m, 4h)")


class Filter(_Strict):
    name: Annotated[str, Field(min_length=1, max_length=80)]
    description: str | None = None
    match: Match = Field(default_factory=Match)
    targets: list[Target] = Field(min_length=1)


class QueueSettings(_Strict):
    backlog_limit: PositiveInt = Field(description="Unaccepted cases it holds before low-priority ones overflow")
    visible_pii: Annotated[list[PiiKind], BeforeValidator(_no_repeats)] = Field(
        default_factory=list,
        description="Personal-data kinds shown in clear to this queue (revealed with an audit row)",
    )


class Overflow(_Strict):
    lane: Queue = Queue.AI_ASSISTANT
    timeout: Seconds = Field(description="If the AI lane does not take it by then, back to the queue it came from")
    allow: Match = Field(description="Cases that may overflow; P1 and human_required never do, whatever this says")


class Merge(_Strict):
    problem_groups: dict[str, Annotated[list[Category], BeforeValidator(_no_repeats)]] = Field(
        description="Categories that are one problem for merging; a category in no group is a group of its own"
    )


class Engagement(_Strict):
    reposts: float = Field(ge=0)
    comments: float = Field(ge=0)
    likes: float = Field(ge=0)


class ViralityWeights(_Strict):
    reach_per_decade: float = Field(ge=0, description="Points per tenfold audience (followers + weighted engagement)")
    engagement: Engagement
    velocity_per_doubling: float = Field(ge=0, description="Points per doubling of 1 + velocity/baseline")
    velocity_cap: float = Field(ge=0, description="Most points velocity can add")
    negative_sentiment: float = Field(ge=0)
    threats: dict[Flag, float]


class Baseline(_Strict):
    default_reposts_per_hour: PositiveFloat
    min_observations: PositiveInt = Field(description="Observations before an account's or topic's own is used")
    smoothing: float = Field(gt=0, le=1, description="Weight of a new observation in the moving average")
    min_elapsed_minutes: PositiveFloat = Field(description="Shortest time a repost rate is measured over")


class PublicOpinion(_Strict):
    threshold: PositiveFloat = Field(description="A post at or over this score brings the PR queue in and alerts")
    critical_threshold: PositiveFloat = Field(description="A second alert, critical, at or over this score")
    targets: list[Target] = Field(min_length=1, description="Where the PR copy of the case goes, and escalates")
    weights: ViralityWeights
    baseline: Baseline


class DefaultFilter(_Strict):
    queue: Queue
    priority: Priority | None = None
    timeout: Seconds

    def as_filter(self) -> Filter:
        return Filter(
            name=DEFAULT_FILTER_NAME, targets=[Target(queue=self.queue, priority=self.priority, timeout=self.timeout)]
        )


DEFAULT_FILTER_NAME = "default"
PUBLIC_OPINION_FILTER_NAME = "public_opinion"


class RoutingRules(_Strict):
    version: Annotated[str, Field(min_length=1, max_length=100)]
    queues: dict[Queue, QueueSettings]
    filters: list[Filter]
    default_filter: DefaultFilter
    overflow: Overflow
    merge: Merge
    public_opinion: PublicOpinion

    def filter_named(self, name: str) -> Filter | None:
        if name == DEFAULT_FILTER_NAME:
            return self.default_filter.as_filter()
        if name == PUBLIC_OPINION_FILTER_NAME:
            return Filter(name=PUBLIC_OPINION_FILTER_NAME, targets=self.public_opinion.targets)
        return next((f for f in self.filters if f.name == name), None)

    def problem_group(self, category: Category) -> str:
        for name, categories in self.merge.problem_groups.items():
            if category in categories:
                return name
        return category.value


def semantic_errors(rules: RoutingRules) -> list[tuple[tuple[str | int, ...], str]]:
    """Mistakes a schema cannot see, each with the path of the field at fault."""
    errors: list[tuple[tuple[str | int, ...], str]] = []
    missing = [queue.value for queue in Queue if queue not in rules.queues]
    if missing:
        errors.append((("queues",), f"every queue needs backlog_limit and visible_pii; missing: {', '.join(missing)}"))
    seen: dict[str, int] = {}
    for index, rule in enumerate(rules.filters):
        if rule.name in (DEFAULT_FILTER_NAME, PUBLIC_OPINION_FILTER_NAME):
            errors.append((("filters", index, "name"), f"{rule.name!r} is reserved"))
        if rule.name in seen:
            errors.append((("filters", index, "name"), f"{rule.name!r} is also the name of filter {seen[rule.name]}"))
        seen.setdefault(rule.name, index)
    if rules.default_filter.queue == rules.overflow.lane:
        errors.append((("default_filter", "queue"), "the default filter must reach people: it cannot be the AI lane"))
    allow = rules.overflow.allow
    if allow.priority is None or Priority.P1 in allow.priority:
        errors.append((("overflow", "allow", "priority"), "list the priorities that may overflow; P1 never overflows"))
    if allow.human_required:
        errors.append((("overflow", "allow", "human_required"), "a case that needs a person never overflows"))
    grouped: dict[Category, str] = {}
    for group, categories in rules.merge.problem_groups.items():
        for category in categories:
            if category in grouped:
                errors.append(
                    (("merge", "problem_groups", group), f"{category.value} is already in group {grouped[category]}")
                )
            grouped[category] = group
    opinion = rules.public_opinion
    if opinion.critical_threshold < opinion.threshold:
        errors.append((("public_opinion", "critical_threshold"), "must be at least the threshold"))
    if opinion.targets[0].queue == rules.overflow.lane:
        errors.append((("public_opinion", "targets", 0, "queue"), "public opinion needs people, not the AI lane"))
    return errors


def _node_line(root: yaml.Node | None, loc: tuple[str | int, ...]) -> int | None:
    """The 1-based line of the deepest YAML node on ``loc`` (pydantic's error location)."""
    node = root
    line = None if node is None else node.start_mark.line + 1
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            if part == "[key]":
                break
            found = next(
                ((k, v) for k, v in node.value if isinstance(k, yaml.ScalarNode) and k.value == str(part)), None
            )
            if found is None:
                break
            key, node = found
            line = key.start_mark.line + 1
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and 0 <= part < len(node.value):
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            break
    return line


def _path(loc: tuple[str | int, ...]) -> str:
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        elif part != "[key]":
            text += f".{part}" if text else str(part)
    return text or "(top level)"


def _where(root: yaml.Node | None, name: str, loc: tuple[str | int, ...]) -> str:
    line = _node_line(root, loc)
    return f"{name} line {line} ({_path(loc)})" if line is not None else f"{name} ({_path(loc)})"


def parse_rules(text: str, name: str = "routing.yaml") -> RoutingRules:
    """Validate the YAML text; every mistake is named with its line and field."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        document: Any = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigurationError(f"{name}: not valid YAML: {exc}") from exc
    if not isinstance(document, dict):
        raise ConfigurationError(f"{name}: expected a mapping with version, queues, filters, … at the top")
    try:
        rules = RoutingRules.model_validate(document)
    except ValidationError as exc:
        problems = [
            f"{_where(root, name, tuple(item['loc']))}: {item['msg']}"
            for item in exc.errors(include_input=False, include_url=False)[:10]
        ]
        if exc.error_count() > 10:
            problems.append(f"and {exc.error_count() - 10} more")
        raise ConfigurationError("invalid routing rules:\n  " + "\n  ".join(problems)) from exc
    problems = [f"{_where(root, name, loc)}: {message}" for loc, message in semantic_errors(rules)]
    if problems:
        raise ConfigurationError("invalid routing rules:\n  " + "\n  ".join(problems))
    return rules


def resolve_rules_path(path: Path) -> Path:
    """A relative path is taken from the working directory, else from the project root."""
    if path.is_absolute() or path.exists():
        return path
    return PROJECT_ROOT / path


def load_rules(path: Path) -> RoutingRules:
    resolved = resolve_rules_path(path)
    try:
        text = resolved.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigurationError(f"cannot read the routing rules {resolved}: {exc.strerror}") from exc
    return parse_rules(text, str(path))
