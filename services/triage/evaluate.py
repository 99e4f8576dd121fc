"""Score triage on the frozen evaluation set: ``python -m services.triage.evaluate``.

The set (services/triage/data/eval.jsonl) is never used to write word lists or to train; this
only reads it. Reports category accuracy (overall and per category), flag precision and recall,
sentiment accuracy, and personal-data recall per kind (a value counts as masked when it no longer
appears in the masked text) with the share of look-alikes (amounts, references, hotlines) kept.
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from schemas.channels import Channel
from schemas.values import Category, Flag, PiiKind
from services.privacy.logic import mask
from services.triage.logic import Triage

EVAL_FILE = Path(__file__).resolve().parent / "data" / "eval.jsonl"
THREATS = (Flag.REGULATOR_THREAT, Flag.MEDIA_THREAT, Flag.LEGAL_THREAT)
EVALUATION_KEY = b"evaluation"


@dataclass
class Evaluation:
    texts: int = 0
    category_correct: Counter[str] = field(default_factory=Counter)
    category_total: Counter[str] = field(default_factory=Counter)
    sentiment_correct: int = 0
    flag_tp: Counter[str] = field(default_factory=Counter)
    flag_fp: Counter[str] = field(default_factory=Counter)
    flag_fn: Counter[str] = field(default_factory=Counter)
    pii_found: Counter[str] = field(default_factory=Counter)
    pii_total: Counter[str] = field(default_factory=Counter)
    look_alikes_kept: int = 0
    look_alikes_total: int = 0
    misses: list[str] = field(default_factory=list)

    @property
    def category_accuracy(self) -> float:
        return sum(self.category_correct.values()) / max(self.texts, 1)

    def accuracy_of(self, category: str) -> float:
        return self.category_correct[category] / max(self.category_total[category], 1)

    def precision(self, flag: str) -> float:
        return self.flag_tp[flag] / max(self.flag_tp[flag] + self.flag_fp[flag], 1)

    def recall(self, flag: str) -> float:
        return self.flag_tp[flag] / max(self.flag_tp[flag] + self.flag_fn[flag], 1)

    @property
    def threat_recall(self) -> float:
        tp = sum(self.flag_tp[f.value] for f in THREATS)
        return tp / max(tp + sum(self.flag_fn[f.value] for f in THREATS), 1)

    def pii_recall(self, kind: str) -> float:
        return self.pii_found[kind] / max(self.pii_total[kind], 1)


def load_rows(path: Path = EVAL_FILE) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def evaluate(rows: list[dict[str, Any]], triage: Triage) -> Evaluation:
    result = Evaluation()
    masked_rows = [mask(row["text"], EVALUATION_KEY) for row in rows]
    outcomes = triage.assess_many(
        [(masked.text, Channel(row["channel"]), None) for masked, row in zip(masked_rows, rows, strict=True)]
    )
    for row, masked, outcome in zip(rows, masked_rows, outcomes, strict=True):
        result.texts += 1
        result.category_total[row["category"]] += 1
        if outcome.category.value == row["category"]:
            result.category_correct[row["category"]] += 1
        if outcome.sentiment.value == row["sentiment"]:
            result.sentiment_correct += 1
        expected, got = set(row.get("flags", [])), {flag.value for flag in outcome.flags}
        for flag in expected & got:
            result.flag_tp[flag] += 1
        for flag in got - expected:
            result.flag_fp[flag] += 1
        for flag in expected - got:
            result.flag_fn[flag] += 1
            if flag in ("self_harm", "live_fraud"):
                result.misses.append(f"{row['id']}: {flag} missed")
        for item in row.get("pii", []):
            result.pii_total[item["kind"]] += 1
            if item["value"] not in masked.text:
                result.pii_found[item["kind"]] += 1
            elif item["kind"] != "name":
                result.misses.append(f"{row['id']}: {item['kind']} not masked")
        for look_alike in row.get("not_pii", []):
            result.look_alikes_total += 1
            result.look_alikes_kept += look_alike in masked.text
    return result


def report(result: Evaluation) -> str:
    lines = [
        f"Frozen evaluation set: {result.texts} texts ({EVAL_FILE.name})",
        f"Category accuracy {result.category_accuracy:.3f}",
    ]
    for category in Category:
        lines.append(
            f"  {category.value:<22} {result.accuracy_of(category.value):.3f}  "
            f"(n={result.category_total[category.value]})"
        )
    lines.append(f"Sentiment accuracy {result.sentiment_correct / max(result.texts, 1):.3f}")
    lines.append("Flags            precision  recall  (true+, false+, missed)")
    for flag in Flag:
        f = flag.value
        lines.append(
            f"  {f:<18} {result.precision(f):.3f}    {result.recall(f):.3f}   "
            f"({result.flag_tp[f]}, {result.flag_fp[f]}, {result.flag_fn[f]})"
        )
    lines.append(f"  threats together recall {result.threat_recall:.3f}")
    lines.append("Personal data recall (masked / present)")
    for kind in PiiKind:
        k = kind.value
        lines.append(f"  {k:<12} {result.pii_recall(k):.3f}  ({result.pii_found[k]}/{result.pii_total[k]})")
    lines.append(
        f"Look-alikes kept (amounts, dates, references, hotlines): {result.look_alikes_kept}/{result.look_alikes_total}"
    )
    return "\n".join(lines)


def main() -> int:
    result = evaluate(load_rows(), Triage.shipped())
    print(report(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
