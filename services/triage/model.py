"""The linear text classifiers (category and sentiment), scored from exported arrays.

Features are character 1-3-grams of the normalised, masked text (digits folded to 0, masked
personal data folded to one mark), weighted by sublinear TF-IDF and L2-normalised, exactly as
scikit-learn's TfidfVectorizer did at training (services/triage/train.py). Scoring needs only
numpy, and names the n-grams that pushed the winning class most.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Any

import numpy as np
import numpy.typing as npt

_MASKED = re.compile(r"\[(?:resident_id|mobile|bank_card|email|name)#[0-9a-f]{16}\]")
_DIGITS = re.compile(r"\d")
PII_MARK = "\ue000"  # one private-use character stands for any masked span


def fold(normalised_text: str) -> str:
    return _DIGITS.sub("0", _MASKED.sub(PII_MARK, normalised_text))


CUE_PREFIX = "§cue:"


def ngrams(normalised_text: str) -> list[str]:
    """Every character n-gram of the folded text (whitespace-only ones are never in the vocabulary)."""
    text = fold(normalised_text)
    length = len(text)
    grams = list(text)
    grams += [text[i : i + 2] for i in range(length - 1)]
    grams += [text[i : i + 3] for i in range(length - 2)]
    return grams


def cue_tokens(found: Mapping[Any, list[str]]) -> list[str]:
    """One category token per cue word found: two words of a category weigh more than one."""
    return [str(getattr(category, "value", category)) for category, words in found.items() for _ in words]


def features(normalised_text: str, cue_categories: Iterable[str]) -> list[str]:
    """The classifier's features: the n-grams, and one ``§cue:<category>`` per category whose domain
    words the text contains (services/triage/rules/categories.yaml)."""
    return ngrams(normalised_text) + [f"{CUE_PREFIX}{category}" for category in cue_categories]


@dataclass(frozen=True)
class Prediction:
    label: str
    confidence: float
    top_features: tuple[tuple[str, float], ...]
    """The n-grams that added most to the winning class, with their contributions."""


_UNIGRAM, _BIGRAM = np.uint64(1 << 63), np.uint64((1 << 63) | (1 << 62))


def _code_points(text: str) -> npt.NDArray[np.uint64]:
    return np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32).astype(np.uint64)


def ngram_keys(folded_text: str) -> npt.NDArray[np.uint64]:
    """Every 1-3-gram of ``folded_text`` as one exact 64-bit number (21 bits a character, no collisions):
    the same n-grams as ``ngrams``, without building a string for each."""
    points = _code_points(folded_text)
    shift = np.uint64(21)
    uni = points | _UNIGRAM
    bi = (points[:-1] << shift) | points[1:] | _BIGRAM
    tri = (points[:-2] << np.uint64(42)) | (points[1:-1] << shift) | points[2:]
    return np.concatenate((uni, bi, tri))


def _key_of(gram: str) -> int | None:
    if not 1 <= len(gram) <= 3 or gram.startswith(CUE_PREFIX):
        return None
    keys = ngram_keys(gram)
    return int(keys[len(gram) * (len(gram) + 1) // 2 - 1]) if len(gram) > 1 else int(keys[0])


@dataclass(frozen=True)
class BatchVectors:
    """Sparse TF-IDF vectors of a batch of texts, text after text: text i is ``bounds[i]:bounds[i + 1]``."""

    positions: npt.NDArray[np.int64]
    weights: npt.NDArray[np.float64]
    owners: npt.NDArray[np.int64]
    bounds: npt.NDArray[np.int64]


class _KeyTable:
    """n-gram key -> vocabulary position, as an open-addressing hash table probed for a whole batch at once:
    one gather a key where a binary search took fifteen."""

    _EMPTY = np.uint64(0)  # no n-gram key is 0: unigram and bigram keys carry a high bit, trigrams a code point
    _MULTIPLIER = np.uint64(0x9E3779B97F4A7C15)  # Fibonacci hashing

    def __init__(self, keyed: list[tuple[int, int]]) -> None:
        bits = max(8, (8 * max(len(keyed), 1) - 1).bit_length())  # load factor at most 1/8: probes stay short
        self._shift = np.uint64(64 - bits)
        self._mask = (1 << bits) - 1
        self._keys = np.zeros(1 << bits, dtype=np.uint64)
        self._positions = np.full(1 << bits, -1, dtype=np.int64)
        for key, position in keyed:
            if key == 0:
                raise ValueError("an n-gram key of 0 would read as an empty slot")
            slot = int(self._slots(np.array([key], dtype=np.uint64))[0])
            while self._keys[slot] not in (self._EMPTY, key):
                slot = (slot + 1) & self._mask
            self._keys[slot], self._positions[slot] = key, position

    def _slots(self, keys: npt.NDArray[np.uint64]) -> npt.NDArray[np.int64]:
        return ((keys * self._MULTIPLIER) >> self._shift).astype(np.int64)

    def positions(self, keys: npt.NDArray[np.uint64]) -> npt.NDArray[np.int64]:
        """Each key's vocabulary position, -1 for keys not in the vocabulary."""
        found = np.full(len(keys), -1, dtype=np.int64)
        pending = np.arange(len(keys))
        slots = self._slots(keys)
        while pending.size:
            stored = self._keys[slots]
            hit = stored == keys
            found[pending[hit]] = self._positions[slots[hit]]
            probe_on = ~hit & (stored != self._EMPTY)
            pending, keys, slots = pending[probe_on], keys[probe_on], (slots[probe_on] + 1) & self._mask
        return found


def _counted(values: npt.NDArray[np.int64], fits_int32: bool) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """``np.unique(values, return_counts=True)``, sorting 32-bit numbers when they fit (twice as fast)."""
    ordered = np.sort(values.astype(np.int32) if fits_int32 else values)
    if ordered.size == 0:
        return ordered.astype(np.int64), np.zeros(0, dtype=np.int64)
    starts = np.flatnonzero(np.concatenate(([True], ordered[1:] != ordered[:-1])))
    counts = np.diff(np.append(starts, ordered.size))
    return ordered[starts].astype(np.int64), counts


class FeatureIndex:
    """The shared vocabulary and IDF weights: a text's TF-IDF vector, as indices and values."""

    def __init__(self, vocabulary: list[str], idf: npt.NDArray[np.float64]) -> None:
        self._index = {feature: position for position, feature in enumerate(vocabulary)}
        self.vocabulary = vocabulary
        self._idf = idf
        keyed = [(key, position) for position, gram in enumerate(vocabulary) if (key := _key_of(gram)) is not None]
        self._lookup = _KeyTable(keyed)

    @property
    def size(self) -> int:
        return len(self.vocabulary)

    def batch_vectors(self, normalised_texts: list[str], cue_features: list[list[str]]) -> BatchVectors:
        """Every text's TF-IDF vector at once: the same vectors as ``vector(features(text, cues))``."""
        count = len(normalised_texts)
        keys = [ngram_keys(fold(text)) for text in normalised_texts]
        all_keys = np.concatenate(keys) if keys else np.zeros(0, dtype=np.uint64)
        owners = np.repeat(np.arange(count, dtype=np.int64), [len(k) for k in keys])
        found = self._lookup.positions(all_keys)
        known = found >= 0
        positions, owners = found[known], owners[known]
        cue_pairs = [
            (owner, self._index[cue]) for owner, cues in enumerate(cue_features) for cue in cues if cue in self._index
        ]
        if cue_pairs:
            positions = np.concatenate((positions, np.array([p for _, p in cue_pairs], dtype=np.int64)))
            owners = np.concatenate((owners, np.array([o for o, _ in cue_pairs], dtype=np.int64)))
        pairs, counts = _counted(owners * self.size + positions, fits_int32=count * self.size < 2**31)
        owners, positions = pairs // self.size, pairs % self.size  # by text, then feature
        weights = (1.0 + np.log(counts)) * self._idf[positions]
        norms = np.sqrt(np.bincount(owners, weights * weights, minlength=count))
        weights = weights / np.where(norms > 0, norms, 1.0)[owners]
        bounds = np.searchsorted(owners, np.arange(count + 1))
        return BatchVectors(positions, weights, owners, bounds)

    def vector(self, features: list[str]) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]:
        known = [position for position in map(self._index.get, features) if position is not None]
        positions = np.array(known, dtype=np.int64)
        if positions.size == 0:
            return positions, np.zeros(0)
        unique, counts = np.unique(positions, return_counts=True)
        weights = (1.0 + np.log(counts)) * self._idf[unique]
        norm = float(np.sqrt(weights @ weights))
        return unique, weights / norm if norm else weights


@dataclass(frozen=True)
class Scores:
    """One text's results from every classifier."""

    category: Prediction
    sentiment: Prediction
    flags: list[tuple[str, float, tuple[tuple[str, float], ...]]]
    """(flag, probability, top n-grams) for each flag its classifier raises."""


@dataclass(frozen=True)
class Head:
    """One classifier: its rows of the stacked coefficient matrix, and their intercepts."""

    classes: list[str]
    rows: slice
    intercept: npt.NDArray[np.float64]


def _top(
    contributions: npt.NDArray[np.floating[Any]],
    positions: npt.NDArray[np.int64],
    vocabulary: list[str],
    count: int = 5,
) -> tuple[tuple[str, float], ...]:
    """The features that added most, largest first (only those that added anything)."""
    if contributions.size > count:
        chosen = np.argpartition(contributions, -count)[-count:]
        chosen = chosen[np.argsort(contributions[chosen])[::-1]]
    else:
        chosen = np.argsort(contributions)[::-1]
    values = contributions[chosen].tolist()
    where = positions[chosen].tolist()
    return tuple((vocabulary[p], round(v, 4)) for p, v in zip(where, values, strict=True) if v > 0)


def _softmax(logits: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    exp = np.exp(logits - logits.max(axis=1, keepdims=True))
    result: npt.NDArray[np.float64] = exp / exp.sum(axis=1, keepdims=True)
    return result


@dataclass(frozen=True)
class TextModels:
    features: FeatureIndex
    stacked: npt.NDArray[np.float64]
    """Category, sentiment and flag coefficients, one row per class or flag."""
    category: Head
    sentiment: Head
    flags: Head
    flag_thresholds: dict[str, float]
    version: str
    by_feature: npt.NDArray[np.float32] = field(init=False, repr=False)
    flag_threshold_row: npt.NDArray[np.float64] = field(init=False, repr=False)

    def score(self, normalised_texts: list[str], cue_features: list[list[str]]) -> list[Scores]:
        """Every classifier on every text of a batch, with a handful of array operations for the batch."""
        vectors = self.features.batch_vectors(normalised_texts, cue_features)
        count = len(normalised_texts)
        # One row per feature occurrence, one column per class or flag. The by-feature layout makes the gather
        # read whole rows, and float32 halves the memory it moves; the scores' 4 decimals never notice.
        contributions = self.by_feature[vectors.positions] * vectors.weights.astype(np.float32)[:, None]
        # Per text, the sum of its features' rows: one reduceat over the batch. A zero row at the end keeps
        # every start valid; an empty text would otherwise get its neighbour's row.
        padded = np.concatenate((contributions, np.zeros((1, contributions.shape[1]), dtype=np.float32)))
        starts = vectors.bounds[:-1]
        logits = (
            np.add.reduceat(padded, starts, axis=0).astype(np.float64)
            if count
            else np.zeros((0, contributions.shape[1]))
        )
        logits[starts == vectors.bounds[1:]] = 0.0
        category = _softmax(logits[:, self.category.rows] + self.category.intercept)
        sentiment = _softmax(logits[:, self.sentiment.rows] + self.sentiment.intercept)
        flags = 1.0 / (1.0 + np.exp(-(logits[:, self.flags.rows] + self.flags.intercept)))
        raised_rows = flags >= self.flag_threshold_row
        category_best = category.argmax(axis=1)
        sentiment_best = sentiment.argmax(axis=1)
        vocabulary = self.features.vocabulary
        bounds = vectors.bounds.tolist()
        results = []
        for text in range(count):
            span = slice(bounds[text], bounds[text + 1])
            positions = vectors.positions[span]
            rows = contributions[span]
            best_category = int(category_best[text])
            best_sentiment = int(sentiment_best[text])
            raised = [
                (name, float(flags[text, row]), _top(rows[:, self.flags.rows.start + row], positions, vocabulary))
                for row in np.flatnonzero(raised_rows[text]).tolist()
                for name in (self.flags.classes[row],)
            ]
            results.append(
                Scores(
                    Prediction(
                        self.category.classes[best_category],
                        float(category[text, best_category]),
                        _top(rows[:, self.category.rows.start + best_category], positions, vocabulary),
                    ),
                    Prediction(
                        self.sentiment.classes[best_sentiment],
                        float(sentiment[text, best_sentiment]),
                        _top(rows[:, self.sentiment.rows.start + best_sentiment], positions, vocabulary),
                    ),
                    raised,
                )
            )
        return results

    def __post_init__(self) -> None:
        # Frozen: the derived arrays are set once, here.
        thresholds = np.array([self.flag_thresholds[name] for name in self.flags.classes], dtype=np.float64)
        object.__setattr__(self, "flag_threshold_row", thresholds)
        object.__setattr__(self, "by_feature", np.ascontiguousarray(self.stacked.T, dtype=np.float32))


MODEL_FILE = "triage-models.npz"


@cache
def load_models() -> TextModels:
    path = resources.files("services.triage").joinpath("model", MODEL_FILE)
    with resources.as_file(path) as file, np.load(file, allow_pickle=False) as data:
        vocabulary = [str(feature) for feature in data["vocabulary"]]
        blocks = [data["category_coef"], data["sentiment_coef"], data["flag_coef"]]
        first, second = len(blocks[0]), len(blocks[0]) + len(blocks[1])
        flag_names = [str(name) for name in data["flag_names"]]
        return TextModels(
            features=FeatureIndex(vocabulary, data["idf"].astype(np.float64)),
            stacked=np.ascontiguousarray(np.vstack(blocks), dtype=np.float64),
            category=Head(
                [str(c) for c in data["category_classes"]],
                slice(0, first),
                data["category_intercept"].astype(np.float64),
            ),
            sentiment=Head(
                [str(c) for c in data["sentiment_classes"]],
                slice(first, second),
                data["sentiment_intercept"].astype(np.float64),
            ),
            flags=Head(flag_names, slice(second, second + len(flag_names)), data["flag_intercept"].astype(np.float64)),
            flag_thresholds=dict(zip(flag_names, (float(t) for t in data["flag_threshold"]), strict=True)),
            version=str(data["version"]),
        )
