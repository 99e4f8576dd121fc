"""The audit trail's SHA-256 chain: built row by row, verified, and every kind of tampering named at its row."""

from __future__ import annotations

import hashlib
import itertools
import json
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from services.tracker.audit import (
    GENESIS,
    StoredRow,
    append,
    canonical_json,
    canonical_text,
    row_content,
    verify_chain,
)

CASE = uuid.UUID("3f2c1a9e-8b7d-4e6f-9a1b-2c3d4e5f6a7b")
T0 = datetime(2026, 11, 22, 1, 12, 5, tzinfo=UTC)


def chain(count: int) -> list[StoredRow]:
    rows: list[StoredRow] = []
    seq, head = 0, None
    for n in range(count):
        payload = {
            "data": {"n": n, "amount": "1496.12", "score": 0.68, "text": "客户说明情况"},
            "tags": [n, None, True],
        }
        row = append(
            CASE, seq, head, uuid.uuid5(CASE, str(n)), f"com.parley.test.e{n}.v1", T0 + timedelta(minutes=n), payload
        )
        seq, head = row.seq, row.row_hash
        # What the database gives back: the payload through JSON, the time in UTC.
        rows.append(
            StoredRow(
                100 + n,
                row.event_id,
                row.event_type,
                row.occurred_at.astimezone(UTC),
                json.loads(json.dumps(payload)),
                row.seq,
                row.prev_hash,
                row.row_hash,
            )
        )
    return rows


def verify(rows: list[StoredRow], head_seq: int | None = None, head_hash: bytes | None = None) -> Any:
    last = [row for row in rows if row.row_hash is not None]
    return verify_chain(
        CASE,
        rows,
        head_seq if head_seq is not None else len(last),
        head_hash if head_hash is not None else (last[-1].row_hash if last else None),
    )


def test_each_row_hashes_its_content_and_the_previous_hash() -> None:
    rows = chain(3)
    assert rows[0].prev_hash == GENESIS
    for previous, row in itertools.pairwise(rows):
        assert row.prev_hash == previous.row_hash
    first = rows[0]
    content = row_content(CASE, 1, first.event_id, first.event_type, first.occurred_at, canonical_text(first.payload))
    assert first.row_hash == hashlib.sha256(GENESIS + content).digest()


def test_an_untouched_chain_verifies() -> None:
    result = verify(chain(5))
    assert result.intact
    assert result.chained_rows == 5
    assert result.first_break is None


def test_an_empty_case_verifies() -> None:
    assert verify_chain(CASE, [], 0, None).intact


def test_a_changed_payload_is_named_at_its_row() -> None:
    rows = chain(5)
    rows[2] = replace(rows[2], payload={**rows[2].payload, "data": {**rows[2].payload["data"], "amount": "1.00"}})
    result = verify(rows)
    assert not result.intact
    assert result.first_break is not None
    assert result.first_break.row_id == 102
    assert result.first_break.seq == 3
    assert result.first_break.problem == "content does not match its hash (the row was changed)"
    assert result.first_break.describe().startswith("row id 102 (seq 3, com.parley.test.e2.v1, event ")


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("event_type", "com.parley.test.other.v1"),
        ("occurred_at", T0 + timedelta(days=1)),
        ("event_id", uuid.UUID(int=7)),
    ],
)
def test_any_changed_column_breaks_the_chain(field: str, value: object) -> None:
    rows = chain(4)
    rows[1] = replace(rows[1], **{field: value})
    result = verify(rows)
    assert result.first_break is not None
    assert result.first_break.row_id == 101


def test_a_rehashed_row_breaks_at_the_next_row() -> None:
    """A forger who recomputes the changed row's own hash still breaks the link to the next row."""
    rows = chain(4)
    forged_payload = {"data": {"n": 1, "amount": "0.01"}}
    content = row_content(
        CASE, 2, rows[1].event_id, rows[1].event_type, rows[1].occurred_at, canonical_text(forged_payload)
    )
    rows[1] = replace(rows[1], payload=forged_payload, row_hash=hashlib.sha256(rows[1].prev_hash + content).digest())
    result = verify(rows, head_hash=rows[-1].row_hash)
    assert result.first_break is not None
    assert result.first_break.row_id == 102
    assert "previous-row hash does not match" in result.first_break.problem


def test_a_removed_row_is_named_by_the_row_after_the_gap() -> None:
    rows = chain(5)
    del rows[2]
    result = verify(rows, head_seq=5, head_hash=rows[-1].row_hash)
    assert result.first_break is not None
    assert result.first_break.row_id == 103
    assert result.first_break.problem == "sequence jumps from 2 to 4: rows are missing before it"


def test_rows_removed_from_the_end_are_caught_by_the_head_on_the_case() -> None:
    rows = chain(5)
    head = rows[-1].row_hash
    result = verify(rows[:3], head_seq=5, head_hash=head)
    assert result.first_break is not None
    assert result.first_break.row_id is None
    assert result.first_break.describe() == "the case's chain head says 5 rows, the table holds 3 chained rows"


def test_a_swapped_pair_of_rows_breaks_the_chain() -> None:
    rows = chain(4)
    rows[1], rows[2] = rows[2], rows[1]
    result = verify(rows)
    assert result.first_break is not None
    assert result.first_break.row_id == 102


def test_rows_from_before_the_chain_are_counted_only_at_the_start() -> None:
    legacy = StoredRow(1, uuid.UUID(int=1), "com.parley.feedback.received.v1", T0, {"x": 1}, None, None, None)
    rows = [legacy, *chain(2)]
    result = verify(rows)
    assert result.intact
    assert result.unchained_before_chain == 1
    late = [*chain(2), replace(legacy, id=999)]
    broken = verify(late)
    assert broken.first_break is not None
    assert broken.first_break.row_id == 999
    assert broken.first_break.problem == "has no hash although earlier rows are chained"


def test_hash_columns_cleared_on_one_row_are_named() -> None:
    rows = chain(3)
    rows[1] = replace(rows[1], row_hash=None)
    result = verify(rows, head_seq=3, head_hash=rows[-1].row_hash)
    assert result.first_break is not None
    assert result.first_break.row_id == 101
    assert result.first_break.problem == "hash columns partly empty"


def test_canonical_json_survives_how_postgres_keeps_numbers() -> None:
    """jsonb keeps numbers as decimals and prints them plainly: what is hashed must read back the same."""
    written = {"b": 1.0, "a": [1e20, 0.68, -0.0, 1.5e-05, 7], "c": "中文 e+ -0.0", "d": None, "e": False}
    text = canonical_text(written)
    assert text == '{"a":[100000000000000000000,0.68,0.0,1.5e-05,7],"b":1.0,"c":"中文 e+ -0.0","d":null,"e":false}'
    # What PostgreSQL prints for that jsonb, read back by the json codec, encodes to the same text.
    printed = (
        '{"a": [100000000000000000000, 0.68, 0.0, 0.000015, 7], "b": 1.0, "c": "中文 e+ -0.0", "d": null, "e": false}'
    )
    assert canonical_text(json.loads(printed)) == text
    assert canonical_json(written) == text.encode()


def test_hash_uses_the_payload_text_written_to_the_database() -> None:
    row = append(CASE, 0, None, uuid.UUID(int=1), "t", T0, {"z": 1, "a": [1.0, "x"]})
    assert row.payload_text == '{"a":[1.0,"x"],"z":1}'
    content = row_content(CASE, 1, uuid.UUID(int=1), "t", T0, row.payload_text)
    assert row.row_hash == hashlib.sha256(GENESIS + content).digest()


def test_times_hash_alike_in_any_offset() -> None:
    shanghai = timezone(timedelta(hours=8))
    a = row_content(CASE, 1, uuid.UUID(int=1), "t", T0, "{}")
    b = row_content(CASE, 1, uuid.UUID(int=1), "t", T0.astimezone(shanghai), "{}")
    assert a == b


def test_canonical_json_refuses_what_json_cannot_hold() -> None:
    with pytest.raises(TypeError):
        canonical_json({"when": T0})
    with pytest.raises(ValueError, match="Out of range float"):
        canonical_json({"nan": float("nan")})
