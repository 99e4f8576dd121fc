"""The linear text classifiers (category and sentiment), scored from exported arrays.

Features are character 1-3-grams of the normalised, masked text (digits folded to 0, masked
personal data folded to one mark), weighted by sublinear TF-IDF and L2-normalised, exactly as
scikit-learn's TfidfVectorizer did at training (services/triage/train.py). Scoring needs only
numpy, and names the n-grams that pushed the winning class most.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
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


class FeatureIndex:
    """The shared vocabulary and IDF weights: a text's TF-IDF vector, as indices and values."""

    def __init__(self, vocabulary: list[str], idf: npt.NDArray[np.float64]) -> None:
        self._index = {feature: position for position, feature in enumerate(vocabulary)}
        self.vocabulary = vocabulary
        self._idf = idf
        keyed = [(key, position) for position, gram in enumerate(vocabulary) if (key := _key_of(gram)) is not None]
        keyed.sort()
        self._keys = np.array([key for key, _ in keyed], dtype=np.uint64)
        self._key_positions = np.array([position for _, position in keyed], dtype=np.int64)

    def text_vector(
        self, normalised_text: str, cue_features: list[str]
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]:
        """The same vector as ``vector(features(text, cues))``, computed with numpy."""
        keys, counts = np.unique(ngram_keys(fold(normalised_text)), return_counts=True)
        slots = np.searchsorted(self._keys, keys)
        slots[slots == len(self._keys)] = 0
        known = self._keys[slots] == keys
        positions = self._key_positions[slots[known]]
        found_counts = counts[known]
        cue_positions = [self._index[cue] for cue in cue_features if cue in self._index]
        if cue_positions:
            cue_unique, cue_counts = np.unique(np.array(cue_positions, dtype=np.int64), return_counts=True)
            positions = np.concatenate((positions, cue_unique))
            found_counts = np.concatenate((found_counts, cue_counts))
        if positions.size == 0:
            return positions, np.zeros(0)
        order = np.argsort(positions)
        positions, found_counts = positions[order], found_counts[order]
        weights = (1.0 + np.log(found_counts)) * self._idf[positions]
        norm = float(np.sqrt(weights @ weights))
        return positions, weights / norm if norm else weights

    def vector(self, features: list[str]) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]:
        known = [position for position in map(self._index.get, features) if position is not None]
        positions = np.array(known, dtype=np.int64)
        if positions.size == 0:
            return positions, np.zeros(0)
        unique, counts = np.unique(positions, return_counts=True)
        weights = (1.0 + np.log(counts)) * self._idf[unique]
        norm = float(np.sqrt(weights @ weights))
        return unique, weights / norm if norm else weights


class LinearModel:
    def __init__(self, classes: list[str], coef: npt.NDArray[np.float64], intercept: npt.NDArray[np.float64]) -> None:
        self.classes = classes
        self._coef = coef
        self._intercept = intercept

    def predict(
        self,
        vector: tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]],
        vocabulary: list[str],
        explain: int = 5,
    ) -> Prediction:
        positions, weights = vector
        block = self._coef[:, positions]
        logits = block @ weights + self._intercept
        exp = np.exp(logits - logits.max())
        probabilities = exp / exp.sum()
        best = int(probabilities.argmax())
        return Prediction(
            self.classes[best], float(probabilities[best]), _top(block[best] * weights, positions, vocabulary, explain)
        )


def _top(
    contributions: npt.NDArray[np.float64], positions: npt.NDArray[np.int64], vocabulary: list[str], count: int
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


class FlagModel:
    """One binary classifier per flag; a flag's probability at or above its threshold raises it."""

    def __init__(
        self,
        names: list[str],
        coef: npt.NDArray[np.float64],
        intercept: npt.NDArray[np.float64],
        thresholds: npt.NDArray[np.float64],
    ) -> None:
        self.names = names
        self._coef = coef
        self._intercept = intercept
        self.thresholds = dict(zip(names, (float(t) for t in thresholds), strict=True))

    def raised(
        self, vector: tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]], vocabulary: list[str]
    ) -> list[tuple[str, float, tuple[tuple[str, float], ...]]]:
        """(flag, probability, top n-grams) for each flag the classifier raises."""
        positions, weights = vector
        logits = self._coef[:, positions] @ weights + self._intercept
        probabilities = 1.0 / (1.0 + np.exp(-logits))
        found = []
        for row, name in enumerate(self.names):
            probability = float(probabilities[row])
            if probability >= self.thresholds[name]:
                found.append((name, probability, _top(self._coef[row, positions] * weights, positions, vocabulary, 5)))
        return found


@dataclass(frozen=True)
class TextModels:
    features: FeatureIndex
    category: LinearModel
    sentiment: LinearModel
    flags: FlagModel
    version: str


MODEL_FILE = "triage-models.npz"


@cache
def load_models() -> TextModels:
    path = resources.files("services.triage").joinpath("model", MODEL_FILE)
    with resources.as_file(path) as file, np.load(file, allow_pickle=False) as data:
        vocabulary = [str(feature) for feature in data["vocabulary"]]
        return TextModels(
            features=FeatureIndex(vocabulary, data["idf"].astype(np.float64)),
            category=LinearModel(
                [str(c) for c in data["category_classes"]],
                data["category_coef"].astype(np.float64),
                data["category_intercept"].astype(np.float64),
            ),
            sentiment=LinearModel(
                [str(c) for c in data["sentiment_classes"]],
                data["sentiment_coef"].astype(np.float64),
                data["sentiment_intercept"].astype(np.float64),
            ),
            flags=FlagModel(
                [str(name) for name in data["flag_names"]],
                data["flag_coef"].astype(np.float64),
                data["flag_intercept"].astype(np.float64),
                data["flag_threshold"].astype(np.float64),
            ),
            version=str(data["version"]),
        )
