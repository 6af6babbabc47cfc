"""The overview's charts drawn to scale, and the moments time travel accepts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

import projections
from projections import trend
from workers.dashboard import chart, overview

NOW = datetime(2026, 11, 30, 9, 30, tzinfo=UTC)


def hour_of(points: dict[int, tuple[int, int]]) -> trend.Series:
    """A last-hour series with (completed, failed) at the given minutes."""
    start = NOW - timedelta(minutes=59)
    return trend.Series(
        trend.WINDOWS["hour"],
        NOW,
        [
            trend.Point(start + timedelta(minutes=i), completed=c, failed=f)
            for i, (c, f) in ((i, points.get(i, (0, 0))) for i in range(60))
        ],
    )


def test_bars_stack_failed_on_completed_to_one_scale() -> None:
    drawn = chart.throughput(hour_of({0: (30, 10), 30: (10, 0)}))
    tallest, half = drawn.bars[0], drawn.bars[30]
    assert [t.text for t in drawn.y_ticks] == ["0", "25", "50"]  # 40 rounds up to 50
    assert tallest.completed_h == pytest.approx(3 * half.completed_h)
    assert tallest.failed_y + tallest.failed_h == pytest.approx(tallest.completed_y)
    assert drawn.bars[1].completed_h == drawn.bars[1].failed_h == 0
    assert "40 completed and 10 failed in all" in drawn.description
    assert len(drawn.x_ticks) == 6 and drawn.x_ticks[0].text == "08:31"


def test_the_failure_rate_is_drawn_only_where_jobs_finished() -> None:
    drawn = chart.failure_rate(hour_of({0: (3, 1), 59: (0, 2)}))
    assert [label.split(": ")[1] for _x, _y, label in drawn.dots] == ["25%", "100%"]
    assert "overall: 50.0%" in drawn.description
    assert drawn.line.count(",") == 2
    empty = chart.failure_rate(hour_of({}))
    assert (empty.dots, empty.line) == ([], "") and "no job finished" in empty.description


@pytest.mark.parametrize(
    ("text", "moment"),
    [
        ("2026-11-29T08:15", datetime(2026, 11, 29, 8, 15, tzinfo=UTC)),
        ("2026-11-29T08:15:30Z", datetime(2026, 11, 29, 8, 15, 30, tzinfo=UTC)),
        ("2026-11-29", datetime(2026, 11, 29, tzinfo=UTC)),
        ("  ", None),
    ],
)
def test_time_travel_reads_a_moment_in_utc(text: str, moment: datetime | None) -> None:
    assert overview.parse_at(text, NOW) == moment


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("2026-12-01", "is in the future; choose a moment before 2026-11-30 09:30:00"),
        ("yesterday", "'yesterday' is not a moment; write it as 2026-11-30T09:15 (UTC)"),
        ("2026-13-01", "is not a moment"),
    ],
)
def test_a_moment_that_cannot_be_shown_is_refused_saying_why(text: str, says: str) -> None:
    with pytest.raises(projections.InvalidFilterError, match=r"^at: ") as caught:
        overview.parse_at(text, NOW)
    assert says in str(caught.value)
