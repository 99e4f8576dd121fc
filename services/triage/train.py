"""Train the category and sentiment classifiers from services/triage/data/train*.jsonl.

``python -m services.triage.train`` (what ``make train-triage`` runs) writes
services/triage/model/triage-models.npz. Needs scikit-learn (a development dependency); the
processor itself scores with numpy only. Texts are masked and normalised exactly as the
processor sees them. ``--cv`` prints 5-fold cross-validated accuracy on the training data (the
frozen evaluation set is never used here).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from services.privacy.logic import mask
from services.triage.model import MODEL_FILE, cue_tokens, features
from services.triage.rules import category_cues
from services.triage.text import normalise

DATA_DIR = Path(__file__).resolve().parent / "data"
MODEL_DIR = Path(__file__).resolve().parent / "model"
TRAINING_KEY = b"training"  # tokens are folded away; any key gives the same features


def load_training_rows() -> list[dict[str, Any]]:
    rows = []
    for path in sorted(DATA_DIR.glob("train*.jsonl")):
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                rows.append(json.loads(line))
    return rows


def prepared(text: str) -> str:
    return normalise(mask(text, TRAINING_KEY).text)


def text_features(normalised_text: str) -> list[str]:
    """Exactly what the processor computes (services/triage/logic.py), minus whitespace-only n-grams."""
    found = features(normalised_text, cue_tokens(category_cues().find(normalised_text)))
    return [feature for feature in found if not feature.isspace()]


def _vectoriser() -> Any:
    from sklearn.feature_extraction.text import TfidfVectorizer

    return TfidfVectorizer(analyzer=text_features, sublinear_tf=True, min_df=2, dtype=np.float64)


def _classifier() -> Any:
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(C=20.0, max_iter=5000, class_weight="balanced")


def cross_validate(texts: list[str], labels: list[str], name: str) -> None:
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline

    folds = StratifiedKFold(n_splits=5, shuffle=True, random_state=7)
    predicted = cross_val_predict(make_pipeline(_vectoriser(), _classifier()), texts, labels, cv=folds)
    accuracy = float(np.mean(np.array(predicted) == np.array(labels)))
    print(f"{name}: 5-fold cross-validated accuracy on the training data {accuracy:.3f}")
    for label in sorted(set(labels)):
        mask_of = np.array(labels) == label
        print(f"  {label:<22} {float(np.mean(np.array(predicted)[mask_of] == label)):.3f}  (n={int(mask_of.sum())})")


# Each flag classifier's threshold, read off 5-fold cross-validation on the training data (the lexicon
# raising its flags too): the lowest threshold whose precision stays useful. Recall / precision there:
#   self_harm 0.15 (0.92 / 0.62), live_fraud 0.20 (0.97 / 0.63), regulator_threat 0.30 (0.99 / 0.90),
#   media_threat 0.20 (0.89 / 0.58), legal_threat 0.30 (0.96 / 0.78), vulnerable 0.30 (0.91 / 0.65).
FLAG_THRESHOLDS = {
    "self_harm": 0.15,
    "live_fraud": 0.20,
    "regulator_threat": 0.30,
    "media_threat": 0.20,
    "legal_threat": 0.30,
    "vulnerable": 0.30,
}


def training_digest(rows: list[dict[str, Any]]) -> str:
    """Names the training data a model came from: a test compares it with the data shipped."""
    return hashlib.sha256("\n".join(json.dumps(r, sort_keys=True) for r in rows).encode()).hexdigest()[:12]


def train(rows: list[dict[str, Any]]) -> dict[str, Any]:
    texts = [prepared(row["text"]) for row in rows]
    vectoriser = _vectoriser()
    matrix = vectoriser.fit_transform(texts)
    vocabulary = [None] * len(vectoriser.vocabulary_)
    for feature, position in vectoriser.vocabulary_.items():
        vocabulary[position] = feature
    arrays: dict[str, Any] = {"vocabulary": np.array(vocabulary), "idf": vectoriser.idf_.astype(np.float32)}
    for name in ("category", "sentiment"):
        classifier = _classifier().fit(matrix, [row[name] for row in rows])
        arrays[f"{name}_classes"] = np.array(classifier.classes_)
        arrays[f"{name}_coef"] = classifier.coef_.astype(np.float32)
        arrays[f"{name}_intercept"] = classifier.intercept_.astype(np.float32)
    flag_names = list(FLAG_THRESHOLDS)
    coefficients, intercepts = [], []
    for flag in flag_names:
        classifier = _classifier().fit(matrix, [flag in row["flags"] for row in rows])
        coefficients.append(classifier.coef_[0])
        intercepts.append(classifier.intercept_[0])
    arrays["flag_names"] = np.array(flag_names)
    arrays["flag_coef"] = np.array(coefficients, dtype=np.float32)
    arrays["flag_intercept"] = np.array(intercepts, dtype=np.float32)
    arrays["flag_threshold"] = np.array([FLAG_THRESHOLDS[flag] for flag in flag_names], dtype=np.float32)
    arrays["version"] = np.array(f"train-{len(rows)}-{training_digest(rows)}")
    return arrays


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m services.triage.train", description=__doc__.splitlines()[0])
    parser.add_argument("--cv", action="store_true", help="print cross-validated accuracy; write nothing")
    args = parser.parse_args(argv)
    rows = load_training_rows()
    if not rows:
        print("no training data in services/triage/data/train*.jsonl", file=sys.stderr)
        return 1
    if args.cv:
        texts = [prepared(row["text"]) for row in rows]
        for name in ("category", "sentiment"):
            cross_validate(texts, [row[name] for row in rows], name)
        return 0
    arrays = train(rows)
    MODEL_DIR.mkdir(exist_ok=True)
    np.savez_compressed(MODEL_DIR / MODEL_FILE, **arrays)
    size = (MODEL_DIR / MODEL_FILE).stat().st_size
    print(
        f"trained on {len(rows)} texts: {len(arrays['vocabulary'])} features, {size / 1e6:.1f} MB, "
        f"version {arrays['version']}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
