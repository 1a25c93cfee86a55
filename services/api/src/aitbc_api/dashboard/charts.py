"""Requests per minute as an inline SVG bar chart, drawn on the server: no chart library, no
script. Bars stack admitted (below) and limited (above) requests; a line marks the limit when
the busiest minute came within a tenth of it (the scale then reaches it); a limit far above
every bar would flatten them all, so the page states it in words instead."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from aitbc_contracts.usage import MinuteUsage

WIDTH = 720  # viewBox units; the SVG stretches to the page's width
HEIGHT = 100
MIN_BAR = 1.5  # a single request still shows on a tall scale
MIN_WIDTH = 2.0  # a minute of a day (0.5 units) would be a hairline: widen it to be seen
LIMIT_IN_VIEW = 10  # the scale reaches the limit once the busiest minute used a tenth of it


@dataclass(frozen=True, slots=True)
class MinuteRow:
    minute: datetime
    requests: int
    admitted: int
    limited: int


@dataclass(frozen=True, slots=True)
class Chart:
    title: str
    span: int  # minutes
    admitted_path: str
    limited_path: str
    limit: int | None
    limit_y: float | None  # where the limit line goes, if the scale reaches it
    y_max: int
    requests: int
    admitted: int
    limited: int
    peak: int
    first: datetime
    last: datetime
    rows: list[MinuteRow]  # the minutes with requests, newest first

    @property
    def limit_off_scale(self) -> bool:
        """A limit too far above the bars to be drawn: the page says it in words."""
        return self.limit is not None and self.limit_y is None

    @property
    def summary(self) -> str:
        return (
            f"{self.title}: {self.requests} requests, {self.admitted} admitted, "
            f"{self.limited} limited; busiest minute {self.peak}."
        )


def nice_ceiling(value: int) -> int:
    """The smallest of 1, 2, 5, 10, 20, 50, ... at or above value."""
    scale = 1
    while True:
        for step in (1, 2, 5):
            if step * scale >= value:
                return step * scale
        scale *= 10


def _bars(heights: Sequence[tuple[float, float]], unit: float, gap: float) -> str:
    """One path of rectangles: (bottom, height) per minute, in chart coordinates."""
    parts = []
    width = round(max(unit - gap, MIN_WIDTH), 3)
    for index, (bottom, height) in enumerate(heights):
        if height <= 0:
            continue
        x = round(min(index * unit + gap / 2, WIDTH - width), 3)
        top = round(bottom - height, 3)
        parts.append(f"M{x} {top}h{width}V{round(bottom, 3)}h-{width}z")
    return "".join(parts)


def minute_chart(
    minutes: Sequence[MinuteUsage], end: datetime, span: int, title: str, limit: int | None
) -> Chart:
    """The `span` minutes up to and including the one that holds `end`."""
    last = int(end.timestamp()) // 60 * 60
    first = last - (span - 1) * 60
    counts = [(0, 0, 0)] * span
    for minute in minutes:
        index = (int(minute.minute.timestamp()) - first) // 60
        if 0 <= index < span:
            counts[index] = (minute.requests, minute.admitted, minute.limited)
    peak = max((requests for requests, _, _ in counts), default=0)
    drawn_limit = limit if limit and peak * LIMIT_IN_VIEW >= limit else None
    y_max = nice_ceiling(max(peak, drawn_limit or 1))
    per_request = HEIGHT / y_max

    def height(count: int) -> float:
        return max(count * per_request, MIN_BAR) if count else 0.0

    admitted = [(float(HEIGHT), height(a)) for _, a, _ in counts]
    limited = [
        (HEIGHT - a_height, height(lim))
        for (_, a_height), (_, _, lim) in zip(admitted, counts, strict=True)
    ]
    unit = WIDTH / span
    gap = unit * 0.2 if span <= 180 else 0.0
    rows = [
        MinuteRow(datetime.fromtimestamp(first + i * 60, UTC), r, a, lim)
        for i, (r, a, lim) in enumerate(counts)
        if r
    ]
    return Chart(
        title=title,
        span=span,
        admitted_path=_bars(admitted, unit, gap),
        limited_path=_bars(limited, unit, gap),
        limit=limit,
        limit_y=round(HEIGHT - drawn_limit * per_request, 3) if drawn_limit else None,
        y_max=y_max,
        requests=sum(r for r, _, _ in counts),
        admitted=sum(a for _, a, _ in counts),
        limited=sum(lim for _, _, lim in counts),
        peak=peak,
        first=datetime.fromtimestamp(first, UTC),
        last=datetime.fromtimestamp(last, UTC),
        rows=rows[::-1],
    )
