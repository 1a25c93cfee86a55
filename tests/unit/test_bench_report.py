"""The benchmark report: what counts as a missed target, and how revocations are described."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from bench.report import markdown, missed, table

LATEST = Path(__file__).resolve().parents[2] / "bench" / "results" / "latest.json"


@pytest.fixture
def results() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(LATEST.read_text())
    return copy.deepcopy(loaded)


def test_a_figure_just_short_of_its_target_is_missed_and_never_shown_as_met(
    results: dict[str, Any],
) -> None:
    results["http"]["ratios"]["C/B"] = 0.8499
    rows = {row.what: row for row in missed(results)}
    row = rows["C/B: edge full / edge public route (req/s)"]
    assert (row.measured, row.target) == ("0.849", ">= 0.850")
    assert row.off.startswith("short by 0.001")
    assert "MISSED short by 0.001" in table(results)
    assert "**missed**: short by 0.001" in markdown(results, quick=True)


def test_every_met_target_is_left_out_of_the_missed(results: dict[str, Any]) -> None:
    results["http"]["ratios"].update({"C/B": 0.9, "C/D": 2.0})
    results["paced"]["p99_difference_ms"] = 1.0
    for edge in results["revocation"]["edges"]:
        edge["p99_ms"] = 10.0
    assert missed(results) == []


def test_revocations_say_where_their_time_starts(results: dict[str, Any]) -> None:
    results["revocation"].pop("timed_from", None)  # results written before it was recorded
    assert "time from the revoke response" in markdown(results, quick=True)
    results["revocation"]["timed_from"] = "request"
    text = markdown(results, quick=True)
    assert "time from the moment the revoke request is sent" in text
    assert "revoke response" not in text
