"""Fixed times for every test; real infrastructure fixtures live in tests/integration/conftest.py."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

FIXED_NOW = datetime(2026, 11, 22, 9, 30, tzinfo=UTC)


@pytest.fixture
def now() -> datetime:
    return FIXED_NOW
