"""What one fault scenario found, and the table `python -m tests.chaos` prints."""

from __future__ import annotations

from dataclasses import dataclass, field

from tests.chaos.load import Answer, tally


@dataclass
class Result:
    fault: str
    made: int = 0
    admitted: int = 0
    refused: int = 0
    errors_by_code: dict[str, int] = field(default_factory=dict)
    usage_lost: int | None = None  # usage events of decided requests missing (stream, aggregates)
    usage_duplicated: int | None = None
    recovery_seconds: float | None = None  # from the fault's end until users are served again
    events_lost: int | None = None  # key events in the store but not in the key event log
    events_duplicated: int | None = None
    notes: list[str] = field(default_factory=list)  # measurements beyond the columns
    violations: list[str] = field(default_factory=list)  # broken promises: the test fails on any
    skipped: str = ""

    def count(self, answers: list[Answer]) -> None:
        self.made, self.admitted, self.refused, self.errors_by_code = tally(answers)

    def expect(self, holds: bool, broken: str) -> None:
        if not holds:
            self.violations.append(broken)

    @property
    def ok(self) -> bool:
        return not self.violations


def _cell(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.1f}"
    return str(value)


def table(results: list[Result]) -> str:
    header = [
        "fault", "made", "admitted", "refused", "errors by code",
        "usage lost", "usage dup", "events lost", "events dup", "recovery s", "ok",
    ]  # fmt: skip
    rows = [header]
    for r in results:
        if r.skipped:
            rows.append([r.fault, *["-"] * 9, f"skipped: {r.skipped}"])
            continue
        codes = ", ".join(f"{code} {n}" for code, n in r.errors_by_code.items()) or "-"
        rows.append(
            [
                r.fault, _cell(r.made), _cell(r.admitted), _cell(r.refused), codes,
                _cell(r.usage_lost), _cell(r.usage_duplicated), _cell(r.events_lost),
                _cell(r.events_duplicated), _cell(r.recovery_seconds), "yes" if r.ok else "NO",
            ]
        )  # fmt: skip
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = [" | ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) for row in rows]
    lines.insert(1, "-+-".join("-" * w for w in widths))
    for r in results:
        for note in r.notes:
            lines.append(f"  {r.fault}: {note}")
        for violation in r.violations:
            lines.append(f"  {r.fault}: BROKEN: {violation}")
    return "\n".join(lines)
