"""SLA policies as data: the YAML file's shape, its validation, and the book the engine reads.

A policy selects cases (jurisdiction, channel, category, priority, queue) and defines clocks. For
each clock name the first policy in the file that selects the case and defines that clock gives
it, so operational clocks (first contact by priority) and regulatory clocks (a complaint's
resolution) can come from different policies. A policy has versions; a clock keeps the version
in force when it started (``effective_from``). Every version loaded is recorded in the database
with a checksum (services.sla.store), so a version cannot change under the clocks that use it.
"""

from __future__ import annotations

import hashlib
import json
import re
from bisect import bisect_right, insort
from collections.abc import Hashable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal, NamedTuple
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PositiveInt,
    TypeAdapter,
    ValidationError,
    model_validator,
)

from schemas.catalog import EVENTS_BY_NAME
from schemas.channels import Channel
from schemas.values import Category, ClockName, Jurisdiction, Priority, Queue
from services.sla.calendar import (
    BusinessCalendar,
    ChineseWorkingDays,
    Counting,
    DayEnd,
    EveryDay,
    HolidayYears,
    PublicHolidayWorkingDays,
    Span,
    Unit,
    WeekdaysOnly,
    WorkingDays,
    parse_hours,
)

PROJECT_ROOT = Path(__file__).resolve().parents[2]
SELECTION_CACHE_SIZE = 100_000
"""Policy selections remembered (case profiles are few: jurisdiction, channel, category, priority, queue)."""

_ISO_DURATION: TypeAdapter[timedelta] = TypeAdapter(timedelta)
_DURATION = re.compile(r"(?:(\d+)w)?(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?")


class PolicyError(ValueError):
    """The policies file is wrong; the message names the file and the field."""


def parse_duration(value: object) -> timedelta:
    """'90s', '15m', '4h', '1h30m', '2d', '1w' (or a number of seconds) as a timedelta."""
    if isinstance(value, timedelta):
        return value
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return timedelta(seconds=value)
    if isinstance(value, str) and value.startswith("P") and not value.startswith("P-"):
        return _ISO_DURATION.validate_python(value)  # ISO 8601, as a stored version serialises it
    if isinstance(value, str):
        match = _DURATION.fullmatch(value.strip())
        if match and any(match.groups()):
            weeks, days, hours, minutes, seconds = (int(part or 0) for part in match.groups())
            return timedelta(weeks=weeks, days=days, hours=hours, minutes=minutes, seconds=seconds)
    raise ValueError(f"a duration looks like 90s, 15m, 4h, 1h30m, 2d or 1w, not {value!r}")


Duration = Annotated[timedelta, BeforeValidator(parse_duration)]


def _known_trigger(value: str) -> str:
    if f"com.parley.{value}.v1" not in EVENTS_BY_NAME or not value.startswith(("tracking.", "agent.")):
        raise ValueError(f"{value!r} is not an event the SLA engine reads: use tracking.<step> or agent.<action>")
    return value


Trigger = Annotated[str, AfterValidator(_known_trigger)]

NEW_FACTS_TRIGGER = "tracking.merged"
"""The step that may bring new facts to a case (``new_facts``): a clock with ``restart_on_new_facts`` restarts on it."""

CLOCK_FIELDS_ADDED_LATER: dict[str, object] = {"extension_choice": False, "restart_on_new_facts": False}
"""Clock fields added after versions were first recorded: left out of a version's meaning while at their default,
so a version recorded before they existed keeps its checksum (and its workers start)."""


def _without_later_defaults(policy: dict[str, Any]) -> dict[str, Any]:
    for clock in policy.get("clocks", []):
        for name, default in CLOCK_FIELDS_ADDED_LATER.items():
            if name in clock and clock[name] == default:
                del clock[name]
    return policy


def _time_zone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {value!r} (use an IANA name such as Asia/Shanghai)") from None
    return value


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class HolidayRule(StrEnum):
    CHINA = "cn"
    ENGLAND_AND_WALES = "england-and-wales"
    US_FEDERAL = "us-federal"
    WEEKDAYS = "weekdays"
    EVERY_DAY = "every-day"


class CalendarConfig(Strict):
    time_zone: Annotated[str, AfterValidator(_time_zone)]
    holidays: HolidayRule
    working_hours: list[str] = Field(min_length=1, description="Local working intervals, e.g. 09:00-12:00")
    holiday_files: list[str] = Field(
        default_factory=list, description="YAML/JSON files of holidays for years the packages do not cover"
    )

    @model_validator(mode="after")
    def _hours_parse(self) -> CalendarConfig:
        self.hours()
        return self

    def hours(self) -> tuple[tuple[int, int], ...]:
        hours = tuple(parse_hours(text) for text in self.working_hours)
        previous_end = 0
        for start, end in hours:
            if start >= end or start < previous_end:
                raise ValueError("working_hours must be sorted, each start before its end, not overlapping")
            previous_end = end
        return hours

    def definition(self) -> dict[str, Any]:
        """What the calendar means for a deadline (holiday data files are facts, not policy: left out)."""
        return self.model_dump(mode="json", exclude={"holiday_files"})


class SpanConfig(Strict):
    amount: PositiveInt
    unit: Unit
    counting: Counting = Counting.CALENDAR
    day_end: DayEnd = DayEnd.SAME_TIME
    roll_to_working_day: bool = False
    late_receipt_rolls: bool = False

    @model_validator(mode="after")
    def _consistent(self) -> SpanConfig:
        in_days = self.unit in (Unit.DAYS, Unit.WEEKS)
        if self.unit is Unit.WEEKS and self.counting is Counting.WORKING:
            raise ValueError("count working days, not working weeks")
        if not in_days and (self.day_end is not DayEnd.SAME_TIME or self.roll_to_working_day):
            raise ValueError("day_end and roll_to_working_day apply to days and weeks only")
        return self

    def span(self) -> Span:
        return Span(
            self.amount,
            self.unit,
            self.counting,
            self.day_end,
            self.roll_to_working_day,
            self.late_receipt_rolls,
        )


class WarningConfig(Strict):
    """A warning when a share of the allowed time is used, or a lead time before the deadline."""

    percent: float | None = Field(default=None, gt=0, lt=100)
    before: Duration | None = None

    @model_validator(mode="after")
    def _one(self) -> WarningConfig:
        if (self.percent is None) == (self.before is None):
            raise ValueError("a warning gives either percent (of the allowed time) or before (a lead time)")
        return self


class EscalationConfig(Strict):
    level: PositiveInt
    to: str = Field(min_length=1, max_length=100, description="A queue or a role")
    recipients: list[str] = Field(default_factory=list)
    percent: float | None = Field(default=None, gt=0, lt=100)
    before: Duration | None = None
    after: Duration | None = Field(default=None, description="Time after the deadline (0s: at the breach)")

    @model_validator(mode="after")
    def _one(self) -> EscalationConfig:
        if sum(value is not None for value in (self.percent, self.before, self.after)) != 1:
            raise ValueError("an escalation gives exactly one of percent, before or after (the deadline)")
        return self


class ExtensionConfig(Strict):
    to: SpanConfig = Field(description="The whole time allowed once this extension is granted")
    approval_required: bool = False


class ClockConfig(Strict):
    name: ClockName
    calendar: str
    calendar_by_queue: dict[Queue, str] = Field(
        default_factory=dict, description="A team's own calendar (working hours) once the case reaches it"
    )
    target: SpanConfig
    starts_on: list[Trigger] = Field(min_length=1)
    anchor: Literal["trigger", "case_opened"] = Field(
        default="trigger", description="Count from the trigger's time, or from when the case was opened"
    )
    stops_on: list[Trigger] = Field(min_length=1, description="Events that meet the clock's goal")
    restarts_on: list[Trigger] = Field(
        default_factory=list, description="Events that meet this run and start a new one"
    )
    cancels_on: list[Trigger] = Field(default_factory=lambda: ["tracking.closed"])
    use_regulator_deadline: bool = Field(
        default=False, description="A regulator referral's own deadline, when the case has one, is this clock's"
    )
    warnings: list[WarningConfig] = Field(default_factory=list)
    escalations: list[EscalationConfig] = Field(default_factory=list)
    pause_conditions: list[str] = Field(default_factory=list, description="Why the clock may be paused")
    extensions: list[ExtensionConfig] = Field(default_factory=list, description="Each extension, in order")
    extension_choice: bool = Field(
        default=False,
        description="An agent's extension may name any later step (new_target), skipping the ones between; "
        "otherwise steps are granted one at a time",
    )
    restart_on_new_facts: bool = Field(
        default=False,
        description="Feedback merged into the case with new facts (tracking.merged, new_facts) ends this run and "
        "starts a new one, counted from the merge",
    )

    @model_validator(mode="after")
    def _sane(self) -> ClockConfig:
        levels = [e.level for e in self.escalations]
        if len(set(levels)) != len(levels):
            raise ValueError("escalation levels must be distinct")
        if self.extension_choice and not self.extensions:
            raise ValueError("extension_choice needs extensions to choose from")
        return self

    def spans(self) -> list[Span]:
        """The allowed time with no extension, then after each extension in turn."""
        return [self.target.span(), *(extension.to.span() for extension in self.extensions)]

    def calendar_for(self, queue: str | None) -> str:
        if queue is not None:
            for team, calendar in self.calendar_by_queue.items():
                if team.value == queue:
                    return calendar
        return self.calendar

    def triggers(self) -> set[str]:
        merged = {NEW_FACTS_TRIGGER} if self.restart_on_new_facts else set()
        return {*self.starts_on, *self.stops_on, *self.restarts_on, *self.cancels_on, *merged}


class SelectorConfig(Strict):
    """Which cases a policy covers; an empty list means any."""

    jurisdictions: list[Jurisdiction] = Field(default_factory=list)
    channels: list[Channel] = Field(default_factory=list)
    categories: list[Category] = Field(default_factory=list)
    priorities: list[Priority] = Field(default_factory=list)
    queues: list[Queue] = Field(default_factory=list)


class PolicyConfig(Strict):
    id: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9-]{0,99}$")]
    version: PositiveInt
    effective_from: AwareDatetime
    description: str = ""
    selector: SelectorConfig = Field(default_factory=SelectorConfig)
    clocks: list[ClockConfig] = Field(min_length=1)

    @model_validator(mode="after")
    def _distinct_clocks(self) -> PolicyConfig:
        names = [clock.name for clock in self.clocks]
        if len(set(names)) != len(names):
            raise ValueError("a policy defines each clock once")
        return self

    def clock(self, name: ClockName) -> ClockConfig | None:
        for clock in self.clocks:
            if clock.name is name:
                return clock
        return None


class PolicyFile(Strict):
    calendars: dict[str, CalendarConfig] = Field(min_length=1)
    pause_conditions: dict[str, list[str]] = Field(
        default_factory=dict, description="Each pause condition and the words in a reason that name it"
    )
    policies: list[PolicyConfig] = Field(min_length=1)

    @model_validator(mode="after")
    def _references(self) -> PolicyFile:
        seen: dict[tuple[str, int], int] = {}
        starts: dict[str, set[Any]] = {}
        for index, policy in enumerate(self.policies):
            where = f"policies[{index}] ({policy.id} v{policy.version})"
            if (policy.id, policy.version) in seen:
                raise ValueError(f"{where}: version {policy.version} of {policy.id} is defined twice")
            seen[(policy.id, policy.version)] = index
            if policy.effective_from in starts.setdefault(policy.id, set()):
                raise ValueError(f"{where}: two versions of {policy.id} take effect at the same time")
            starts[policy.id].add(policy.effective_from)
            for clock in policy.clocks:
                for calendar in (clock.calendar, *clock.calendar_by_queue.values()):
                    if calendar not in self.calendars:
                        raise ValueError(f"{where}, clock {clock.name.value}: no calendar named {calendar!r}")
                for condition in clock.pause_conditions:
                    if condition not in self.pause_conditions:
                        raise ValueError(
                            f"{where}, clock {clock.name.value}: pause condition {condition!r} is not defined "
                            "under pause_conditions"
                        )
        return self


@dataclass(frozen=True)
class PolicyVersion:
    """One version of a policy with the calendar definitions it counts on; the checksum covers both."""

    policy: PolicyConfig
    calendars: Mapping[str, CalendarConfig]

    @property
    def key(self) -> tuple[str, int]:
        return self.policy.id, self.policy.version

    def policy_meaning(self) -> dict[str, Any]:
        return _without_later_defaults(self.policy.model_dump(mode="json"))

    def spec(self) -> dict[str, Any]:
        return {
            "policy": self.policy_meaning(),
            "calendars": {name: self.calendars[name].model_dump(mode="json") for name in sorted(self.calendars)},
        }

    @property
    def checksum(self) -> str:
        meaning = {
            "policy": self.policy_meaning(),
            "calendars": {name: self.calendars[name].definition() for name in sorted(self.calendars)},
        }
        return hashlib.sha256(json.dumps(meaning, sort_keys=True).encode()).hexdigest()

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any]) -> PolicyVersion:
        return cls(
            PolicyConfig.model_validate(spec["policy"]),
            {name: CalendarConfig.model_validate(value) for name, value in spec["calendars"].items()},
        )


@dataclass(frozen=True)
class Selection:
    version: PolicyVersion
    clock: ClockConfig


class CaseProfile(NamedTuple):
    """What a policy selects on (a named tuple: selections are remembered by it, and it hashes fast)."""

    jurisdiction: str | None
    channel: str | None
    category: str | None
    priority: str | None
    queue: str | None


class PolicyBook:
    """Every policy version the engine knows, the calendars they count on, and how cases select them."""

    def __init__(
        self,
        versions: Iterable[PolicyVersion],
        calendars: Mapping[str, BusinessCalendar],
        pause_conditions: Mapping[str, list[str]],
    ) -> None:
        self._versions: dict[tuple[str, int], PolicyVersion] = {}
        self._by_policy: dict[str, list[PolicyVersion]] = {}
        """Each policy's versions, latest first; policies in file order."""
        self._selectors: dict[tuple[str, int], list[tuple[frozenset[str], str]]] = {}
        self._starters: dict[str, list[ClockName]] = {}
        self._boundaries: list[datetime] = []
        """Every version's effective_from (in UTC: compared without asking zones for offsets), sorted: between two of
        them, each policy has the same version in force."""
        self._selections: dict[tuple[ClockName, CaseProfile, int], Selection | None] = {}
        """select() by clock, case and span between boundaries (it is a pure function of those)."""
        self._starting: dict[tuple[str, CaseProfile, int], tuple[tuple[ClockName, Selection], ...]] = {}
        self._last_period: tuple[Any, int] | None = None
        self._clock_configs: dict[tuple[str, int, ClockName], ClockConfig | None] = {}
        self._spans: dict[tuple[str, int, ClockName], tuple[Span, ...]] = {}
        self.derived: dict[Hashable, Any] = {}
        """What other modules derive once from a version's clocks (keyed by the version); versions never change."""
        for version in versions:
            self.add(version)
        self._calendars = dict(calendars)
        self._calendar_defs: dict[str, dict[str, Any]] = {}
        self._resolved: dict[tuple[str, str, int], BusinessCalendar] = {}
        self.pause_conditions = {name: [word.casefold() for word in words] for name, words in pause_conditions.items()}

    def add(self, version: PolicyVersion) -> None:
        """A version from the file, or one that left the file but still has clocks (read back from the database)."""
        if version.key in self._versions:
            return
        self._versions[version.key] = version
        insort(self._boundaries, version.policy.effective_from.astimezone(UTC))
        self._selections.clear()
        self._starting.clear()
        self._last_period = None
        versions = self._by_policy.setdefault(version.policy.id, [])
        versions.append(version)
        versions.sort(key=lambda v: v.policy.effective_from, reverse=True)
        selector = version.policy.selector
        self._selectors[version.key] = [
            (frozenset(item.value for item in wanted), field)
            for wanted, field in (
                (selector.jurisdictions, "jurisdiction"),
                (selector.channels, "channel"),
                (selector.categories, "category"),
                (selector.priorities, "priority"),
                (selector.queues, "queue"),
            )
            if wanted
        ]
        for clock in version.policy.clocks:
            for trigger in (*clock.starts_on, *clock.restarts_on):
                names = self._starters.setdefault(trigger, [])
                if clock.name not in names:
                    names.append(clock.name)

    @property
    def versions(self) -> list[PolicyVersion]:
        return list(self._versions.values())

    def version(self, policy_id: str, version: int) -> PolicyVersion:
        found = self._versions.get((policy_id, version))
        if found is None:
            raise KeyError(f"policy {policy_id} version {version} is not known")
        return found

    def in_force(self, policy_id: str, at: Any) -> PolicyVersion | None:
        for version in self._by_policy.get(policy_id, ()):
            if version.policy.effective_from <= at:
                return version
        return None

    def selects(self, version: PolicyVersion, case: CaseProfile) -> bool:
        return all(getattr(case, field) in wanted for wanted, field in self._selectors[version.key])

    def select(self, clock: ClockName, case: CaseProfile, at: Any) -> Selection | None:
        """The first policy, in file order, in force at ``at``, that selects the case and defines the clock."""
        key = (clock, case, self._period(at))
        try:
            return self._selections[key]
        except KeyError:
            pass
        if len(self._selections) >= SELECTION_CACHE_SIZE:
            self._selections.clear()  # many distinct cases: start again rather than grow without bound
        found = self._selections[key] = self._select(clock, case, at)
        return found

    def starting(self, trigger: str, case: CaseProfile, at: Any) -> tuple[tuple[ClockName, Selection], ...]:
        """The clocks the trigger starts (or restarts) for the case at ``at``, in ``started_by`` order: each with its
        selection, whose clock starts or restarts on the trigger."""
        key = (trigger, case, self._period(at))
        found = self._starting.get(key)
        if found is None:
            if len(self._starting) >= SELECTION_CACHE_SIZE:
                self._starting.clear()
            chosen = []
            for name in self.started_by(trigger):
                selection = self.select(name, case, at)
                if selection is not None and (
                    trigger in selection.clock.starts_on or trigger in selection.clock.restarts_on
                ):
                    chosen.append((name, selection))
            found = self._starting[key] = tuple(chosen)
        return found

    def _period(self, at: Any) -> int:
        """How many versions took effect by ``at``: the same number, the same version of every policy in force."""
        last = self._last_period
        if last is not None and last[0] is at:  # an event asks for its own time more than once
            return last[1]
        period = bisect_right(self._boundaries, at.astimezone(UTC) if getattr(at, "tzinfo", None) is not None else at)
        self._last_period = (at, period)
        return period

    def _select(self, clock: ClockName, case: CaseProfile, at: Any) -> Selection | None:
        for policy_id in self._by_policy:
            version = self.in_force(policy_id, at)
            if version is None or not self.selects(version, case):
                continue
            config = version.policy.clock(clock)
            if config is not None:
                return Selection(version, config)
        return None

    def clock_config(self, policy_id: str, version: int, name: ClockName) -> ClockConfig | None:
        """The clock as a version defines it (None: the version has no such clock); KeyError: no such version."""
        key = (policy_id, version, name)
        try:
            return self._clock_configs[key]
        except KeyError:
            found = self._clock_configs[key] = self.version(policy_id, version).policy.clock(name)
            return found

    def spans(self, policy_id: str, version: int, name: ClockName) -> tuple[Span, ...]:
        """``ClockConfig.spans()`` of the version's clock, built once."""
        key = (policy_id, version, name)
        try:
            return self._spans[key]
        except KeyError:
            config = self.clock_config(policy_id, version, name)
            if config is None:
                raise KeyError(f"policy {policy_id} v{version} has no {name.value} clock") from None
            found = self._spans[key] = tuple(config.spans())
            return found

    def clock_names(self) -> list[ClockName]:
        names: list[ClockName] = []
        for version in self._versions.values():
            for clock in version.policy.clocks:
                if clock.name not in names:
                    names.append(clock.name)
        return names

    def started_by(self, trigger: str) -> list[ClockName]:
        """Clocks some policy starts (or restarts) on this event type."""
        return self._starters.get(trigger, [])

    def triggers(self) -> set[str]:
        """Every event type some clock starts, stops, restarts or cancels on."""
        return {t for v in self._versions.values() for clock in v.policy.clocks for t in clock.triggers()}

    def calendar(self, name: str, version: PolicyVersion | None = None) -> BusinessCalendar:
        """The calendar as the version defined it (a version read back from the database may differ from the file)."""
        if version is None or name not in version.calendars:
            current = self._calendars.get(name)
            if current is None:
                raise KeyError(f"no calendar named {name!r}")
            return current
        key = (name, *version.key)
        found = self._resolved.get(key)
        if found is None:
            found = self._calendar_as_defined(name, version.calendars[name])
            self._resolved[key] = found
        return found

    def _calendar_as_defined(self, name: str, wanted: CalendarConfig) -> BusinessCalendar:
        current = self._calendars.get(name)
        definition = wanted.definition()
        if current is not None and self._calendar_defs.get(name, definition) == definition:
            return current
        digest = hashlib.sha256(json.dumps(definition, sort_keys=True).encode()).hexdigest()[:12]
        built = self._calendars.get(f"{name}@{digest}")
        if built is None:
            built = build_calendar(name, wanted, load_holiday_files(wanted.holiday_files))
            self._calendars[f"{name}@{digest}"] = built
        return built

    def remember_calendar_definitions(self, calendars: Mapping[str, CalendarConfig]) -> None:
        self._calendar_defs = {name: config.definition() for name, config in calendars.items()}
        self._resolved.clear()
        self.derived.clear()  # it may hold calendars resolved before

    def pause_condition(self, reason: str) -> str | None:
        """The pause condition a reason names: its id, or one of its words, anywhere in the text."""
        text = reason.casefold()
        for name, words in self.pause_conditions.items():
            if name.casefold() in text or any(word in text for word in words):
                return name
        return None


# ---- files ----


def resolve_path(path: Path) -> Path:
    """A relative path is taken from the working directory, else from the project root."""
    if path.is_absolute() or path.exists():
        return path
    return PROJECT_ROOT / path


def _iso_date(value: object) -> date:
    if isinstance(value, date):
        return value
    return date.fromisoformat(str(value))


def _dates(values: Iterable[object]) -> set[date]:
    """Dates, and ranges written 2027-02-06..2027-02-12 (both ends included)."""
    found: set[date] = set()
    for value in values:
        if isinstance(value, str) and ".." in value:
            first, last = (_iso_date(part.strip()) for part in value.split(".."))
            while first <= last:
                found.add(first)
                first += timedelta(days=1)
        else:
            found.add(_iso_date(value))
    return found


def parse_holiday_document(document: object, source: str) -> HolidayYears:
    """``{years: {2027: {days_off: [...], make_up_days: [...]}}}``; each listed year is complete."""
    try:
        if not isinstance(document, dict) or not isinstance(document.get("years"), dict):
            raise ValueError("expected a mapping with 'years: {YEAR: {days_off: [...], make_up_days: [...]}}'")
        result = HolidayYears()
        for year, entry in document["years"].items():
            number = int(year)
            if not isinstance(entry, dict) or set(entry) - {"days_off", "make_up_days", "source"}:
                raise ValueError(f"year {number}: only days_off, make_up_days and source are allowed")
            days_off = _dates(entry.get("days_off") or [])
            make_up = _dates(entry.get("make_up_days") or [])
            stray = sorted(d for d in days_off | make_up if d.year != number)
            if stray:
                raise ValueError(f"year {number}: {stray[0]} is not in {number}")
            result = result.merged(HolidayYears(frozenset({number}), frozenset(days_off), frozenset(make_up)))
        return result
    except (ValueError, TypeError) as exc:
        raise PolicyError(f"{source}: {exc}") from None


def load_holiday_files(paths: Iterable[str]) -> HolidayYears:
    result = HolidayYears()
    for name in paths:
        path = resolve_path(Path(name))
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise PolicyError(f"holiday file {path}: {exc.strerror or exc}") from None
        try:
            document = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
        except (ValueError, yaml.YAMLError) as exc:
            kind = "JSON" if path.suffix == ".json" else "YAML"
            raise PolicyError(f"holiday file {path}: not valid {kind}: {exc}") from None
        result = result.merged(parse_holiday_document(document, str(path)))
    return result


def build_calendar(name: str, config: CalendarConfig, supplied: HolidayYears) -> BusinessCalendar:
    days: WorkingDays
    if config.holidays is HolidayRule.CHINA:
        days = ChineseWorkingDays(supplied)
    elif config.holidays is HolidayRule.ENGLAND_AND_WALES:
        days = PublicHolidayWorkingDays("GB", "ENG", supplied, "England and Wales bank holidays")
    elif config.holidays is HolidayRule.US_FEDERAL:
        days = PublicHolidayWorkingDays("US", None, supplied, "US federal holidays")
    elif config.holidays is HolidayRule.WEEKDAYS:
        days = WeekdaysOnly(supplied)
    else:
        days = EveryDay()
    return BusinessCalendar(name, ZoneInfo(config.time_zone), days, config.hours())


def _location(error: Mapping[str, Any], document: object) -> str:
    """A pydantic error location as the YAML path, with the policy id where there is one."""
    parts: list[str] = []
    node: Any = document
    for item in error["loc"]:
        if isinstance(item, int):
            parts.append(f"[{item}]")
        else:
            parts.append(f".{item}" if parts else str(item))
        try:
            node = node[item]
        except (KeyError, IndexError, TypeError):
            node = None
        if isinstance(node, dict) and "id" in node and isinstance(node["id"], str):
            parts.append(f" ({node['id']})")
    return "".join(parts)


def parse_policy_document(document: object, source: str) -> PolicyFile:
    try:
        return PolicyFile.model_validate(document)
    except ValidationError as exc:
        problems = [f"  {_location(e, document) or '(top level)'}: {e['msg']}" for e in exc.errors()[:20]]
        raise PolicyError(f"{source} is not a valid SLA policies file:\n" + "\n".join(problems)) from None


def book_from_file(file: PolicyFile) -> PolicyBook:
    calendars = {
        name: build_calendar(name, config, load_holiday_files(config.holiday_files))
        for name, config in file.calendars.items()
    }
    versions = []
    for policy in file.policies:
        used = {clock.calendar for clock in policy.clocks} | {
            name for clock in policy.clocks for name in clock.calendar_by_queue.values()
        }
        versions.append(PolicyVersion(policy, {name: file.calendars[name] for name in sorted(used)}))
    book = PolicyBook(versions, calendars, file.pause_conditions)
    book.remember_calendar_definitions(file.calendars)
    return book


def load_policy_book(path: Path) -> PolicyBook:
    """Read and validate the policies file; every mistake is a PolicyError naming the file and the field."""
    resolved = resolve_path(path)
    try:
        text = resolved.read_text(encoding="utf-8")
    except OSError as exc:
        raise PolicyError(f"SLA policies file {resolved}: {exc.strerror or exc}") from None
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise PolicyError(f"{resolved} is not valid YAML: {exc}") from None
    return book_from_file(parse_policy_document(document, str(resolved)))
