"""Triage rules as data: the flag lexicon and the priority score table, validated when loaded.

A mistake in the YAML files stops the processor at start with the file, the field and the reason.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any, Generic, TypeVar

import ahocorasick
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from schemas.channels import Channel
from schemas.triage import SentimentLabel
from schemas.values import Category, Flag, Priority
from services.runtime.errors import ConfigurationError, describe_validation_error


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _cleaned(cues: list[str]) -> list[str]:
    cleaned = [str(cue).strip().lower() for cue in cues]
    if any(not cue for cue in cleaned):
        raise ValueError("a cue is empty")
    return cleaned


class FlagRule(_Strict):
    cues: list[str] = Field(default_factory=list)
    together: list[list[list[str]]] = Field(default_factory=list, description="Groups that must all match")

    @field_validator("cues")
    @classmethod
    def _clean_cues(cls, cues: list[str]) -> list[str]:
        return _cleaned(cues)

    @field_validator("together")
    @classmethod
    def _clean_groups(cls, combos: list[list[list[str]]]) -> list[list[list[str]]]:
        if any(len(combo) < 2 for combo in combos):
            raise ValueError("a `together` entry needs at least two groups")
        return [[_cleaned(group) for group in combo] for combo in combos]


class FlagRules(_Strict):
    version: str
    flags: dict[Flag, FlagRule]


class CategoryCueRules(_Strict):
    version: str
    categories: dict[Category, list[str]]

    @field_validator("categories")
    @classmethod
    def _clean(cls, table: dict[Category, list[str]]) -> dict[Category, list[str]]:
        return {category: _cleaned(cues) for category, cues in table.items()}


class ReachRow(_Strict):
    followers: int = Field(ge=0)
    reposts: int = Field(ge=0)
    points: int


class PriorityTable(_Strict):
    version: str
    category: dict[Category, int]
    flags: dict[Flag, int]
    sentiment: dict[SentimentLabel, int]
    channel: dict[Channel, int]
    social_reach: list[ReachRow]
    thresholds: dict[Priority, int]
    always_p1_and_human: list[Flag]

    @field_validator("category")
    @classmethod
    def _every_category(cls, table: dict[Category, int]) -> dict[Category, int]:
        missing = set(Category) - set(table)
        if missing:
            raise ValueError(f"no points for {sorted(missing)}")
        return table

    @field_validator("thresholds")
    @classmethod
    def _ordered(cls, table: dict[Priority, int]) -> dict[Priority, int]:
        if set(table) != {Priority.P1, Priority.P2, Priority.P3}:
            raise ValueError("give the lowest totals of P1, P2 and P3 (P4 is the rest)")
        if not table[Priority.P1] > table[Priority.P2] > table[Priority.P3]:
            raise ValueError("P1 > P2 > P3 must hold")
        return table


def _load(name: str, model: type[BaseModel]) -> Any:
    path = resources.files("services.triage").joinpath("rules", name)
    try:
        return model.model_validate(yaml.safe_load(path.read_text(encoding="utf-8")))
    except ValidationError as exc:
        raise ConfigurationError(f"services/triage/rules/{name}: {describe_validation_error(exc, limit=10)}") from exc
    except yaml.YAMLError as exc:
        raise ConfigurationError(f"services/triage/rules/{name}: not valid YAML: {exc}") from exc


@dataclass(frozen=True)
class CueHit:
    cue: str
    start: int


class CueMatcher:
    """Finds every cue of a list in one pass (Aho-Corasick); English cues only at word boundaries."""

    def __init__(self, cues: list[str]) -> None:
        self._automaton = ahocorasick.Automaton()
        for cue in set(cues):
            self._automaton.add_word(cue, (cue, cue.isascii() and cue[0].isalnum()))
        self._empty = not cues
        if not self._empty:
            self._automaton.make_automaton()

    def find(self, text: str) -> list[CueHit]:
        if self._empty:
            return []
        hits = []
        for end, (cue, whole_word) in self._automaton.iter(text):
            start = end - len(cue) + 1
            if whole_word and (
                (start > 0 and text[start - 1].isascii() and text[start - 1].isalnum())
                or (end + 1 < len(text) and text[end + 1].isascii() and text[end + 1].isalnum())
            ):
                continue  # "ill" inside "will"
            hits.append(CueHit(cue, start))
        return hits

    def found(self, text: str) -> FoundCues:
        """Each cue the text contains, once, in the order of its first appearance."""
        return dict.fromkeys(hit.cue for hit in self.find(text))


FoundCues = dict[str, None]
"""Cues a text contains, in the order they first appear (a dict as an ordered set)."""

OwnerT = TypeVar("OwnerT", Flag, Category)


class OwnedCues(Generic[OwnerT]):
    """The cues of several owners (flags, categories): which owners' cues a text contains, each owner
    with its cues in the order they were found."""

    def __init__(self, cues_by_owner: Mapping[OwnerT, list[str]]) -> None:
        self._owners: dict[str, list[OwnerT]] = {}
        for owner, cues in cues_by_owner.items():
            for cue in cues:
                self._owners.setdefault(cue, []).append(owner)
        self._matcher = CueMatcher(list(self._owners))

    @property
    def cues(self) -> list[str]:
        return list(self._owners)

    def find(self, text: str) -> dict[OwnerT, list[str]]:
        return self.owners_in(self._matcher.found(text))

    def owners_in(self, found: FoundCues) -> dict[OwnerT, list[str]]:
        """The owners of ``found`` cues (which may hold other lists' cues: one pass serves several lists)."""
        owned: dict[OwnerT, list[str]] = {}
        for cue in found:
            for owner in self._owners.get(cue, ()):
                owned.setdefault(owner, []).append(cue)
        return owned


@dataclass(frozen=True)
class FlagMatch:
    flag: Flag
    rule: str
    cues: tuple[str, ...]


class FlagDetector:
    def __init__(self, rules: FlagRules) -> None:
        self.version = rules.version
        self._direct = OwnedCues({flag: rule.cues for flag, rule in rules.flags.items()})
        self._together = {flag: rule.together for flag, rule in rules.flags.items() if rule.together}
        together_cues = [
            cue for combos in self._together.values() for combo in combos for group in combo for cue in group
        ]
        self.cues = [*self._direct.cues, *together_cues]
        self._matcher = CueMatcher(self.cues)  # one pass for every flag's cues and groups

    def detect(self, text: str) -> list[FlagMatch]:
        return self.detect_in(self._matcher.found(text))

    def detect_in(self, found: FoundCues) -> list[FlagMatch]:
        """Each flag at most once, with the cues that raised it, from the cues a text contains."""
        direct = self._direct.owners_in(found)
        order = {cue: position for position, cue in enumerate(found)}
        matches = []
        for flag in Flag:
            if flag in direct:
                matches.append(FlagMatch(flag, f"flags.{flag.value}.cues", tuple(direct[flag])))
                continue
            for index, combo in enumerate(self._together.get(flag, [])):
                firsts = [
                    min((cue for cue in group if cue in order), key=order.__getitem__, default=None) for group in combo
                ]
                if all(cue is not None for cue in firsts):
                    cues = tuple(dict.fromkeys(cue for cue in firsts if cue is not None))
                    matches.append(FlagMatch(flag, f"flags.{flag.value}.together[{index}]", cues))
                    break
        return matches


class CategoryCues(OwnedCues[Category]):
    """Which categories' domain words a text contains (each category at most once), with the words."""

    def __init__(self, rules: CategoryCueRules) -> None:
        super().__init__(rules.categories)
        self.version = rules.version


@cache
def category_cues() -> CategoryCues:
    return CategoryCues(_load("categories.yaml", CategoryCueRules))


@cache
def flag_detector() -> FlagDetector:
    return FlagDetector(_load("flags.yaml", FlagRules))


@cache
def priority_table() -> PriorityTable:
    table: PriorityTable = _load("priority.yaml", PriorityTable)
    return table
