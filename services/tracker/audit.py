"""The tamper-evident audit trail: each case's rows form a SHA-256 chain (pure; no I/O).

A row's hash covers its canonical content and the previous row's hash:

    row_hash = sha256(prev_hash || canonical_json({case_id, seq, event_id, event_type, occurred_at}) || "\n" || payload)

where ``payload`` is the payload's canonical JSON text, which is also exactly the text the row's
``jsonb`` column is written from. The first row of a case chains to 32 zero bytes. Changing,
removing or reordering any row breaks the chain; ``verify_chain`` names the first row that does
not fit.

Canonical JSON is Python's own compact encoding with sorted keys (fast: the C encoder), of a
value that survives PostgreSQL's jsonb unchanged: jsonb keeps numbers as decimals and prints
them in plain notation, so a float that Python writes with an exponent upwards (1e+16 and
beyond, always a whole number) is written as that whole number, and -0.0 as 0.0. Read back,
the payload encodes to the same text. Times are UTC ISO 8601 with microseconds.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from json.encoder import c_make_encoder, encode_basestring  # type: ignore[attr-defined]
from typing import Any, NamedTuple

GENESIS = bytes(32)


def _jsonb_stable(value: Any) -> Any:
    if isinstance(value, float):
        if value == 0.0:
            return 0.0
        if abs(value) >= 1e16:
            return int(value)
        return value
    if isinstance(value, dict):
        return {key: _jsonb_stable(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonb_stable(item) for item in value]
    return value


def _refuse(value: Any) -> Any:
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


# One encoder built once, with json.dumps(sort_keys=True, separators=(",", ":"), ensure_ascii=False,
# allow_nan=False)'s settings: building one per call cost as much as encoding a small payload. No circular
# check: payloads are JSON values built from events, never cyclic.
_C_ENCODER = (
    c_make_encoder(None, _refuse, encode_basestring, None, ":", ",", True, False, False)
    if c_make_encoder is not None
    else None
)
_PY_ENCODER = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def _encode(value: Any) -> str:
    if _C_ENCODER is None:
        return _PY_ENCODER.encode(value)
    return "".join(_C_ENCODER(value, 0))


def canonical_text(value: Any) -> str:
    """The canonical JSON text of a JSON value (dicts, lists, str, int, float, bool, None)."""
    text = _encode(value)
    if "e+" in text or "-0.0" in text:  # rare (and harmless when the match is inside a string): rewrite numbers
        text = _encode(_jsonb_stable(value))
    return text


def canonical_json(value: Any) -> bytes:
    return canonical_text(value).encode()


_UTC_TEXTS: dict[datetime, str] = {}


def utc_text(moment: datetime) -> str:
    # A batch's rows share a few instants (an event's time is on each row it causes): convert each once.
    text = _UTC_TEXTS.get(moment)
    if text is None:
        if len(_UTC_TEXTS) >= 4096:
            _UTC_TEXTS.clear()
        text = _UTC_TEXTS[moment] = moment.astimezone(UTC).isoformat(timespec="microseconds")
    return text


class AuditRow(NamedTuple):
    """One row of ``case_events`` as the chain sees it (a named tuple: a batch makes one per row, and a frozen
    dataclass cost several times as much to build)."""

    case_id: uuid.UUID
    seq: int
    event_id: uuid.UUID
    event_type: str
    occurred_at: datetime
    payload_text: str
    """The payload's canonical JSON: hashed, and what the jsonb column is written from."""
    prev_hash: bytes
    row_hash: bytes

    @property
    def payload(self) -> Any:
        return json.loads(self.payload_text)


def row_content(
    case_id: uuid.UUID | str,
    seq: int,
    event_id: uuid.UUID | str,
    event_type: str,
    occurred_at: datetime,
    payload_text: str,
) -> bytes:
    """The header's canonical JSON (keys sorted: case_id, event_id, event_type, occurred_at, seq), a newline,
    the payload's. Written out rather than encoded from a dict: ids and UTC times need no escaping, and this
    runs for every audit row."""
    return (
        f'{{"case_id":"{case_id}","event_id":"{event_id}","event_type":{encode_basestring(event_type)},'
        f'"occurred_at":"{utc_text(occurred_at)}","seq":{int(seq)}}}\n{payload_text}'
    ).encode()


def chain_hash(prev_hash: bytes, content: bytes) -> bytes:
    return hashlib.sha256(prev_hash + content).digest()


def append(
    case_id: uuid.UUID,
    head_seq: int,
    head_hash: bytes | None,
    event_id: uuid.UUID,
    event_type: str,
    occurred_at: datetime,
    payload: Any,
    *,
    case_text: str | None = None,
    event_text: str | None = None,
) -> AuditRow:
    """The next row of a case whose chain ends at (head_seq, head_hash); ``case_text`` and ``event_text`` are the
    ids as text when the caller has them already."""
    prev = head_hash if head_hash is not None else GENESIS
    seq = head_seq + 1
    text = canonical_text(payload)
    content = row_content(case_text or case_id, seq, event_text or event_id, event_type, occurred_at, text)
    row_hash = chain_hash(prev, content)
    return AuditRow(case_id, seq, event_id, event_type, occurred_at, text, prev, row_hash)


@dataclass(frozen=True)
class StoredRow:
    """A ``case_events`` row as read back for verification (hash columns may be empty on old rows)."""

    id: int
    event_id: uuid.UUID
    event_type: str
    occurred_at: datetime
    payload: Any
    seq: int | None
    prev_hash: bytes | None
    row_hash: bytes | None


@dataclass(frozen=True)
class Break:
    row_id: int | None
    seq: int | None
    event_type: str | None
    event_id: uuid.UUID | None
    problem: str

    def describe(self) -> str:
        if self.row_id is None:
            return self.problem
        return f"row id {self.row_id} (seq {self.seq}, {self.event_type}, event {self.event_id}): {self.problem}"


@dataclass(frozen=True)
class Verification:
    case_id: uuid.UUID
    rows: int
    chained_rows: int
    unchained_before_chain: int
    first_break: Break | None

    @property
    def intact(self) -> bool:
        return self.first_break is None


def verify_chain(case_id: uuid.UUID, rows: Sequence[StoredRow], head_seq: int, head_hash: bytes | None) -> Verification:
    """Check a case's rows, in insertion order (``id``), against the chain and the head kept on the case.

    Rows written before the chain existed (no seq, no hash) are allowed only before the first
    chained row. The head on the case row catches rows removed from the end.
    """
    prev = GENESIS
    expected_seq = 1
    legacy = 0
    chained = 0
    for row in rows:
        if row.seq is None and row.row_hash is None and row.prev_hash is None:
            if chained:
                return Verification(
                    case_id, len(rows), chained, legacy, _break(row, "has no hash although earlier rows are chained")
                )
            legacy += 1
            continue
        if row.seq is None or row.row_hash is None or row.prev_hash is None:
            return Verification(case_id, len(rows), chained, legacy, _break(row, "hash columns partly empty"))
        if row.seq != expected_seq:
            problem = (
                f"sequence jumps from {expected_seq - 1} to {row.seq}: rows are missing before it"
                if row.seq > expected_seq
                else f"sequence {row.seq} repeats or goes back (expected {expected_seq})"
            )
            return Verification(case_id, len(rows), chained, legacy, _break(row, problem))
        if row.prev_hash != prev:
            return Verification(
                case_id,
                len(rows),
                chained,
                legacy,
                _break(row, "its previous-row hash does not match the row before it (a row was changed or removed)"),
            )
        content = row_content(
            case_id, row.seq, row.event_id, row.event_type, row.occurred_at, canonical_text(row.payload)
        )
        if chain_hash(row.prev_hash, content) != row.row_hash:
            return Verification(
                case_id,
                len(rows),
                chained,
                legacy,
                _break(row, "content does not match its hash (the row was changed)"),
            )
        prev = row.row_hash
        expected_seq += 1
        chained += 1
    if chained != head_seq or (chained and prev != head_hash):
        problem = (
            f"the case's chain head says {head_seq} rows, the table holds {chained} chained rows"
            if chained != head_seq
            else "the last row's hash differs from the head kept on the case"
        )
        return Verification(case_id, len(rows), chained, legacy, Break(None, None, None, None, problem))
    return Verification(case_id, len(rows), chained, legacy, None)


def _break(row: StoredRow, problem: str) -> Break:
    return Break(row.id, row.seq, row.event_type, row.event_id, problem)
