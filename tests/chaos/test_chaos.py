"""The fault scenarios under pytest (plain `pytest` runs them; `-m "not chaos"` leaves them out):
each promise of the failure policy holds, no usage or key event is lost or counted twice, and
service comes back within seconds."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests import postgres
from tests.chaos.report import table
from tests.chaos.scenarios import SCENARIOS

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(240)]

RECOVERY_SECONDS = 15.0  # generous for a loaded 2-core machine; the table shows the real times


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_fault(name: str, tmp_path: Path) -> None:
    result = SCENARIOS[name](tmp_path)
    if result.skipped:
        postgres.absent(result.skipped)  # the one scenario that skips: no PostgreSQL
    report = table([result])
    assert result.ok, report
    assert (result.usage_lost, result.usage_duplicated) == (0, 0), report
    assert result.events_lost in (None, 0) and result.events_duplicated in (None, 0), report
    assert result.recovery_seconds is not None, report
    assert result.recovery_seconds < RECOVERY_SECONDS, report
