"""Triage on the frozen evaluation set. The set is pinned: any edit to it fails here first.

The targets: category accuracy ≥ 0.85, self_harm and live_fraud recall 1.0, threat recall ≥ 0.9,
and every ID, mobile, card and e-mail masked.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from functools import cache
from pathlib import Path

import pytest

from services.triage import evaluate
from services.triage.logic import Triage

EVAL_SHA256 = "8ca59c2eb9953c3e0555389ead0c16b21b0a1da014feb7a038b37b78a29e9968"


def test_the_evaluation_set_is_frozen() -> None:
    assert hashlib.sha256(evaluate.EVAL_FILE.read_bytes()).hexdigest() == EVAL_SHA256


@cache
def result() -> evaluate.Evaluation:
    return evaluate.evaluate(evaluate.load_rows(), Triage.shipped())


def test_category_accuracy() -> None:
    assert result().texts == 420
    assert result().category_accuracy >= 0.85


def test_threat_flags_together() -> None:
    assert result().threat_recall >= 0.9


@pytest.mark.parametrize("flag", ["self_harm", "live_fraud"])
def test_self_harm_and_live_fraud_are_never_missed(flag: str) -> None:
    assert result().recall(flag) == 1.0


@pytest.mark.parametrize("kind", ["resident_id", "mobile", "bank_card", "email"])
def test_every_id_mobile_card_and_email_is_masked(kind: str) -> None:
    assert result().pii_total[kind] > 0
    assert result().pii_recall(kind) == 1.0


def test_look_alikes_are_left_alone() -> None:
    assert result().look_alikes_kept == result().look_alikes_total > 0


def test_the_report_names_every_figure() -> None:
    text = evaluate.report(result())
    for needle in ("Category accuracy", "threats together recall", "self_harm", "bank_card", "Look-alikes"):
        assert needle in text


def test_the_cli_triages_a_jsonl_file(tmp_path: Path) -> None:
    feed = tmp_path / "in.jsonl"
    feed.write_text(
        '{"id": "a", "text": "我叫王建军，手机138 0013 8000，有人冒充客服让我把钱转到安全账户", "channel": "hotline"}\n'
        '{"id": "b", "text": "请问营业时间是几点？"}\n'
        '{"id": "c"}\n',
        encoding="utf-8",
    )
    done = subprocess.run(
        [sys.executable, "-m", "services.cli", "triage", "--jsonl", str(feed)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 1, "one line had no text"
    assert "line 3" in done.stderr
    first, second = (json.loads(line) for line in done.stdout.splitlines())
    assert first["id"] == "a"
    assert first["category"] == "fraud_security"
    assert "live_fraud" in first["flags"]
    assert first["priority"] == "P1"
    assert "138 0013 8000" not in first["masked_text"]
    assert {p["kind"] for p in first["pii"]} == {"name", "mobile"}
    mobile = next(p for p in first["pii"] if p["kind"] == "mobile")
    assert "我叫王建军，手机138 0013 8000"[mobile["start"] : mobile["end"]] == "138 0013 8000"
    assert any(r["decided"] == "flag" and r["value"] == "live_fraud" for r in first["reasons"])
    assert second["id"] == "b"
    assert second["flags"] == []


def test_the_shipped_model_was_trained_on_the_shipped_training_data() -> None:
    from services.triage.model import load_models
    from services.triage.train import load_training_rows, training_digest

    rows = load_training_rows()
    assert load_models().version == f"train-{len(rows)}-{training_digest(rows)}", "run `make train-triage`"
