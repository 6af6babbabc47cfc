"""The overview's charts over time, drawn on the server as inline SVG: throughput (jobs
completed and failed per bucket, stacked bars) and failure rate (a line), each with a
title, a description and the same figures as a table for those who cannot see it."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime
from typing import Final

from projections import trend

WIDTH: Final = 600
HEIGHT: Final = 170
LEFT: Final = 40
"""Room for the value axis' labels."""
BOTTOM: Final = 22
"""Room for the time axis' labels."""
TOP: Final = 8
LABELS: Final = {"hour": (10, "%H:%M"), "day": (4, "%H:%M"), "week": (24, "%a %d")}
"""Per window: a time label every n buckets, and its format."""


@dataclass(frozen=True, slots=True)
class Bar:
    """One bucket's stacked bar: completed at the bottom, failed on top."""

    x: float
    width: float
    completed_y: float
    completed_h: float
    failed_y: float
    failed_h: float
    label: str


@dataclass(frozen=True, slots=True)
class Tick:
    """A label on an axis at a position along it."""

    at: float
    text: str


@dataclass(slots=True)
class Chart:
    """A chart's geometry in SVG units, its words, and its figures as table rows."""

    key: str
    title: str
    description: str
    y_ticks: list[Tick]
    x_ticks: list[Tick]
    bars: list[Bar] = field(default_factory=list)
    line: str = ""
    """A polyline's points ("x,y x,y ..."), one per bucket where the value is known."""
    dots: list[tuple[float, float, str]] = field(default_factory=list)
    width: int = WIDTH
    height: int = HEIGHT
    left: int = LEFT
    base: float = HEIGHT - BOTTOM


def _plot_height() -> float:
    return HEIGHT - BOTTOM - TOP


def _nice_max(value: float) -> float:
    """The smallest 1, 2 or 5 times a power of ten not below ``value`` (1 for nothing)."""
    if value <= 0:
        return 1.0
    power = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 5, 10):
        if step * power >= value:
            return float(step * power)
    return float(10 * power)  # pragma: no cover - the loop ends at 10


def _x_ticks(series: trend.Series, step: float) -> list[Tick]:
    every, fmt = LABELS[series.window.name]
    return [
        Tick(LEFT + i * step, p.start.strftime(fmt))
        for i, p in enumerate(series.points)
        if i % every == 0
    ]


def _when(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M")


def throughput(series: trend.Series) -> Chart:
    """Jobs completed and failed per bucket, stacked."""
    top = _nice_max(max((p.completed + p.failed for p in series.points), default=0))
    step = (WIDTH - LEFT) / max(len(series.points), 1)
    scale = _plot_height() / top
    base = HEIGHT - BOTTOM
    bars = []
    for i, p in enumerate(series.points):
        completed_h, failed_h = p.completed * scale, p.failed * scale
        bars.append(
            Bar(
                x=LEFT + i * step + step * 0.1,
                width=step * 0.8,
                completed_y=base - completed_h,
                completed_h=completed_h,
                failed_y=base - completed_h - failed_h,
                failed_h=failed_h,
                label=f"{_when(p.start)}: {p.completed} completed, {p.failed} failed",
            )
        )
    busiest = max(series.points, key=lambda p: p.completed + p.failed, default=None)
    peak = (
        f" The busiest bucket, {_when(busiest.start)}, had {busiest.completed + busiest.failed}."
        if busiest is not None and busiest.completed + busiest.failed
        else ""
    )
    return Chart(
        key="throughput",
        title=f"Jobs finished per {_unit(series)}, last {series.window.name}",
        description=(
            f"Stacked bars, one per {_unit(series)} from {_when(series.points[0].start)} UTC: "
            f"{series.completed} completed and {series.failed} failed in all.{peak}"
        ),
        y_ticks=[Tick(base - scale * v, f"{v:g}") for v in (0, top / 2, top)],
        x_ticks=_x_ticks(series, step),
        bars=bars,
    )


def failure_rate(series: trend.Series) -> Chart:
    """Failed among finished jobs per bucket, as a line over the buckets where any finished."""
    step = (WIDTH - LEFT) / max(len(series.points), 1)
    base = HEIGHT - BOTTOM
    scale = _plot_height()
    dots = []
    for i, p in enumerate(series.points):
        rate = p.failure_rate
        if rate is not None:
            dots.append(
                (LEFT + i * step + step / 2, base - rate * scale, f"{_when(p.start)}: {rate:.0%}")
            )
    finished = series.completed + series.failed
    overall = f"{series.failed / finished:.1%}" if finished else "no job finished"
    worst = max(series.points, key=lambda p: p.failure_rate or 0.0)
    worst_text = (
        f" The worst {_unit(series)}, {_when(worst.start)}, had {worst.failure_rate:.0%}."
        if worst.failure_rate
        else ""
    )
    return Chart(
        key="failure-rate",
        title=f"Failure rate per {_unit(series)}, last {series.window.name}",
        description=(
            f"A line over the {_unit(series)}s in which jobs finished; overall: {overall}."
            f"{worst_text}"
        ),
        y_ticks=[Tick(base - scale * v, f"{v:.0%}") for v in (0.0, 0.5, 1.0)],
        x_ticks=_x_ticks(series, step),
        line=" ".join(f"{x:.1f},{y:.1f}" for x, y, _ in dots),
        dots=dots,
    )


def _unit(series: trend.Series) -> str:
    return "minute" if series.window.width == 60 else "hour"
